/**
 * `factorized-transformer/attention`: the attention layer and the factorized layers, for use in
 * other tfjs models. Importing it registers the layers with `tf.serialization` (so saved models
 * load) and pulls in no task, CLI, tokenizer or backend code.
 */
export * from '../attention/index.ts';
export * from '../factorized/index.ts';
