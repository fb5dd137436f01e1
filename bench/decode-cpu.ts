/**
 * `npm run bench -- decode-cpu`: beam search sentences/s of the quickstart's model
 * (transformer_small_cpu, its vocabulary) at the beam `evaluate` and `translate` use by default (the
 * preset's decode.beam, 5); as bench/decode.ts otherwise (16 sentences, exactly 20 tokens + EOS).
 */
import type { Benchmark } from './common.ts';
import { decodeResult } from './decode.ts';
import { cpuPresetConfig, PRESET } from './train-translation-cpu.ts';

export const run: Benchmark = async ({ quick }) => {
  const { data, decode } = cpuPresetConfig();
  return [await decodeResult('decode-cpu', PRESET, { vocab: data.vocabSize, sentences: quick ? 4 : 16, srcLen: 24, len: 20, beam: decode.beam })];
};
