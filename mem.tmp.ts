import * as tf from '@tensorflow/tfjs';
import { initBackend } from './src/backend/index.ts';
import { seq2seqConfigFromPreset, TransformerSeq2Seq } from './src/models/index.ts';
import { labelSmoothedCrossEntropy, TrainOptimizer } from './src/train/index.ts';
import { makeTrainStep, randomIds } from './bench/train-step.ts';
await initBackend();
const batch = Number(process.env.B ?? 64), len = 32, vocab = 8000;
const model = new TransformerSeq2Seq(seq2seqConfigFromPreset('transformer_small', { srcVocabSize: vocab, tgtVocabSize: vocab, padId: 0, bosId: 1, eosId: 2 }));
const opt = new TrainOptimizer({ name: 'adam' }, model.trainableWeights.map((w) => ({ name: w.originalName, variable: w.read() as tf.Variable, decay: true })));
const s = tf.tensor2d(randomIds(batch * len, vocab, 1), [batch, len], 'int32'), ti = tf.tensor2d(randomIds(batch * len, vocab, 2), [batch, len], 'int32'), to = tf.tensor2d(randomIds(batch * len, vocab, 3), [batch, len], 'int32');
let peak = 0;
const step = makeTrainStep(model.trainableWeights, opt, () => { const r = labelSmoothedCrossEntropy(model.forward(s, ti, true), to, { smoothing: 0.1, padId: 0 }); peak = Math.max(peak, tf.memory().numBytes); return r; });
const be = tf.engine().backend as any;
for (let i = 0; i < 2; i++) { const t0 = performance.now(); step(); console.log('step', i, ((performance.now() - t0) / 1000).toFixed(1), 's; heap MB', (be.wasm.HEAPU8.buffer.byteLength / 2 ** 20).toFixed(0), 'numBytes MB after', (tf.memory().numBytes / 2 ** 20).toFixed(0)); }
