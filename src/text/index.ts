// Text: tokenizers, fairseq-layout corpora, token batching, and the shipped default corpora.
export type { Tokenizer, TokenizerKind, SpecialIds } from './tokenizer-types.ts';
export { loadTokenizer } from './tokenizer.ts';
export { SentencePieceTokenizer } from './sentencepiece.ts';
export { HuggingFaceTokenizer } from './huggingface.ts';
export type { HuggingFaceTokenizerSource } from './huggingface.ts';
export { loadHuggingFaceTokenizer } from './huggingface-files.ts';
export { trainSentencePiece, hasSentencePieceTrainer, SPM_INSTALL_HINT } from './train-sentencepiece.ts';
export type { TrainSentencePieceOptions } from './train-sentencepiece.ts';
export { readLines, checkTextFile } from './lines.ts';
export type { Line } from './lines.ts';
export {
  encodeTextFile,
  encodeParallelCorpus,
  encodeMonolingualCorpus,
  readParallelCorpus,
  readLinePairs,
  parallelCorpusPath,
  monolingualCorpusPath,
} from './corpus.ts';
export type { EncodedText, EncodedParallelCorpus, EncodeOptions, ParallelLine, SplitName } from './corpus.ts';
export {
  TokenBatcher,
  sentenceSizes,
  filterByMaxPositions,
  padSequences,
  makeTranslationBatch,
} from './batching.ts';
export type {
  BatchPosition,
  TokenBatcherOptions,
  MaxPositionsOptions,
  CorpusSide,
  PaddedBatch,
  TranslationBatch,
  SpecialTokenIds,
} from './batching.ts';
export {
  ensureDefaultTranslationCorpus,
  ensureDefaultMlmCorpus,
  dataCacheDir,
} from './defaults.ts';
export { cacheDir } from './cache-dir.ts';
export {
  DATA_DIR,
  BIBLE_VALID_BOOKS,
  BIBLE_TEST_BOOKS,
} from './defaults.ts';
export type { DefaultTranslationCorpus, DefaultMlmCorpus } from './defaults.ts';
