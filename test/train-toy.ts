/**
 * A toy model and data for the trainer tests: an embedding, one layer owning a factor pair
 * (U, V acting as a query-key pair), seeded dropout, and a dense output layer; plus a resumable,
 * per-epoch shuffled batch source of a next-token task.
 */
import * as tf from '@tensorflow/tfjs';
import type { FactorPair } from '../src/factorized/index.ts';
import { SeededRandom, seededDropout } from '../src/random.ts';
import { labelSmoothedCrossEntropy } from '../src/train/losses.ts';
import type { BatchSource, LossFn } from '../src/train/index.ts';

interface ToyFactorConfig extends tf.serialization.ConfigDict {
  heads: number;
  rank: number;
  dropout: number;
}

/** y = x + dropout(Σ_h x U_h V_hᵀ) with U, V [H, d, r]. */
export class ToyFactorLayer extends tf.layers.Layer {
  static className = 'TrainTestToyFactor';
  private readonly cfg: ToyFactorConfig;
  private u!: tf.LayerVariable;
  private v!: tf.LayerVariable;

  constructor(config: ToyFactorConfig & { name?: string }) {
    super(config);
    this.cfg = { heads: config.heads, rank: config.rank, dropout: config.dropout };
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const d = (inputShape as tf.Shape)[2] as number;
    const init = tf.initializers.randomNormal({ stddev: 0.3, seed: 7 });
    this.u = this.addWeight('u', [this.cfg.heads, d, this.cfg.rank], 'float32', init);
    this.v = this.addWeight('v', [this.cfg.heads, d, this.cfg.rank], 'float32', tf.initializers.randomNormal({ stddev: 0.3, seed: 8 }));
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor {
    return tf.tidy(() => {
      const x = (Array.isArray(inputs) ? inputs[0] : inputs) as tf.Tensor3D;
      const [b, t, d] = x.shape;
      const flat = tf.reshape(x, [b * t, d]) as tf.Tensor2D;
      let mixed: tf.Tensor = tf.zeros([b * t, d]);
      const U = this.u.read();
      const V = this.v.read();
      for (let h = 0; h < this.cfg.heads; h++) {
        const uh = tf.squeeze(tf.slice(U, [h, 0, 0], [1, d, this.cfg.rank]), [0]) as tf.Tensor2D;
        const vh = tf.squeeze(tf.slice(V, [h, 0, 0], [1, d, this.cfg.rank]), [0]) as tf.Tensor2D;
        mixed = tf.add(mixed, tf.matMul(tf.matMul(flat, uh), vh, false, true));
      }
      const dropped = seededDropout(mixed, this.cfg.dropout, kwargs.training === true);
      return tf.add(x, tf.reshape(dropped, [b, t, d]));
    });
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    return inputShape as tf.Shape;
  }

  factorPairs(): FactorPair[] {
    return [{ name: `${this.name}/qk`, kind: 'qk', u: this.u, v: this.v, vTransposed: false }];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), ...this.cfg };
  }
}
tf.serialization.registerClass(ToyFactorLayer);

export interface ToySizes {
  vocab: number;
  dim: number;
  heads: number;
  rank: number;
  dropout: number;
}
export const TOY: ToySizes = { vocab: 11, dim: 8, heads: 2, rank: 2, dropout: 0.1 };

/** Builds the toy model with fixed-seed initializers (same weights every time). */
export function buildToyModel(sizes: ToySizes = TOY): tf.LayersModel {
  const input = tf.input({ shape: [null], dtype: 'int32' });
  const emb = tf.layers
    .embedding({ inputDim: sizes.vocab, outputDim: sizes.dim, embeddingsInitializer: tf.initializers.randomNormal({ stddev: 0.5, seed: 1 }) })
    .apply(input) as tf.SymbolicTensor;
  const mixed = new ToyFactorLayer({ heads: sizes.heads, rank: sizes.rank, dropout: sizes.dropout }).apply(emb) as tf.SymbolicTensor;
  const logits = tf.layers
    .dense({ units: sizes.vocab, kernelInitializer: tf.initializers.glorotUniform({ seed: 3 }) })
    .apply(mixed) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: logits });
}

export interface ToyBatch {
  input: Int32Array;
  target: Int32Array;
  shape: [number, number];
}

export const PAD = 0;

/** Next-token task over ids 1..V-1 ((x + 1) mod, skipping pad), with some padded tails. */
export function toyData(numBatches: number, batchSize = 4, length = 6, seed = 5, vocab = TOY.vocab): BatchSource<ToyBatch> {
  const rng = new SeededRandom(seed);
  const all: ToyBatch[] = [];
  for (let b = 0; b < numBatches; b++) {
    const input = new Int32Array(batchSize * length);
    const target = new Int32Array(batchSize * length);
    for (let i = 0; i < batchSize; i++) {
      const len = length - rng.nextInt(3);
      for (let t = 0; t < len; t++) {
        const x = 1 + rng.nextInt(vocab - 1);
        input[i * length + t] = x;
        target[i * length + t] = 1 + (x % (vocab - 1));
      }
    }
    all.push({ input, target, shape: [batchSize, length] });
  }
  return {
    numBatches: () => numBatches,
    *batches(epoch: number, start: number) {
      const order = new SeededRandom(seed * 1000 + epoch).shuffle([...Array(numBatches).keys()]);
      for (let i = start; i < numBatches; i++) yield all[order[i]];
    },
  };
}

export function toyLoss(model: tf.LayersModel, smoothing = 0.1): LossFn<ToyBatch> {
  return (batch, { training }) => {
    const input = tf.tensor2d(batch.input, batch.shape, 'int32');
    const target = tf.tensor2d(batch.target, batch.shape, 'int32');
    const logits = model.apply(input, { training }) as tf.Tensor;
    const out = labelSmoothedCrossEntropy(logits, target, { smoothing, padId: PAD, targetIds: batch.target });
    return { loss: out.loss, nllLoss: out.nllLoss, numTokens: out.numTokens };
  };
}

export function weightValues(model: tf.LayersModel): Float32Array[] {
  return model.getWeights().map((w) => Float32Array.from(w.dataSync() as Float32Array));
}
