/**
 * `factorized-transformer/browser` (and `factorized-transformer` under a bundler's `browser`
 * condition): everything that runs in a browser, and nothing that imports a Node built-in. The
 * attention layer and the factorized layers, the Transformer and BERT models (their layers
 * registered with `tf.serialization`, so `tf.loadLayersModel('https://…/model.json')` loads a
 * translation or MLM checkpoint), decoding, BLEU/chrF/perplexity, the Hugging Face tokenizer
 * (`HuggingFaceTokenizer.fromJSON` on a fetched tokenizer.json), batching and masking, the loss.
 *
 * Not here (Node only, under `factorized-transformer`, `/translation`, `/mlm`): `initBackend` and
 * the native/wasm engine set-up, file IO (checkpoints, `file://` routers, corpora, caches),
 * SentencePiece (spm_train and its model loader), the training loop, the tasks and the CLI.
 * Choose the engine with tfjs itself (`await tf.setBackend('webgl')`, `'webgpu'`, `'wasm'`).
 * test/browser-bundle.test.ts bundles this file for `--platform=browser` and fails on any Node import.
 */
export * from '../attention/index.ts';
export * from '../factorized/index.ts';
export * from '../models/index.ts';
export { BertEncoder, buildBertForMaskedLM, encoderFromMaskedLM, disposeBertModel, BERT_INPUTS, ENCODER_OUTPUT_LAYER } from '../models/bert.ts';
export type { BertForMaskedLM } from '../models/bert.ts';
export { GatherPositions, OutputBias, MaskedLMHead, scoreMaskedPredictions } from '../models/mlm-head.ts';
export type { MaskedLMHeadConfig, MaskedPredictionScores } from '../models/mlm-head.ts';
export { resolveBertConfig, bertArchitectureSchema, BERT_DEFAULTS } from '../models/bert-config.ts';
export type { BertConfig, BertArchitecture, BertArchitectureSettings, BertConfigInput } from '../models/bert-config.ts';
export { bertPresets, bert_small, bert_base, bertConfigFromPreset } from '../models/bert-presets.ts';
export * from '../decode/index.ts';
export * from '../metrics/index.ts';
export { HuggingFaceTokenizer } from '../text/huggingface.ts';
export type { HuggingFaceTokenizerSource } from '../text/huggingface.ts';
export type { Tokenizer, TokenizerKind, SpecialIds } from '../text/tokenizer-types.ts';
export * from '../text/batching.ts';
export { TokenMasker, makeMaskedLmBatch, packSentences } from '../text/masking.ts';
export type { MaskingOptions, MaskedSequence, MaskedLmBatch, PackingOptions } from '../text/masking.ts';
export { labelSmoothedCrossEntropy } from '../train/losses.ts';
export type { LabelSmoothingOptions, CrossEntropyResult } from '../train/losses.ts';
export { softmaxCrossEntropy } from '../backend/kernels/crossEntropy.ts';
export type { SoftmaxCrossEntropy, SoftmaxCrossEntropyOptions } from '../backend/kernels/crossEntropy.ts';
export { UserError, InternalError, InterruptedError } from '../errors.ts';
export { SeededRandom, globalRandom, setGlobalSeed, seededDropout } from '../random.ts';
