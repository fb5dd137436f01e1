/**
 * `npm run bench -- decode`: beam-5 sentences/s of transformer_small (vocab 8000) with the
 * incremental attention cache (src/decode beamSearch), on the inference engine `translate` and
 * `evaluate` use by default (src/decode/engine.ts: ONNX Runtime on a CPU backend when
 * onnxruntime-node is installed, else the tfjs model; extra.decodeEngine says which). Every hypothesis is held to exactly 20
 * tokens + EOS (minLen = maxLen) so that PyTorch (bench/reference/decode.py, same model, same
 * sentences, in the same run) does the same number of decoder steps.
 */
import * as tf from '@tensorflow/tfjs';
import { describeBackend } from '../src/backend/index.ts';
import { beamSearch } from '../src/decode/index.ts';
import { openDecoder, type DecodeEngine } from '../src/decode/engine.ts';
import { TransformerSeq2Seq } from '../src/models/index.ts';
import { compared, peakRssMiB, runReference, type Benchmark, type BenchResult } from './common.ts';
import { benchSeq2SeqConfig, engineSummary } from './train-translation.ts';
import { randomIds } from './train-step.ts';

export interface DecodeWork {
  vocab: number;
  sentences: number;
  srcLen: number;
  /** Tokens every hypothesis gets before its EOS. */
  len: number;
  beam: number;
}

/**
 * Times one beam search over `work.sentences` random sentences with a `preset` model (after a
 * warm-up on two of them); shared with bench/gpu.ts.
 */
export async function timeBeamDecode(
  preset: string,
  work: DecodeWork,
  engine: DecodeEngine = 'auto',
): Promise<{ seconds: number; leakedTensors: number; decodeEngine: string; openSeconds: number }> {
  const { vocab, sentences, srcLen, len, beam } = work;
  const model = new TransformerSeq2Seq(benchSeq2SeqConfig(preset, vocab));
  const tOpen = performance.now();
  const opened = await openDecoder(model, engine);
  const openSeconds = (performance.now() - tOpen) / 1000;
  const decoder = opened.decoder;
  try {
    const ids = randomIds(sentences * srcLen, vocab, 5);
    const source = Array.from({ length: sentences }, (_, i) => Array.from(ids.subarray(i * srcLen, (i + 1) * srcLen)));
    const opts = { beamSize: beam, minLen: len, maxLenA: 0, maxLenB: len };
    const warm = await beamSearch(decoder, source.slice(0, 2), opts);
    if (warm[0][0].tokens.length !== len) throw new Error(`decode bench: expected ${len} tokens, got ${warm[0][0].tokens.length}`);
    const tensorsBefore = tf.memory().numTensors;
    const t0 = performance.now();
    await beamSearch(decoder, source, opts);
    const seconds = (performance.now() - t0) / 1000;
    const decodeEngine = opened.engine + (opened.fallbackReason ? ` (${opened.fallbackReason})` : '');
    return { seconds, leakedTensors: tf.memory().numTensors - tensorsBefore, decodeEngine, openSeconds };
  } finally {
    await opened.dispose();
    model.dispose();
  }
}

/** Ours, then the PyTorch reference (bench/reference/decode.py, same model and work). */
export async function decodeResult(name: string, preset: string, work: DecodeWork, engine: DecodeEngine = 'auto'): Promise<BenchResult> {
  const { seconds, leakedTensors, decodeEngine, openSeconds } = await timeBeamDecode(preset, work, engine);
  const extra = {
    model: preset,
    work: `${work.sentences} sentences x ${work.srcLen} source tokens, beam ${work.beam}, ${work.len} tokens + EOS each, vocab ${work.vocab}`,
    seconds,
    leakedTensors,
    peakRssMiB: peakRssMiB(),
    decodeEngine,
    // Exporting the weights to ONNX and opening the sessions (once per translate/evaluate call; not timed above).
    openSeconds,
    engine: engineSummary(),
  };
  const ref = await runReference('decode.py', {
    model: preset,
    vocab: work.vocab,
    sentences: work.sentences,
    'src-len': work.srcLen,
    len: work.len,
    beam: work.beam,
    threads: describeBackend().threads,
  });
  return compared(name, work.sentences / seconds, 'sentences/s', ref, 'sentences_per_s', extra);
}

export const run: Benchmark = async ({ quick }) => [
  await decodeResult('decode', 'transformer_small', { vocab: 8000, sentences: quick ? 4 : 16, srcLen: 24, len: 20, beam: 5 }),
];
