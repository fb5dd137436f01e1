/** sacreBLEU-compatible BLEU and chrF, and perplexity. */
export {
  corpusBleu,
  sentenceBleu,
  computeBleu,
  bleuSegmentStats,
  closestRefLength,
  SMOOTH_METHODS,
  SMOOTH_DEFAULTS,
  MAX_NGRAM_ORDER,
  type BleuOptions,
  type BleuScore,
  type BleuStats,
  type SmoothMethod,
} from './bleu.ts';
export { corpusChrf, sentenceChrf, computeChrf, splitWordsForChrf, type ChrfOptions, type ChrfScore } from './chrf.ts';
export { perplexity } from './perplexity.ts';
export {
  tokenize13a,
  tokenizeIntl,
  tokenizeChar,
  tokenizeNone,
  getBleuTokenizer,
  BLEU_TOKENIZERS,
  type BleuTokenizerName,
  type BleuTokenizer,
} from './tokenizers.ts';
export { formatScoreText, formatScoreJson, formatSignature, alignScoreLines, type FormattableScore, type TextFormatOptions } from './format.ts';
export { SACREBLEU_VERSION } from './references.ts';
