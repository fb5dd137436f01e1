/**
 * FactorizedEmbedding: an embedding table stored as the low-rank product E = U · V_s, with
 * `embeddingFactor` U [inputDim, r] and `projectionFactor` V_s [r, outputDim]: a lookup gathers
 * rows of U and projects them by V_s. `projectToVocab` applies Eᵀ (tied output projection)
 * without forming E. Its factor pair gets Frobenius decay of kind 'embedding'.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerArgs } from '../layer-args.ts';
import { UserError } from '../errors.ts';
import { checkSpectralInit, initFactorPair } from './dense.ts';
import { hostRandomNormal } from './host-random.ts';
import type { FactorPair } from './frobenius.ts';
import type { FactorSpectralInit } from './spectral.ts';
import { resolveRank } from './rank.ts';
import { passThroughMask } from '../attention/keras-mask.ts';

export interface FactorizedEmbeddingConfig {
  inputDim: number;
  outputDim: number;
  /** Exclusive with rankScale. Default: full rank min(inputDim, outputDim). */
  rank?: number;
  /** r = max(1, floor(rankScale · min(inputDim, outputDim))). */
  rankScale?: number;
  /**
   * Spectral initialization (spectral.ts `FactorSpectralInit`): true = the paper's, the truncated
   * SVD of an N(0, 1/outputDim) table; 'rebalance' = balance two random factors; false = the
   * random factors. Default true.
   */
  spectralInit?: FactorSpectralInit;
}

export class FactorizedEmbedding extends tf.layers.Layer {
  static className = 'FactorizedEmbedding';

  readonly inputDim: number;
  readonly outputDim: number;
  readonly rankOption: number | undefined;
  readonly rankScale: number | undefined;
  readonly spectralInit: FactorSpectralInit;
  readonly rank: number;
  embeddingFactor!: tf.LayerVariable;
  projectionFactor!: tf.LayerVariable;

  constructor(config: FactorizedEmbeddingConfig & LayerArgs) {
    super(config);
    for (const key of ['inputDim', 'outputDim'] as const) {
      const v = config?.[key];
      if (!Number.isInteger(v) || (v as number) < 1) {
        throw new UserError(`FactorizedEmbedding: option '${key}' must be a positive integer; got ${String(v)}`);
      }
    }
    this.inputDim = config.inputDim;
    this.outputDim = config.outputDim;
    this.rankOption = config.rank ?? undefined;
    this.rankScale = config.rankScale ?? undefined;
    this.spectralInit = checkSpectralInit('FactorizedEmbedding', config.spectralInit);
    this.rank = resolveRank('FactorizedEmbedding', this.inputDim, this.outputDim, this.rankOption, this.rankScale);
    // A lookup per position: a Keras mask on the ids is the output's mask.
    this.supportsMasking = true;
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return passThroughMask(inputs, mask);
  }

  override build(): void {
    const r = this.rank;
    const { inputDim, outputDim } = this;
    this.embeddingFactor = this.addWeight('embeddingFactor', [inputDim, r], 'float32', tf.initializers.zeros());
    this.projectionFactor = this.addWeight('projectionFactor', [r, outputDim], 'float32', tf.initializers.zeros());
    // Drawn on the host (= tf.initializers.randomNormal with these seeds): see host-random.ts.
    initFactorPair(this.embeddingFactor, this.projectionFactor, { m: inputDim, n: outputDim, r, vTransposed: true }, this.spectralInit, {
      // The usual Transformer embedding init (fairseq; TokenEmbedding's dense table): N(0, 1/outputDim).
      full: (seed) => hostRandomNormal([inputDim, outputDim], 0, 1 / Math.sqrt(outputDim), seed),
      // Random factors whose product entries have that variance: each N(0, (outputDim · r)^(-1/2)).
      factors: (seedU, seedV) => {
        const std = Math.pow(1 / (outputDim * r), 0.25);
        return { u: hostRandomNormal([inputDim, r], 0, std, seedU), v: hostRandomNormal([r, outputDim], 0, std, seedV) };
      },
    });
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [...shape, this.outputDim];
  }

  /** ids [...] (any numeric dtype) → embeddings [..., outputDim]. */
  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const ids = Array.isArray(inputs) ? inputs[0] : inputs;
      const flat = tf.reshape(ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32'), [-1]);
      const rows = tf.gather(this.embeddingFactor.read(), flat) as tf.Tensor2D;
      const out = tf.matMul(rows, this.projectionFactor.read() as tf.Tensor2D);
      return tf.reshape(out, [...ids.shape, this.outputDim]);
    });
  }

  /** hidden [..., outputDim] → logits [..., inputDim] = hidden · Eᵀ, as (hidden · V_sᵀ) · Uᵀ. */
  projectToVocab(hidden: tf.Tensor): tf.Tensor {
    if (!this.built) this.build();
    return tf.tidy(() => {
      const flat = tf.reshape(hidden, [-1, this.outputDim]) as tf.Tensor2D;
      const low = tf.matMul(flat, this.projectionFactor.read() as tf.Tensor2D, false, true);
      const logits = tf.matMul(low, this.embeddingFactor.read() as tf.Tensor2D, false, true);
      return tf.reshape(logits, [...hidden.shape.slice(0, -1), this.inputDim]);
    });
  }

  factorPairs(): FactorPair[] {
    if (!this.built) return [];
    return [{ name: `${this.name}/embedding`, kind: 'embedding', u: this.embeddingFactor, v: this.projectionFactor, vTransposed: true }];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      inputDim: this.inputDim,
      outputDim: this.outputDim,
      rank: this.rankOption ?? null,
      rankScale: this.rankScale ?? null,
      spectralInit: this.spectralInit,
    };
  }
}

tf.serialization.registerClass(FactorizedEmbedding);
