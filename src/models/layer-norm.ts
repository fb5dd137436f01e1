/**
 * LayerNorm over the last axis: (x − mean) / √(var + ε) · gamma + beta.
 *
 * Why not tf.layers.layerNormalization: it tiles gamma/beta to the input's shape, and tfjs
 * differentiates Tile with one slice + add per repeated row, which made its backward pass
 * thousands of kernels per step. Plain broadcasting here reduces the gradient in one sum.
 *
 * On engines with the fused kernels (wasm, cpu: backend/kernels/layerNorm.ts) the whole norm,
 * and the residual add before it (`normalize(x, residual)`, used by the blocks), is one kernel
 * forward and one backward; elsewhere the ops below. Same weights, names and config either way.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerArgs } from '../layer-args.ts';
import { UserError } from '../errors.ts';
import { passThroughMask } from '../attention/keras-mask.ts';
import { fusedLayerNorm, hasFusedLayerNorm } from '../backend/kernels/layerNorm.ts';

export interface LayerNormConfig {
  /** Default 1e-5 (PyTorch / fairseq). */
  epsilon?: number;
}

export class LayerNorm extends tf.layers.Layer {
  static className = 'TransformerLayerNorm';
  readonly epsilon: number;
  gamma!: tf.LayerVariable;
  beta!: tf.LayerVariable;

  constructor(config: LayerNormConfig & LayerArgs = {}) {
    super(config);
    this.epsilon = config.epsilon ?? 1e-5;
    if (!(this.epsilon > 0)) throw new UserError(`LayerNorm '${this.name}': 'epsilon' must be > 0; got ${this.epsilon}`);
    // Normalizes each position on its own: a Keras mask on the input is the output's mask.
    this.supportsMasking = true;
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return passThroughMask(inputs, mask);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    const d = shape[shape.length - 1];
    if (d == null) throw new UserError(`LayerNorm '${this.name}': the input's last dimension must be known`);
    this.gamma = this.addWeight('gamma', [d], 'float32', tf.initializers.ones());
    this.beta = this.addWeight('beta', [d], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    return this.normalize(x, null).y;
  }

  /**
   * LayerNorm of `x + residual` (of `x` when residual is null); `sum` is x + residual, given only
   * with a residual. For the blocks, which call it directly on a built layer.
   */
  normalize(x: tf.Tensor, residual: tf.Tensor | null): { y: tf.Tensor; sum?: tf.Tensor } {
    if (!this.built) throw new UserError(`LayerNorm '${this.name}': normalize() needs a built layer`);
    const gamma = this.gamma.read();
    const beta = this.beta.read();
    if (x.dtype === 'float32' && hasFusedLayerNorm()) return fusedLayerNorm(x, residual, gamma, beta, this.epsilon);
    return tf.tidy(() => {
      const sum = residual ? tf.add(x, residual) : null;
      const s = sum ?? x;
      const centered = tf.sub(s, tf.mean(s, -1, true));
      const variance = tf.mean(tf.square(centered), -1, true);
      const normed = tf.mul(centered, tf.rsqrt(tf.add(variance, this.epsilon)));
      const y = tf.add(tf.mul(normed, gamma), beta);
      return sum ? { y, sum } : { y };
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), epsilon: this.epsilon };
  }
}

tf.serialization.registerClass(LayerNorm);
