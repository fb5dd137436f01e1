/**
 * `npm run bench -- train-mlm-default`: training tokens/s of `train mlm`'s defaults (README,
 * Masked-LM pretraining): the bert_small task preset (no dropout) at its batch size (train.maxTokens
 * 2048 = 16 x 128 tokens), 15 % of each sequence masked, vocab 8000 (the shipped Moby-Dick model).
 * Same step and PyTorch reference as bench/train-mlm.ts (which keeps the architecture preset's
 * dropout 0.1 at 32 x 128).
 */
import { bertConfigFor, resolveMlmConfig } from '../src/tasks/mlm-config.ts';
import type { Benchmark } from './common.ts';
import { mlmTrainResult } from './train-mlm.ts';

export const run: Benchmark = async ({ quick }) => {
  const config = resolveMlmConfig({ preset: 'bert_small' });
  const seqLen = config.data.maxLength;
  const shape = { batch: quick ? 2 : Math.floor(config.train.maxTokens / seqLen), seqLen, masked: Math.round(config.data.maskProbability * seqLen) };
  return [await mlmTrainResult('train-mlm-default', 'bert_small (train mlm preset)', bertConfigFor(config, { vocabSize: 8000, padId: 0 }), shape, quick ? 2 : 5)];
};
