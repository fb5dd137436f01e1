/** `factorized-transformer/translation`: train, evaluate and run an encoder–decoder translator. */
export { trainTranslation, evaluateTranslation, translateLines, loadTranslator, formatEvaluation } from '../tasks/translation.ts';
export type {
  TranslationTrainOptions,
  TrainSummary,
  LoadedTranslator,
  TranslateOptions,
  EvaluateTranslationOptions,
  TranslationEvaluation,
} from '../tasks/translation.ts';
