/**
 * `npm run bench -- decode`: beam-5 sentences/s of transformer_small (vocab 8000) with the
 * incremental attention cache (src/decode beamSearch). Every hypothesis is held to exactly 20
 * tokens + EOS (minLen = maxLen) so that PyTorch (bench/reference/decode.py, same model, same
 * sentences, in the same run) does the same number of decoder steps.
 */
import * as tf from '@tensorflow/tfjs';
import { describeBackend } from '../src/backend/index.ts';
import { beamSearch } from '../src/decode/index.ts';
import { seq2seqConfigFromPreset, TransformerSeq2Seq } from '../src/models/index.ts';
import { compared, peakRssMiB, runReference, type Benchmark } from './common.ts';
import { engineSummary } from './train-translation.ts';
import { randomIds } from './train-step.ts';

export const run: Benchmark = async ({ quick }) => {
  const vocab = 8000;
  const sentences = quick ? 4 : 16;
  const srcLen = 24;
  const len = 20;
  const config = seq2seqConfigFromPreset('transformer_small', { srcVocabSize: vocab, tgtVocabSize: vocab, padId: 0, bosId: 1, eosId: 2 });
  const model = new TransformerSeq2Seq(config);
  const ids = randomIds(sentences * srcLen, vocab, 5);
  const source = Array.from({ length: sentences }, (_, i) => Array.from(ids.subarray(i * srcLen, (i + 1) * srcLen)));
  const opts = { beamSize: 5, minLen: len, maxLenA: 0, maxLenB: len };
  const warm = await beamSearch(model, source.slice(0, 2), opts);
  if (warm[0][0].tokens.length !== len) throw new Error(`decode bench: expected ${len} tokens, got ${warm[0][0].tokens.length}`);
  const tensorsBefore = tf.memory().numTensors;
  const t0 = performance.now();
  await beamSearch(model, source, opts);
  const seconds = (performance.now() - t0) / 1000;
  const extra = {
    model: 'transformer_small',
    work: `${sentences} sentences x ${srcLen} source tokens, beam 5, ${len} tokens + EOS each`,
    seconds,
    leakedTensors: tf.memory().numTensors - tensorsBefore,
    peakRssMiB: peakRssMiB(),
    engine: engineSummary(),
  };
  model.dispose();
  const ref = await runReference('decode.py', { sentences, 'src-len': srcLen, len, beam: 5, threads: describeBackend().threads });
  return [compared('decode', sentences / seconds, 'sentences/s', ref, 'sentences_per_s', extra)];
};
