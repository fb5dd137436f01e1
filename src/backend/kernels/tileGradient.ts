/**
 * A vectorized gradient for Tile, registered by initBackend for every engine.
 *
 * Why: tfjs-core's Tile gradient is a loop of one slice + one add per repetition, so tiling a
 * [B, T, d] tensor (tfjs-layers' LayerNormalization, attention masks, position embeddings
 * broadcast to a batch) costs thousands of tiny ops in the backward pass (3 s for one [16, 32, 256]
 * LayerNorm forward + backward on wasm). The gradient of tiling x [s0, …] by reps [r0, …] is dy
 * reshaped to [r0, s0, r1, s1, …] summed over the r axes: one reshape and one sum. Gradients are
 * process-wide in tfjs (not per backend), so this replaces the stock one for every model.
 */
import * as tf from '@tensorflow/tfjs';

let tileGradientRegistered = false;
export function registerVectorizedTileGradient(): void {
  if (tileGradientRegistered) return;
  tileGradientRegistered = true;
  tf.registerGradient({
    kernelName: 'Tile',
    inputsToSave: ['x'],
    gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [x] = saved;
      const reps = attrs.reps as number[];
      const grad = dy as tf.Tensor;
      return {
        x: () => {
          const split: number[] = [];
          const repAxes: number[] = [];
          x.shape.forEach((size, k) => {
            repAxes.push(split.length);
            split.push(reps[k], size);
          });
          return tf.sum(tf.reshape(grad, split), repAxes).reshape(x.shape);
        },
      };
    },
  });
}
