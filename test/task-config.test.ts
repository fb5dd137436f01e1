// Translation config resolution: preset ← config file ← flags, strict validation with one-line errors.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import { attentionRankOf } from '../src/models/architecture.ts';
import { mergeConfig, parseSetOverrides } from '../src/tasks/config.ts';
import { resolveTranslationConfig, TRANSLATION_PRESETS } from '../src/tasks/translation-config.ts';
import { QUICKSTART_PRESET } from '../src/cli/commands/quickstart.ts';

const dir = mkdtempSync(join(tmpdir(), 'ft-task-config-'));
function configFile(name: string, body: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof body === 'string' ? body : JSON.stringify(body));
  return path;
}
const langs = { sourceLang: 'xx', targetLang: 'yy' };

function errorOf(fn: () => unknown): UserError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).not.toContain('\n');
    return err as UserError;
  }
  throw new Error('expected a UserError');
}

describe('resolveTranslationConfig', () => {
  it('layers preset, then file, then flags', () => {
    const file = configFile('layers.json', { train: { lr: 0.01, maxSteps: 7 }, model: { dropout: 0.3 } });
    const config = resolveTranslationConfig({ ...langs, preset: 'transformer_tiny', configFile: file, flags: { train: { maxSteps: 9 } } });
    expect(config.model.modelDim).toBe(TRANSLATION_PRESETS.transformer_tiny.model.modelDim);
    expect(config.model.dropout).toBe(0.3);
    expect(config.train.lr).toBe(0.01);
    expect(config.train.maxSteps).toBe(9);
    expect(config.sourceLang).toBe('xx');
    expect(config.preset).toBe('transformer_tiny');
  });

  it('transformer_small_cpu keeps the shape of transformer_small at half width with the CPU recipe (and the quickstart uses it)', () => {
    const small = resolveTranslationConfig({ ...langs, preset: 'transformer_small', flags: { train: { maxSteps: 1 } } });
    const cpu = resolveTranslationConfig({ ...langs, preset: QUICKSTART_PRESET, flags: { train: { maxSteps: 1 } } });
    expect(QUICKSTART_PRESET).toBe('transformer_small_cpu');
    for (const key of ['encoderLayers', 'decoderLayers', 'numHeads', 'attentionRankScale', 'spectralInit', 'positions', 'tieOutput', 'shareEmbeddings'] as const) {
      expect(cpu.model[key]).toEqual(small.model[key]);
    }
    expect([cpu.model.modelDim, cpu.model.ffnDim, cpu.model.normFirst, cpu.model.dropout]).toEqual([128, 512, true, 0]);
    expect([cpu.train.lr, cpu.train.warmupUpdates, cpu.train.maxTokens, cpu.train.frobeniusDecay]).toEqual([2e-3, 60, 512, small.train.frobeniusDecay]);
    expect(cpu.train.frobeniusDecay).toBeGreaterThan(0);
    expect(cpu.data.vocabSize).toBe(4000);
  });

  it('applies --set overrides with JSON values', () => {
    const config = resolveTranslationConfig({ ...langs, preset: 'transformer_tiny', set: ['train.maxSteps=3', 'train.optimizer=adamw', 'model.spectralInit=false'] });
    expect(config.train.maxSteps).toBe(3);
    expect(config.train.optimizer).toBe('adamw');
    expect(config.model.spectralInit).toBe(false);
  });

  it('rejects an unknown key in a config file, naming the key and the file', () => {
    const file = configFile('unknown.json', { train: { lrate: 0.1 } });
    const err = errorOf(() => resolveTranslationConfig({ ...langs, configFile: file }));
    expect(err.message).toContain(file);
    expect(err.message).toContain("'train.lrate'");
    expect(err.message).toMatch(/unknown key/);
  });

  it('rejects a wrong type, naming the key and the file', () => {
    const file = configFile('type.json', { train: { maxSteps: 'ten' } });
    const err = errorOf(() => resolveTranslationConfig({ ...langs, configFile: file }));
    expect(err.message).toContain(file);
    expect(err.message).toContain("'train.maxSteps'");
    expect(err.message).toMatch(/expected number, received string/);
  });

  it('rejects invalid JSON and a missing file', () => {
    expect(errorOf(() => resolveTranslationConfig({ ...langs, configFile: configFile('bad.json', '{"train": ') })).message).toMatch(/bad\.json: not valid JSON/);
    expect(errorOf(() => resolveTranslationConfig({ ...langs, configFile: join(dir, 'nope.json') })).message).toMatch(/`configFile`: file .*nope\.json' does not exist/);
  });

  it('rejects a negative rank and a rank larger than the model dimension', () => {
    const neg = configFile('neg.json', { model: { attentionRank: -2 }, train: { maxSteps: 1 } });
    expect(errorOf(() => resolveTranslationConfig({ ...langs, configFile: neg })).message).toMatch(/neg\.json: 'model\.attentionRank': Too small/);
    const big = configFile('big.json', { model: { attentionRank: 999 }, train: { maxSteps: 1 } });
    expect(errorOf(() => resolveTranslationConfig({ ...langs, configFile: big })).message).toMatch(/big\.json: 'model\.attentionRank' 999 is larger than the model dimension 256/);
    const err = errorOf(() => resolveTranslationConfig({ ...langs, preset: 'transformer_tiny', flags: { model: { attentionRankScale: 5 }, train: { maxSteps: 1 } } }));
    expect(err.message).toMatch(/command line: 'model\.attentionRankScale' 5 gives rank 80, which is larger than the model dimension 32/);
  });

  it('rejects an unknown preset and a config without a stopping rule', () => {
    expect(errorOf(() => resolveTranslationConfig({ ...langs, preset: 'huge' })).message).toMatch(/`preset`: unknown preset 'huge'; expected one of transformer_tiny/);
    expect(errorOf(() => resolveTranslationConfig({ ...langs, preset: 'transformer_tiny' })).message).toMatch(/no stopping rule/);
  });

  it('requires both languages', () => {
    expect(errorOf(() => resolveTranslationConfig({ sourceLang: 'xx', flags: { train: { maxSteps: 1 } } })).message).toMatch(/`targetLang`: required/);
  });
});

describe('config helpers', () => {
  it('mergeConfig replaces arrays and scalars and merges objects', () => {
    expect(mergeConfig({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { c: [3] } }, { d: 2 })).toEqual({ a: { b: 1, c: [3] }, d: 2 });
  });
  it('parseSetOverrides rejects an assignment without =', () => {
    expect(() => parseSetOverrides(['train.lr'])).toThrow(/`set`: expected key=value/);
    expect(parseSetOverrides(['a.b=x', 'a.c=[1,2]'])).toEqual({ a: { b: 'x', c: [1, 2] } });
  });
  it('attentionRankOf follows attentionRankScale, prefers attentionRank, and checks divisibility whatever the rank', () => {
    expect(attentionRankOf({ modelDim: 256, numHeads: 4, attentionRankScale: 0.25, attentionRank: null }, 'x')).toBe(16);
    expect(attentionRankOf({ modelDim: 256, numHeads: 4, attentionRankScale: 1, attentionRank: 7 }, 'x')).toBe(7);
    expect(() => attentionRankOf({ modelDim: 30, numHeads: 4, attentionRankScale: 1, attentionRank: null }, 'x')).toThrow(/divisible/);
    expect(() => attentionRankOf({ modelDim: 30, numHeads: 4, attentionRankScale: 0.5, attentionRank: null }, 'x')).toThrow(/divisible/);
    expect(() => attentionRankOf({ modelDim: 30, numHeads: 4, attentionRankScale: 1, attentionRank: 3 }, 'x', 'model.')).toThrow(
      /^x: 'model\.modelDim' 30 must be divisible by 'model\.numHeads' 4$/,
    );
  });
});
