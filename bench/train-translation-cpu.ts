/**
 * `npm run bench -- train-translation-cpu`: training tokens/s (target tokens) of the quickstart's
 * model, transformer_small_cpu (d 128, 4 heads, FFN 512, 2+2 layers, pre-norm, no dropout, one
 * joint vocabulary of the preset's data.vocabSize), at the preset's batch size (train.maxTokens =
 * 512: 16 x 32 target tokens) — the small-batch regime the quickstart and CPU users train in, where
 * per-kernel overhead dominates. Same step and PyTorch reference as bench/train-translation.ts.
 */
import { resolveTranslationConfig, type TranslationConfig } from '../src/tasks/translation-config.ts';
import type { Benchmark } from './common.ts';
import { translationTrainResult } from './train-translation.ts';

export const PRESET = 'transformer_small_cpu';
const LEN = 32;

/** The preset as `train translation --preset transformer_small_cpu` resolves it (a stopping rule is required, not used). */
export function cpuPresetConfig(): TranslationConfig {
  return resolveTranslationConfig({ preset: PRESET, sourceLang: 'src', targetLang: 'tgt', flags: { train: { maxSteps: 1 } } });
}

/** The preset's vocabulary and batch: maxTokens / 32 sentences of 32 source and 32 target tokens. */
export function cpuPresetBatch(): { vocab: number; batch: number; srcLen: number; tgtLen: number } {
  const { data, train } = cpuPresetConfig();
  return { vocab: data.vocabSize, batch: Math.floor(train.maxTokens / LEN), srcLen: LEN, tgtLen: LEN };
}

export const run: Benchmark = async ({ quick }) => [await translationTrainResult('train-translation-cpu', PRESET, cpuPresetBatch(), quick ? 2 : 5)];
