/**
 * Keras masks ([B, T] bool, true = real position, as `tf.layers.embedding({ maskZero: true })`
 * makes them) as our layers receive them from tfjs.
 *
 * tfjs hands a layer its inputs' masks in three ways, and none of them is complete:
 * - `model.predict` / `fit` / `evaluate` / `model.apply` (tfjs-layers' executor): `kwargs.mask`
 *   is the mask of the FIRST input only, a single tensor, even for a multi-input layer;
 * - a model nested in a model (`Container.runInternalGraph`): `kwargs.mask` is the mask, or an
 *   array with one mask (or null) per input;
 * - an eager `layer.apply(tensor)`: no `kwargs.mask`, but the tensor carries `kerasMask` when the
 *   layer that made it supports masking (tfjs sets it from `computeMask(inputs, undefined)`, so
 *   our pass-through `computeMask` falls back to the input's `kerasMask` to keep it going).
 * `inputMask` reads them in that order; a later input's mask (the memory of cross-attention) that
 * reaches the layer in none of these ways is unknown to it: see the attention layer's docs.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';

/** What tfjs passes as `kwargs.mask` or `computeMask`'s mask: a mask, or one per input. */
export type KerasMaskArg = tf.Tensor | (tf.Tensor | null | undefined)[] | null | undefined;

function maybeMask(value: unknown): tf.Tensor | null {
  return value instanceof tf.Tensor ? value : null;
}

/**
 * Removes and returns `kwargs.mask`. tfjs' executor keeps one kwargs object for a whole
 * `predict`/`fit` pass and sets `mask` only for layers whose first input has one, so a mask left
 * there reaches later layers whose inputs have none; a layer that consumed it clears it.
 */
export function takeMask(kwargs: Record<string, unknown> | undefined): KerasMaskArg {
  if (kwargs == null || !('mask' in kwargs)) return undefined;
  const mask = kwargs.mask as KerasMaskArg;
  delete kwargs.mask;
  return mask;
}

/**
 * A mask (or null) typed as tfjs declares `computeMask`'s result: the declaration omits the null
 * that its own layers return for "no mask".
 */
export function asComputedMask(mask: tf.Tensor | null): tf.Tensor {
  return mask as tf.Tensor;
}

/** The Keras mask of input `index` ([B, T] bool) or null (see the module docs for the sources). */
export function inputMask(inputs: tf.Tensor | tf.Tensor[], mask: KerasMaskArg, index = 0): tf.Tensor | null {
  const list = Array.isArray(inputs) ? inputs : [inputs];
  if (Array.isArray(mask)) {
    const given = maybeMask(mask[index]);
    if (given) return given;
  } else if (mask != null && index === 0) {
    return mask;
  }
  const x = list[index];
  if (x == null) return null;
  const carried = maybeMask(x.kerasMask);
  if (carried) return carried;
  // Self-attention written as [x, x]: tfjs passes only the first input's mask, which is this one's.
  return index > 0 && x === list[0] ? inputMask(list, mask, 0) : null;
}

/**
 * The mask of input `index` checked against that input's [B, T, …] shape. A mask of another
 * shape is a mask meant for some other tensor (tfjs' executor can hand a layer the mask of an
 * earlier layer's input when its own inputs have none): an error, not a silent misuse.
 */
export function checkedInputMask(where: string, inputs: tf.Tensor | tf.Tensor[], mask: KerasMaskArg, index = 0): tf.Tensor | null {
  const m = inputMask(inputs, mask, index);
  if (!m) return null;
  const x = (Array.isArray(inputs) ? inputs : [inputs])[index];
  if (m.rank !== 2 || m.shape[0] !== x.shape[0] || m.shape[1] !== x.shape[1]) {
    throw new UserError(`${where}: the Keras mask of input ${index} has shape [${m.shape}]; expected [${x.shape.slice(0, 2)}] (batch, positions of that input)`);
  }
  return m;
}

/** Keras masks (true = real) → a key-padding mask (1 = pad) padding where any of them pads; null if none. */
export function paddingFromMasks(masks: (tf.Tensor | null | undefined)[]): tf.Tensor2D | null {
  const given = masks.filter((m): m is tf.Tensor => m != null);
  if (given.length === 0) return null;
  return tf.tidy(() => {
    const real = given.map((m) => tf.cast(m, 'bool')).reduce((a, b) => tf.logicalAnd(a, b));
    return tf.cast(tf.logicalNot(real), 'float32') as tf.Tensor2D;
  });
}

/**
 * `computeMask` of a per-position layer (output position t is a function of input position t
 * only): the first input's mask, unchanged.
 */
export function passThroughMask(inputs: tf.Tensor | tf.Tensor[], mask: KerasMaskArg): tf.Tensor {
  return asComputedMask(inputMask(inputs, mask, 0));
}
