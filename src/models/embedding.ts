/**
 * TokenEmbedding: token lookup (dense or factorized E = U Vᵀ) plus positions, and — applied to a
 * float [B, T, d] tensor instead of ids — the tied output projection x · Eᵀ.
 *
 * One layer does both so a functional model can share the matrix between the decoder input and
 * the output projection (and the encoder, for a joint vocabulary) just by applying the same
 * layer: tfjs functional graphs cannot hand one layer's weight to another, and they replay no
 * call options, so the direction is chosen by the input's rank (ids [B, T] vs hidden [B, T, d]).
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerArgs } from '../layer-args.ts';
import { UserError } from '../errors.ts';
import { passThroughMask } from '../attention/keras-mask.ts';
import { globalRandom, seededDropout } from '../random.ts';
import { checkSpectralInit, initFactorPair } from '../factorized/dense.ts';
import type { FactorSpectralInit } from '../factorized/spectral.ts';
import { hostRandomNormal } from '../factorized/host-random.ts';
import { resolveRank } from '../factorized/rank.ts';
import type { FactorPair } from '../factorized/index.ts';

export type PositionEncoding = 'sinusoidal' | 'learned' | 'none';

export interface TokenEmbeddingConfig {
  vocabSize: number;
  modelDim: number;
  padId: number;
  /** Multiply token vectors by √d (fairseq's default). Default true. */
  scaleEmbedding?: boolean;
  /** Positions added after the lookup. Default 'sinusoidal'. */
  positions?: PositionEncoding;
  /** Number of positions (learned table size / longest accepted sequence). Default 1024. */
  maxPositions?: number;
  /** Dropout on the summed embedding (training only). Default 0. */
  dropout?: number;
  /** null = dense [V, d] matrix; else factors U [V, r], V [d, r], r = max(1, floor(rankScale · min(V, d))). */
  rankScale?: number | null;
  /**
   * Spectral initialization of the factors (only when factorized; spectral.ts `FactorSpectralInit`):
   * true = the paper's, the truncated SVD of the dense table's own init; 'rebalance' = balance two
   * random factors; false = the random factors. Default true.
   */
  spectralInit?: FactorSpectralInit;
}

/** fairseq's sinusoidal table as a tensor [numPositions, dim]; see sinusoidalValues. */
export function sinusoidalTable(numPositions: number, dim: number): tf.Tensor2D {
  return tf.tensor2d(sinusoidalValues(numPositions, dim), [numPositions, dim]);
}

/** fairseq's sinusoidal table, row-major: [sin(p·ω_i) | cos(p·ω_i)], ω_i = 10000^(−i/(d/2 − 1)); odd d gets a zero column. */
export function sinusoidalValues(numPositions: number, dim: number): Float32Array {
  const half = Math.floor(dim / 2);
  const step = half > 1 ? Math.log(10000) / (half - 1) : 0;
  const data = new Float32Array(numPositions * dim);
  for (let p = 0; p < numPositions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * Math.exp(-step * i);
      data[p * dim + i] = Math.sin(angle);
      data[p * dim + half + i] = Math.cos(angle);
    }
  }
  return data;
}

/** fairseq zeroes the padding row of its embeddings. */
function zeroPadRow(weight: tf.LayerVariable, padRow: tf.Tensor): void {
  const zeroed = tf.tidy(() => tf.mul(weight.read(), tf.sub(1, padRow)));
  weight.write(zeroed);
  zeroed.dispose(); // write() adopts the data, not the tensor object
}

export class TokenEmbedding extends tf.layers.Layer {
  static className = 'TokenEmbedding';

  readonly vocabSize: number;
  readonly modelDim: number;
  readonly padId: number;
  readonly scaleEmbedding: boolean;
  readonly positions: PositionEncoding;
  readonly maxPositions: number;
  readonly dropout: number;
  readonly rankScale: number | null;
  readonly spectralInit: FactorSpectralInit;
  /** Rank of the factors (min(V, d) when dense). */
  readonly rank: number;

  /** Dense [V, d] matrix, or null when factorized. */
  embeddings: tf.LayerVariable | null = null;
  /** Factors: E = embeddingU · embeddingVᵀ, U [V, r], V [d, r]. */
  embeddingU: tf.LayerVariable | null = null;
  embeddingV: tf.LayerVariable | null = null;
  positionEmbeddings: tf.LayerVariable | null = null;
  private sinusoids: tf.Tensor2D | null = null;

  constructor(config: TokenEmbeddingConfig & LayerArgs) {
    super(config);
    const where = `TokenEmbedding '${this.name}'`;
    for (const key of ['vocabSize', 'modelDim'] as const) {
      if (!Number.isInteger(config[key]) || config[key] < 1) throw new UserError(`${where}: '${key}' must be a positive integer; got ${config[key]}`);
    }
    this.vocabSize = config.vocabSize;
    this.modelDim = config.modelDim;
    this.padId = config.padId;
    this.scaleEmbedding = config.scaleEmbedding ?? true;
    this.positions = config.positions ?? 'sinusoidal';
    if (!['sinusoidal', 'learned', 'none'].includes(this.positions)) {
      throw new UserError(`${where}: 'positions' must be sinusoidal, learned or none; got ${String(this.positions)}`);
    }
    this.maxPositions = config.maxPositions ?? 1024;
    this.dropout = config.dropout ?? 0;
    this.rankScale = config.rankScale ?? null;
    this.spectralInit = checkSpectralInit(where, config.spectralInit);
    this.rank = resolveRank(where, this.vocabSize, this.modelDim, null, this.rankScale);
    // Both directions are per position (lookup plus position t's encoding; x · Eᵀ), so a Keras
    // mask on the input is the output's. It makes no mask of its own from padId: the models and
    // blocks built on it derive their padding masks from the ids instead.
    this.supportsMasking = true;
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return passThroughMask(inputs, mask);
  }

  override build(_inputShape: tf.Shape | tf.Shape[]): void {
    const V = this.vocabSize;
    const d = this.modelDim;
    const std = 1 / Math.sqrt(d); // fairseq: N(0, d^-1/2)
    if (this.rankScale == null) {
      const padRow = tf.tidy(() => tf.oneHot(tf.tensor1d([this.padId], 'int32'), V).reshape([V, 1]));
      this.embeddings = this.addWeight('embeddings', [V, d], 'float32', tf.initializers.randomNormal({ stddev: std, seed: globalRandom.nextSeed() }));
      zeroPadRow(this.embeddings, padRow);
      padRow.dispose();
    } else {
      // Drawn on the host (= tf.initializers.randomNormal with these seeds) so that spectral init
      // needs no read-back, which GPU backends cannot do synchronously: factorized/host-random.ts.
      const r = this.rank;
      const padId = this.padId;
      this.embeddingU = this.addWeight('embeddingU', [V, r], 'float32', tf.initializers.zeros());
      this.embeddingV = this.addWeight('embeddingV', [d, r], 'float32', tf.initializers.zeros());
      initFactorPair(this.embeddingU, this.embeddingV, { m: V, n: d, r, vTransposed: false }, this.spectralInit, {
        // SI: the dense table's init above (pad row zero, so U's pad row is zero too).
        full: (seed) => {
          const table = hostRandomNormal([V, d], 0, std, seed);
          for (let j = 0; j < d; j++) table[padId * d + j] *= 0;
          return table;
        },
        // Random factors whose product has the dense init's entry variance 1/d: each N(0, (r·d)^-1/2).
        factors: (seedU, seedV) => {
          const factorStd = Math.pow(r * d, -0.25);
          const u = hostRandomNormal([V, r], 0, factorStd, seedU);
          // The pad row times 0 (as zeroPadRow does on the device, signed zeros included).
          for (let j = 0; j < r; j++) u[padId * r + j] *= 0;
          return { u, v: hostRandomNormal([d, r], 0, factorStd, seedV) };
        },
      });
    }
    if (this.positions === 'learned') {
      this.positionEmbeddings = this.addWeight('positionEmbeddings', [this.maxPositions, d], 'float32',
        tf.initializers.randomNormal({ stddev: std, seed: globalRandom.nextSeed() }));
    } else if (this.positions === 'sinusoidal') {
      this.sinusoids = tf.keep(sinusoidalTable(this.maxPositions, d));
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const s = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return s.length === 2 ? [...s, this.modelDim] : [...s.slice(0, -1), this.vocabSize];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Record<string, unknown>): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    if (x.rank === 2) return this.embed(x as tf.Tensor2D, 0, kwargs?.training === true);
    if (x.rank === 3) return this.project(x as tf.Tensor3D);
    throw new UserError(`TokenEmbedding '${this.name}': expects ids [B, T] or hidden states [B, T, ${this.modelDim}]; got shape [${x.shape}]`);
  }

  /** The embedding matrix rows for `ids` ([..., d]), without scale or positions. */
  private lookup(ids: tf.Tensor): tf.Tensor {
    const flat = tf.reshape(tf.cast(ids, 'int32'), [-1]);
    let rows: tf.Tensor;
    if (this.embeddings) rows = tf.gather(this.embeddings.read(), flat);
    else rows = tf.matMul(tf.gather(this.embeddingU!.read(), flat) as tf.Tensor2D, this.embeddingV!.read() as tf.Tensor2D, false, true);
    return tf.reshape(rows, [...ids.shape, this.modelDim]);
  }

  /** ids [B, T] → [B, T, d]: scaled token vectors + positions offset..offset+T−1, then dropout. */
  embed(ids: tf.Tensor2D, offset: number, training: boolean): tf.Tensor3D {
    if (!this.built) this.build([ids.shape]);
    const [, T] = ids.shape;
    if (this.positions !== 'none' && offset + T > this.maxPositions) {
      throw new UserError(
        `TokenEmbedding '${this.name}': sequence of ${offset + T} positions exceeds maxPositions ${this.maxPositions}`,
      );
    }
    return tf.tidy(() => {
      let x = this.lookup(ids);
      if (this.scaleEmbedding) x = tf.mul(x, Math.sqrt(this.modelDim));
      const table = this.positionEmbeddings ? this.positionEmbeddings.read() : this.sinusoids;
      if (table) x = tf.add(x, tf.slice(table, [offset, 0], [T, this.modelDim]));
      return seededDropout(x, this.dropout, training);
    }) as tf.Tensor3D;
  }

  /** hidden [B, T, d] → logits [B, T, V] = hidden · Eᵀ (for E = U Vᵀ: (hidden · V) · Uᵀ). */
  project(hidden: tf.Tensor3D): tf.Tensor3D {
    if (!this.built) this.build([hidden.shape]);
    return tf.tidy(() => {
      const [B, T, d] = hidden.shape;
      const flat = tf.reshape(hidden, [B * T, d]) as tf.Tensor2D;
      const logits = this.embeddings
        ? tf.matMul(flat, this.embeddings.read() as tf.Tensor2D, false, true)
        : tf.matMul(tf.matMul(flat, this.embeddingV!.read() as tf.Tensor2D), this.embeddingU!.read() as tf.Tensor2D, false, true);
      return tf.reshape(logits, [B, T, this.vocabSize]);
    }) as tf.Tensor3D;
  }

  /** The token-embedding factor pair (empty when dense). */
  factorPairs(name = this.name): FactorPair[] {
    if (!this.embeddingU || !this.embeddingV) return [];
    return [{ name, kind: 'embedding', u: this.embeddingU, v: this.embeddingV, vTransposed: false }];
  }

  override dispose(): tf.serialization.ConfigDict & { refCountAfterDispose: number; numDisposedVariables: number } {
    const result = super.dispose();
    if (result.refCountAfterDispose === 0 && this.sinusoids) {
      this.sinusoids.dispose();
      this.sinusoids = null;
    }
    return result as tf.serialization.ConfigDict & { refCountAfterDispose: number; numDisposedVariables: number };
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      vocabSize: this.vocabSize,
      modelDim: this.modelDim,
      padId: this.padId,
      scaleEmbedding: this.scaleEmbedding,
      positions: this.positions,
      maxPositions: this.maxPositions,
      dropout: this.dropout,
      rankScale: this.rankScale,
      spectralInit: this.spectralInit,
    };
  }
}

tf.serialization.registerClass(TokenEmbedding);
