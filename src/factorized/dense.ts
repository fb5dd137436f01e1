/**
 * FactorizedDense: a dense layer whose kernel is the low-rank product W = U · V_s, stored as
 * `inputFactor` U [in, r] and `outputFactor` V_s [r, units] (= Vᵀ, so the forward pass is two
 * plain matmuls: y = (x U) V_s + b). Used for FFNs and output projections (the paper's
 * --rank-scale on linear layers); its factor pair gets Frobenius decay of kind 'linear'.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerArgs } from '../layer-args.ts';
import { InternalError, UserError } from '../errors.ts';
import { globalRandom } from '../random.ts';
import type { FactorPair } from './frobenius.ts';
import { resolveRank } from './rank.ts';
import { hostRandomUniform } from './host-random.ts';
import { balanceStoredPair, FACTOR_SPECTRAL_INIT_CHOICES, svdStoredPair, type FactorSpectralInit } from './spectral.ts';
import { passThroughMask } from '../attention/keras-mask.ts';
import { gelu } from '../backend/kernels/gelu.ts';

export type FactorizedActivation = 'linear' | 'relu' | 'gelu' | 'tanh' | 'sigmoid';
const ACTIVATIONS: readonly FactorizedActivation[] = ['linear', 'relu', 'gelu', 'tanh', 'sigmoid'];

export interface FactorizedDenseConfig {
  units: number;
  /** Rank r of the kernel; exclusive with rankScale. Default: full rank min(in, units). */
  rank?: number;
  /** r = max(1, floor(rankScale · min(in, units))). */
  rankScale?: number;
  /** Default true. */
  useBias?: boolean;
  /** Default 'linear'. */
  activation?: FactorizedActivation;
  /**
   * Spectral initialization (spectral.ts `FactorSpectralInit`): true = the paper's, the truncated
   * SVD of a Glorot-uniform kernel (what the dense layer would start from); 'rebalance' = balance
   * two random factors; false = the random factors. Default true.
   */
  spectralInit?: FactorSpectralInit;
}

export function applyActivation(x: tf.Tensor, activation: FactorizedActivation): tf.Tensor {
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'gelu': // exact GELU, x·Φ(x), as torch.nn.functional.gelu; one kernel on wasm and cpu
      return gelu(x);
    case 'tanh':
      return tf.tanh(x);
    case 'sigmoid':
      return tf.sigmoid(x);
  }
}

export class FactorizedDense extends tf.layers.Layer {
  static className = 'FactorizedDense';

  readonly units: number;
  readonly rankOption: number | undefined;
  readonly rankScale: number | undefined;
  readonly useBias: boolean;
  readonly activation: FactorizedActivation;
  readonly spectralInit: FactorSpectralInit;
  /** Rank r (after build). */
  rank = 0;
  inputFactor!: tf.LayerVariable;
  outputFactor!: tf.LayerVariable;
  bias: tf.LayerVariable | null = null;

  constructor(config: FactorizedDenseConfig & LayerArgs) {
    super(config);
    if (config == null || !Number.isInteger(config.units) || config.units < 1) {
      throw new UserError(`FactorizedDense: option 'units' must be a positive integer; got ${String(config?.units)}`);
    }
    this.units = config.units;
    this.rankOption = config.rank ?? undefined;
    this.rankScale = config.rankScale ?? undefined;
    resolveRank('FactorizedDense', 1, 1, this.rankOption, this.rankScale); // validates the options early
    this.useBias = config.useBias ?? true;
    this.activation = config.activation ?? 'linear';
    if (!ACTIVATIONS.includes(this.activation)) {
      throw new UserError(`FactorizedDense: option 'activation' must be one of ${ACTIVATIONS.join(', ')}; got ${String(config.activation)}`);
    }
    this.spectralInit = checkSpectralInit('FactorizedDense', config.spectralInit);
    // Per position (last axis only): a Keras mask on the input is the output's mask.
    this.supportsMasking = true;
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return passThroughMask(inputs, mask);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const inDim = shape[shape.length - 1];
    if (inDim == null) throw new InternalError(`FactorizedDense '${this.name}': the input's last dimension must be known`);
    const r = (this.rank = resolveRank(`FactorizedDense '${this.name}'`, inDim, this.units, this.rankOption, this.rankScale));
    this.inputFactor = this.addWeight('inputFactor', [inDim, r], 'float32', tf.initializers.zeros());
    this.outputFactor = this.addWeight('outputFactor', [r, this.units], 'float32', tf.initializers.zeros());
    if (this.useBias) this.bias = this.addWeight('bias', [this.units], 'float32', tf.initializers.zeros());
    const units = this.units;
    initFactorPair(this.inputFactor, this.outputFactor, { m: inDim, n: units, r, vTransposed: true }, this.spectralInit, {
      // The dense layer's kernel: Glorot uniform, ±√(6 / (in + units)) (sublayers.ts `projection`).
      full: (seed) => {
        const limit = Math.sqrt(6 / (inDim + units));
        return hostRandomUniform([inDim, units], -limit, limit, seed);
      },
      // Random factors whose product entries get the Glorot-uniform variance 2 / (in + units).
      factors: (seedU, seedV) => {
        const limit = Math.sqrt(3 * Math.sqrt(2 / (inDim + units) / r));
        return { u: hostRandomUniform([inDim, r], -limit, limit, seedU), v: hostRandomUniform([r, units], -limit, limit, seedV) };
      },
    });
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return [...shape.slice(0, -1), this.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const inDim = x.shape[x.rank - 1];
      const flat = tf.reshape(x, [-1, inDim]) as tf.Tensor2D;
      let y: tf.Tensor = tf.matMul(tf.matMul(flat, this.inputFactor.read() as tf.Tensor2D), this.outputFactor.read() as tf.Tensor2D);
      if (this.bias) y = tf.add(y, this.bias.read());
      y = applyActivation(y, this.activation);
      return tf.reshape(y, [...x.shape.slice(0, -1), this.units]);
    });
  }

  /** The kernel's factor pair (U, V_sᵀ), kind 'linear'. */
  factorPairs(): FactorPair[] {
    if (!this.built) return [];
    return [{ name: `${this.name}/linear`, kind: 'linear', u: this.inputFactor, v: this.outputFactor, vTransposed: true }];
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      units: this.units,
      rank: this.rankOption ?? null,
      rankScale: this.rankScale ?? null,
      useBias: this.useBias,
      activation: this.activation,
      spectralInit: this.spectralInit,
    };
  }
}

/** A layer's `spectralInit` option, checked: true, false or 'rebalance' (default true). */
export function checkSpectralInit(where: string, value: FactorSpectralInit | undefined): FactorSpectralInit {
  const v = value ?? true;
  if (!FACTOR_SPECTRAL_INIT_CHOICES.includes(v)) {
    throw new UserError(`${where}: option 'spectralInit' must be true, false or 'rebalance'; got ${JSON.stringify(value)}`);
  }
  return v;
}

/**
 * Writes a factor pair's initial host values into its variables (shapes as stored: `v` is
 * [heads?, r, n] when `vTransposed`), balanced by spectral initialization first when `balance`.
 * The values never come back from the device: see host-random.ts.
 */
export function writeFactorPair(
  u: tf.LayerVariable,
  v: tf.LayerVariable,
  uValues: Float32Array,
  vValues: Float32Array,
  dims: { heads: number; m: number; n: number; r: number; vTransposed: boolean },
  balance: boolean,
): void {
  const values = balance ? balanceStoredPair(uValues, vValues, dims) : { u: uValues, v: vValues };
  const ut = tf.tensor(values.u, u.shape as number[], 'float32');
  const vt = tf.tensor(values.v, v.shape as number[], 'float32');
  u.write(ut);
  v.write(vt);
  tf.dispose([ut, vt]);
}

/**
 * Initializes the one [m, n] factor pair of a dense or embedding layer (`u` [m, r]; `v` [r, n] when
 * `vTransposed`, else [n, r]) by `mode` (spectral.ts `FactorSpectralInit`): true = the truncated
 * SVD of `draw.full(seed)`, the unfactorized layer's own default initial matrix [m, n], so SI at
 * full rank starts from exactly the dense layer's matrix (same seed, same numbers); otherwise the
 * random factors `draw.factors` ([m, r] and v as stored), re-balanced for 'rebalance'.
 * Two seeds are taken in every mode, so the layers built after this one draw the same numbers
 * whatever the mode (the arms of an experiment differ only where they mean to).
 */
export function initFactorPair(
  u: tf.LayerVariable,
  v: tf.LayerVariable,
  dims: { m: number; n: number; r: number; vTransposed: boolean },
  mode: FactorSpectralInit,
  draw: { full: (seed: number) => Float32Array; factors: (seedU: number, seedV: number) => { u: Float32Array; v: Float32Array } },
): void {
  const seedU = globalRandom.nextSeed();
  const seedV = globalRandom.nextSeed();
  if (mode === true) {
    const values = svdStoredPair(draw.full(seedU), dims);
    writeFactorPair(u, v, values.u, values.v, { heads: 1, ...dims }, false);
  } else {
    const values = draw.factors(seedU, seedV);
    writeFactorPair(u, v, values.u, values.v, { heads: 1, ...dims }, mode === 'rebalance');
  }
}

tf.serialization.registerClass(FactorizedDense);
