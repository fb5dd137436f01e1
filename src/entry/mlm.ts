/** `factorized-transformer/mlm`: masked-LM pretraining of a BERT-style encoder, and reuse of its parts. */
export { trainMlm, evaluateMlm } from '../tasks/mlm.ts';
export type { MlmTrainOptions, MlmTrainSummary, MlmEvaluateOptions, MlmEvaluation, MlmScores, MlmConfig, MlmConfigOverrides } from '../tasks/mlm.ts';
export { loadEncoder, loadPretrainedAttention } from '../models/bert.ts';
