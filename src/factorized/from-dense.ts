/**
 * Conversion of dense (e.g. pretrained) linear and embedding weights into factorized layers: the
 * best rank-r approximation by truncated SVD (`factorize`), exact at full rank.
 */
import * as tf from '@tensorflow/tfjs';
import { InternalError } from '../errors.ts';
import { FactorizedDense, type FactorizedActivation } from './dense.ts';
import { FactorizedEmbedding } from './embedding.ts';
import { resolveRank } from './rank.ts';
import { factorize } from './spectral.ts';

/**
 * kernel [in, units] (x · W convention, as tf.layers.dense) → FactorizedDense of rank r.
 * Async: the kernel is read back with `await data()` (GPU backends cannot read synchronously).
 */
export async function fromDenseKernel(opts: {
  kernel: tf.Tensor2D;
  bias?: tf.Tensor1D;
  rank?: number;
  rankScale?: number;
  activation?: FactorizedActivation;
  name?: string;
}): Promise<{ layer: FactorizedDense; relativeError: number }> {
  const { kernel, bias } = opts;
  if (kernel.rank !== 2) throw new InternalError(`fromDenseKernel: kernel must be [in, units]; got shape [${kernel.shape}]`);
  const [inDim, units] = kernel.shape;
  if (bias && (bias.rank !== 1 || bias.shape[0] !== units)) {
    throw new InternalError(`fromDenseKernel: bias must be [${units}]; got shape [${bias.shape}]`);
  }
  const r = resolveRank('fromDenseKernel', inDim, units, opts.rank, opts.rankScale);
  const { U, V, relativeError } = await factorize(kernel, r);
  const layer = new FactorizedDense({ units, rank: r, useBias: bias != null, activation: opts.activation, spectralInit: false, name: opts.name });
  layer.build([null, inDim]);
  const Vs = tf.transpose(V);
  layer.setWeights(bias ? [U, Vs, bias] : [U, Vs]);
  tf.dispose([U, V, Vs]);
  return { layer, relativeError };
}

/** embeddings [inputDim, outputDim] → FactorizedEmbedding of rank r (async: reads the table with `await data()`). */
export async function fromDenseEmbedding(opts: { embeddings: tf.Tensor2D; rank?: number; rankScale?: number; name?: string }): Promise<{
  layer: FactorizedEmbedding;
  relativeError: number;
}> {
  const { embeddings } = opts;
  if (embeddings.rank !== 2) throw new InternalError(`fromDenseEmbedding: embeddings must be [inputDim, outputDim]; got shape [${embeddings.shape}]`);
  const [inputDim, outputDim] = embeddings.shape;
  const r = resolveRank('fromDenseEmbedding', inputDim, outputDim, opts.rank, opts.rankScale);
  const { U, V, relativeError } = await factorize(embeddings, r);
  const layer = new FactorizedEmbedding({ inputDim, outputDim, rank: r, spectralInit: false, name: opts.name });
  layer.build();
  const Vs = tf.transpose(V);
  layer.setWeights([U, Vs]);
  tf.dispose([U, V, Vs]);
  return { layer, relativeError };
}
