/**
 * The base options every tfjs layer takes (name, trainable, inputShape, …), derived from the
 * public `tf.layers.Layer` constructor: importing tfjs-layers' own `LayerArgs` means a deep path
 * (`@tensorflow/tfjs-layers/dist/engine/topology`) that leaks into our emitted .d.ts and does not
 * resolve for a consumer under NodeNext.
 */
import type * as tf from '@tensorflow/tfjs';

export type LayerArgs = NonNullable<ConstructorParameters<typeof tf.layers.Layer>[0]>;
