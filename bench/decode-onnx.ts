/**
 * `npm run bench -- decode-onnx` (issue 17): the decode-cpu work (beam search over the quickstart
 * model, transformer_small_cpu, 16 sentences x 24 source tokens, exactly 20 tokens + EOS, the
 * preset's beam) run by ONNX Runtime on the model's ONNX export (src/onnx), with as many threads as
 * our engine, beside our tfjs decode and the PyTorch reference, all measured in this run.
 *
 * Three lines: `decode-cpu-tfjs` (our tfjs engine vs PyTorch, bench/decode.ts's measurement),
 * `decode-onnx` (ORT with its default spinning threads vs PyTorch; extra.vsTfjs = ORT / tfjs) and
 * `decode-onnx-nospin` (the same without spinning). Before timing, ORT's hypotheses are checked
 * equal to tfjs' on the warm-up sentences (same weights: the export reads the tfjs model).
 */
import * as tf from '@tensorflow/tfjs';
import { describeBackend } from '../src/backend/index.ts';
import { beamSearch } from '../src/decode/index.ts';
import type { DecoderStepModel } from '../src/decode/index.ts';
import { TransformerSeq2Seq } from '../src/models/index.ts';
import { OrtSeq2SeqDecoder } from '../src/onnx/runtime.ts';
import type { Benchmark, BenchResult } from './common.ts';
import { decodeResult, type DecodeWork } from './decode.ts';
import { benchSeq2SeqConfig } from './train-translation.ts';
import { cpuPresetConfig, PRESET } from './train-translation-cpu.ts';
import { randomIds } from './train-step.ts';

/** Timed beam search of `source` after a warm-up on its first two sentences (as timeBeamDecode). */
async function timeSearch<S>(model: DecoderStepModel<S>, source: number[][], work: DecodeWork): Promise<{ seconds: number; warm: number[][] }> {
  const opts = { beamSize: work.beam, minLen: work.len, maxLenA: 0, maxLenB: work.len };
  const warm = await beamSearch(model, source.slice(0, 2), opts);
  if (warm[0][0].tokens.length !== work.len) throw new Error(`decode-onnx bench: expected ${work.len} tokens, got ${warm[0][0].tokens.length}`);
  const t0 = performance.now();
  await beamSearch(model, source, opts);
  return { seconds: (performance.now() - t0) / 1000, warm: warm.map((h) => h[0].tokens) };
}

/** One ORT line: sentences/s vs PyTorch (the baseline of `tfjsLine`) and vs our tfjs decode. */
async function ortLine(
  name: string,
  model: TransformerSeq2Seq,
  spinning: boolean,
  source: number[][],
  tfjsWarm: number[][],
  work: DecodeWork,
  tfjsLine: BenchResult,
): Promise<BenchResult> {
  const threads = describeBackend().threads;
  const t0 = performance.now();
  const ort = await OrtSeq2SeqDecoder.create(model, { threads, spinning });
  const exportSeconds = (performance.now() - t0) / 1000;
  try {
    const tensorsBefore = tf.memory().numTensors;
    const { seconds, warm } = await timeSearch(ort, source, work);
    if (JSON.stringify(warm) !== JSON.stringify(tfjsWarm)) throw new Error('decode-onnx bench: ONNX Runtime and tfjs chose different hypotheses on the warm-up sentences');
    const value = work.sentences / seconds;
    const pytorch = tfjsLine.baseline;
    return {
      name,
      value,
      unit: 'sentences/s',
      baseline: pytorch,
      ratio: pytorch ? value / pytorch : null,
      ...(tfjsLine.baselineName ? { baselineName: tfjsLine.baselineName } : {}),
      extra: {
        engine: `onnxruntime-node CPU, ${threads} intra-op threads, spinning ${spinning}`,
        model: PRESET,
        work: tfjsLine.extra?.work,
        seconds,
        exportAndLoadSeconds: exportSeconds,
        tfjsSentencesPerS: tfjsLine.value,
        vsTfjs: value / tfjsLine.value,
        sameHypothesesAsTfjs: true,
        leakedTensors: tf.memory().numTensors - tensorsBefore,
      },
    };
  } finally {
    await ort.dispose();
  }
}

export const run: Benchmark = async ({ quick }) => {
  const { data, decode } = cpuPresetConfig();
  // The work of bench/decode-cpu.ts.
  const work: DecodeWork = { vocab: data.vocabSize, sentences: quick ? 4 : 16, srcLen: 24, len: 20, beam: decode.beam };
  // Ours on tfjs and PyTorch, exactly as `decode-cpu` measures them.
  const tfjsLine = await decodeResult('decode-cpu-tfjs', PRESET, work, 'tfjs');

  const model = new TransformerSeq2Seq(benchSeq2SeqConfig(PRESET, work.vocab));
  try {
    const ids = randomIds(work.sentences * work.srcLen, work.vocab, 5);
    const source = Array.from({ length: work.sentences }, (_, i) => Array.from(ids.subarray(i * work.srcLen, (i + 1) * work.srcLen)));
    const tfjsWarm = (await timeSearch(model, source.slice(0, 2), { ...work, sentences: 2 })).warm;
    const lines = [tfjsLine];
    // ORT's default (idle threads spin-wait), then without spinning (kinder to shared cores).
    for (const spinning of [true, false]) lines.push(await ortLine(spinning ? 'decode-onnx' : 'decode-onnx-nospin', model, spinning, source, tfjsWarm, work, tfjsLine));
    return lines;
  } finally {
    model.dispose();
  }
};
