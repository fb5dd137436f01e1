/**
 * Helpers for layers that own other layers (attention, LayerNorm, FFN projections).
 *
 * tfjs names a weight by the name scopes active when it is created, and only `Layer.apply`
 * opens a scope; its `nameScope` helper is not exported. So a sublayer is built by applying it
 * to symbolic inputs inside the owner's `build` (which tfjs runs in the owner's scope): its
 * weights are then named `<owner>/<sublayer>/<weight>`, unique and stable across save/load.
 * That costs only shape inference, no compute.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { FactorizedDense } from '../factorized/index.ts';
import { applyActivation } from '../factorized/dense.ts';
import type { FactorSpectralInit } from '../factorized/spectral.ts';
import { globalRandom } from '../random.ts';
import type { Activation } from './config.ts';
import { LayerNorm } from './layer-norm.ts';

/** Builds `layer` for inputs of the given per-example shapes (batch axis excluded). */
export function buildSublayer(layer: tf.layers.Layer, exampleShapes: (number | null)[][]): void {
  if (layer.built) return;
  const inputs = exampleShapes.map((shape) => tf.input({ shape, dtype: 'float32' }));
  layer.apply(inputs.length === 1 ? inputs[0] : inputs);
}

/** All weights of the sublayers, trainable or not, in a fixed order. */
export function sublayerWeights(layers: tf.layers.Layer[], trainable: boolean): tf.LayerVariable[] {
  const out: tf.LayerVariable[] = [];
  for (const layer of layers) out.push(...(trainable ? layer.trainableWeights : layer.nonTrainableWeights));
  return out;
}

export function layerNorm(name: string): LayerNorm {
  return new LayerNorm({ epsilon: 1e-5, name });
}

/**
 * A position-wise projection: dense (Xavier-uniform, as fairseq) when `rankScale` is null, else a
 * FactorizedDense of rank max(1, floor(rankScale · min(in, out))).
 */
export function projection(name: string, units: number, useBias: boolean, rankScale: number | null, spectralInit: FactorSpectralInit): tf.layers.Layer {
  if (rankScale == null) {
    return tf.layers.dense({
      units,
      useBias,
      name,
      kernelInitializer: tf.initializers.glorotUniform({ seed: globalRandom.nextSeed() }),
      biasInitializer: 'zeros',
    });
  }
  return new FactorizedDense({ units, rankScale, useBias, spectralInit, name });
}

export function activate(x: tf.Tensor, activation: Activation): tf.Tensor {
  if (activation !== 'relu' && activation !== 'gelu') throw new UserError(`unknown activation '${String(activation)}'; expected relu or gelu`);
  return applyActivation(x, activation); // gelu: the exact erf form, as PyTorch / BERT
}

/** [B, S] int ids → [B, S] float mask, 1 where the id is padding. */
export function paddingMask(ids: tf.Tensor, padId: number): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.equal(ids, padId), 'float32')) as tf.Tensor2D;
}
