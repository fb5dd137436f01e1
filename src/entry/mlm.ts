/** `factorized-transformer/mlm`: masked-LM pretraining of a BERT-style encoder, and reuse of its parts. */
export { trainMlm, evaluateMlm } from '../tasks/mlm.ts';
export type { MlmTrainOptions, MlmTrainSummary, MlmEvaluateOptions, MlmEvaluation, MlmScores } from '../tasks/mlm.ts';
export type { MlmConfig, MlmConfigOverrides } from '../tasks/mlm-config.ts';
export { loadEncoder, loadPretrainedAttention } from '../tasks/bert-checkpoint.ts';
