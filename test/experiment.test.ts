// Experiments: spec validation and grid expansion, the resumable runner (with an injected run
// function), the report from synthetic metrics.jsonl folders, and a two-run spec end to end on
// the tiny copy-task fixture with the real translation task.
import * as tf from '@tensorflow/tfjs';
import { Command } from 'commander';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureIo } from '../src/cli/io.ts';
import { UserError } from '../src/errors.ts';
import { registerExperimentCommands } from '../src/cli/commands/experiment.ts';
import { openDecoder } from '../src/decode/engine.ts';
import { rankScaleDeltaSpec } from '../src/experiments/charts.ts';
import { writeReport } from '../src/experiments/report.ts';
import { meanStd, readExperiment, summarize } from '../src/experiments/results.ts';
import { DONE_JSON, runDir, runExperiment, runState, type RunFunction, type RunResult } from '../src/experiments/runner.ts';
import { readCompressSpecFile } from '../src/experiments/compress-spec.ts';
import { expandGrid, loadExperimentSpec, parseExperimentSpec, parseRunName, runName, type ExperimentSpec } from '../src/experiments/spec.ts';
import { checkSpecAgainstTask, makeTaskRunFunction, runOverrides } from '../src/experiments/task-runs.ts';
import { countSeq2SeqParameters, TransformerSeq2Seq } from '../src/models/index.ts';
import { setGlobalSeed } from '../src/random.ts';
import { resolveTranslationConfig, seq2seqModelConfig, type TranslationConfigOverrides } from '../src/tasks/translation-config.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-experiment-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const baseSpec = {
  name: 'unit',
  task: 'translation',
  grid: { rankScale: [0.25, 0.5, 1], variants: ['baseline', 'si', 'fd', 'si-fd'], seeds: [1, 2] },
  regularization: { weightDecay: 1e-4, frobeniusDecay: 3e-4 },
  budget: { maxSteps: 10 },
};

function spec(over: Record<string, unknown> = {}): ExperimentSpec {
  return parseExperimentSpec({ ...baseSpec, ...over }, 'spec.json');
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('spec and grid', () => {
  it('expands rank scale × variant × seed into stable, readable, distinct names', () => {
    const runs = expandGrid(spec());
    expect(runs).toHaveLength(3 * 4 * 2);
    expect(new Set(runs.map((r) => r.name)).size).toBe(runs.length);
    expect(runs.slice(0, 5).map((r) => r.name)).toEqual([
      'rs0.25-baseline-seed1',
      'rs0.25-si-seed1',
      'rs0.25-fd-seed1',
      'rs0.25-si-fd-seed1',
      'rs0.5-baseline-seed1',
    ]);
    expect(runs[runs.length - 1]).toEqual({ name: 'rs1-si-fd-seed2', rankScale: 1, variant: 'si-fd', seed: 2 });
    // every combination is there exactly once
    for (const rs of [0.25, 0.5, 1]) for (const v of ['baseline', 'si', 'fd', 'si-fd']) for (const s of [1, 2]) {
      expect(runs.filter((r) => r.rankScale === rs && r.variant === v && r.seed === s)).toHaveLength(1);
    }
  });

  it('round-trips run names', () => {
    expect(runName({ rankScale: 0.5, variant: 'si-fd', seed: 1 })).toBe('rs0.5-si-fd-seed1');
    expect(parseRunName('rs0.5-si-fd-seed1')).toEqual({ rankScale: 0.5, variant: 'si-fd', seed: 1 });
    expect(parseRunName('rs1-si-seed12')).toEqual({ rankScale: 1, variant: 'si', seed: 12 });
    expect(parseRunName('something-else')).toBeNull();
  });

  it('rejects bad specs with one line naming the file and the key', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ grid: { ...baseSpec.grid, rankscale: [1] } }, /^spec\.json: unknown key 'grid\.rankscale'/],
      [{ grid: { ...baseSpec.grid, variants: ['baseline', 'wd'] } }, /^spec\.json: 'grid\.variants\.1'/],
      [{ grid: { ...baseSpec.grid, seeds: [1, 1] } }, /^spec\.json: 'grid\.seeds': seed values must be distinct/],
      [{ grid: { ...baseSpec.grid, rankScale: [] } }, /^spec\.json: 'grid\.rankScale'/],
      [{ budget: {} }, /^spec\.json: 'budget': set maxSteps or maxTimeMinutes/],
      [{ task: 'lm' }, /^spec\.json: 'task'/],
      [{ name: '../x' }, /^spec\.json: 'name'/],
      [{ grid: { ...baseSpec.grid, factorize: 'ffn' } }, /^spec\.json: 'grid\.factorize'/],
      [{ grid: { ...baseSpec.grid, factorize: 'all', factorizeLinear: true } }, /^spec\.json: 'grid': give either 'factorize' or 'factorizeLinear', not both$/],
    ];
    for (const [over, message] of cases) {
      const err = errorOf(() => spec(over));
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toMatch(message);
      expect(err.message).not.toContain('\n');
    }
    const file = join(root, 'broken.json');
    writeFileSync(file, '{ "name": ');
    expect(errorOf(() => loadExperimentSpec(file)).message).toMatch(/broken\.json: not valid JSON/);
    expect(errorOf(() => loadExperimentSpec(join(root, 'missing.json'))).message).toMatch(/`spec`: file .* does not exist/);
  });

  it('maps variants to the task config knobs', () => {
    const s = spec({ config: { train: { lr: 0.002 }, model: { attentionRank: 3 } } });
    expect(runOverrides(s, { rankScale: 0.25, variant: 'baseline', seed: 3 })).toEqual({
      model: { attentionRankScale: 0.25, attentionRank: null, spectralInit: false },
      train: { lr: 0.002, seed: 3, weightDecay: 1e-4, frobeniusDecay: 0, maxSteps: 10 },
    });
    expect(runOverrides(s, { rankScale: 0.5, variant: 'si', seed: 1 })).toMatchObject({ model: { spectralInit: true }, train: { frobeniusDecay: 0 } });
    expect(runOverrides(s, { rankScale: 0.5, variant: 'fd', seed: 1 })).toMatchObject({ model: { spectralInit: false }, train: { frobeniusDecay: 3e-4, weightDecay: 1e-4 } });
    expect(runOverrides(s, { rankScale: 1, variant: 'si-fd', seed: 1 })).toMatchObject({ model: { spectralInit: true, attentionRankScale: 1 }, train: { frobeniusDecay: 3e-4 } });
    // si-rebalance: attention SI as si, the FFN and embedding factors re-balanced (no SVD of a dense init).
    expect(runOverrides(s, { rankScale: 0.5, variant: 'si-rebalance', seed: 1 })).toMatchObject({
      model: { spectralInit: { linear: 'rebalance', embedding: 'rebalance' } },
      train: { frobeniusDecay: 0 },
    });
    expect(parseRunName('rs0.25-si-rebalance-seed2')).toEqual({ rankScale: 0.25, variant: 'si-rebalance', seed: 2 });
    const withLinear = spec({ grid: { ...baseSpec.grid, factorizeLinear: true } });
    expect(runOverrides(withLinear, { rankScale: 0.5, variant: 'fd', seed: 1 })).toMatchObject({ model: { linearRankScale: 0.5 } });
  });

  it("factorize 'all': attention, FFN, embeddings and output at the rank scale below 1, everything but attention dense at 1 (the paper's code)", () => {
    const all = spec({ preset: 'transformer_tiny', grid: { ...baseSpec.grid, factorize: 'all' } });
    const vocab = { vocabSize: 40, padId: 0, bosId: 1, eosId: 2 };
    const fullRank = countSeq2SeqParameters(seq2seqModelConfig(resolveTranslationConfig({ preset: 'transformer_tiny', flags: { train: { maxSteps: 10 } }, sourceLang: 'en', targetLang: 'es' }), vocab));
    const compression: number[] = [];
    for (const rankScale of [0.25, 0.5, 1]) {
      const overrides = runOverrides(all, { rankScale, variant: 'si-fd', seed: 1 });
      const expected = rankScale < 1 ? rankScale : null;
      expect(overrides.model).toMatchObject({ attentionRankScale: rankScale, linearRankScale: expected, embeddingRankScale: expected, spectralInit: true });
      const config = resolveTranslationConfig({ preset: 'transformer_tiny', flags: overrides as TranslationConfigOverrides, sourceLang: 'en', targetLang: 'es' });
      // An untied output projection is a 'linear' layer: factorized with the FFN.
      for (const tieOutput of [true, false]) {
        const modelConfig = seq2seqModelConfig({ ...config, model: { ...config.model, tieOutput } }, vocab);
        setGlobalSeed(1);
        const model = new TransformerSeq2Seq(modelConfig);
        const kinds = model.factorPairs().map((p) => `${p.name}:${p.kind}`);
        expect(kinds.some((k) => k.endsWith(':qk'))).toBe(true);
        expect(kinds.includes('embedding/shared:embedding')).toBe(rankScale < 1);
        expect(kinds.includes('encoder/0/ffn_in:linear')).toBe(rankScale < 1);
        expect(kinds.includes('output_projection:linear')).toBe(rankScale < 1 && !tieOutput);
        // The counted parameters are the built model's: every factorized layer included.
        expect(model.numParameters()).toBe(countSeq2SeqParameters(modelConfig));
        if (tieOutput) compression.push(model.numParameters() / fullRank);
        model.dispose();
      }
    }
    expect(compression[2]).toBe(1);
    expect(compression[1]).toBeLessThan(0.75);
    expect(compression[0]).toBeLessThan(compression[1]);
    // si-rebalance builds the same attention as si but different FFN and embedding factors.
    const firstValues = (variant: 'si' | 'si-rebalance') => {
      const config = resolveTranslationConfig({ preset: 'transformer_tiny', flags: runOverrides(all, { rankScale: 0.5, variant, seed: 1 }) as TranslationConfigOverrides, sourceLang: 'en', targetLang: 'es' });
      setGlobalSeed(1);
      const model = new TransformerSeq2Seq(seq2seqModelConfig(config, vocab));
      const values = Object.fromEntries(model.factorPairs().map((p) => [`${p.name}:${p.kind}`, Array.from(p.u.read().dataSync().slice(0, 8))]));
      model.dispose();
      return values;
    };
    const si = firstValues('si');
    const rebalanced = firstValues('si-rebalance');
    const qk = Object.keys(si).find((k) => k.endsWith(':qk'))!;
    expect(rebalanced[qk]).toEqual(si[qk]);
    expect(rebalanced['encoder/0/ffn_in:linear']).not.toEqual(si['encoder/0/ffn_in:linear']);
    expect(rebalanced['embedding/shared:embedding']).not.toEqual(si['embedding/shared:embedding']);
    // The default ('attention') leaves them dense.
    expect(runOverrides(spec(), { rankScale: 0.5, variant: 'si', seed: 1 }).model).not.toHaveProperty('embeddingRankScale');
  });

  it('ships the paper-faithful grid beside the attention-only one, with the same recipe', () => {
    const faithful = loadExperimentSpec('experiments/paper-faithful.json');
    const attentionOnly = loadExperimentSpec('experiments/paper-translation.json');
    expect(faithful.grid).toEqual({ rankScale: [0.25, 0.5, 1], variants: ['baseline', 'si', 'fd', 'si-fd', 'si-rebalance'], seeds: [1, 2, 3], factorize: 'all' });
    expect(attentionOnly.grid.factorize ?? 'attention').toBe('attention');
    for (const key of ['task', 'preset', 'config', 'regularization', 'budget', 'evaluate'] as const) expect(faithful[key]).toEqual(attentionOnly[key]);
    expect(expandGrid(faithful)).toHaveLength(45);
    // The long-budget cut of it: same recipe and factorization, fewer cells, 10× the updates.
    const long = loadExperimentSpec('experiments/paper-faithful-long.json');
    for (const key of ['task', 'preset', 'regularization', 'evaluate'] as const) expect(long[key]).toEqual(faithful[key]);
    expect(long.grid).toEqual({ rankScale: [0.25, 0.5], variants: ['baseline', 'si-fd'], seeds: [1, 2, 3], factorize: 'all' });
    expect(long.budget.maxSteps).toBe(12000);
    expect(() => checkSpecAgainstTask(long, 'experiments/paper-faithful-long.json')).not.toThrow();
  });

  it('checks the spec against the task before anything runs', () => {
    expect(() => checkSpecAgainstTask(spec(), 'spec.json')).not.toThrow();
    expect(errorOf(() => checkSpecAgainstTask(spec({ config: { train: { lr_rate: 1 } } }), 'spec.json')).message).toMatch(/spec\.json: 'config'.*unknown key 'train\.lr_rate'/);
    expect(errorOf(() => checkSpecAgainstTask(spec({ task: 'mlm', config: { decode: { beam: 2 } } }), 'spec.json')).message).toMatch(/unknown key 'decode'/);
    expect(() => checkSpecAgainstTask(spec({ task: 'mlm', budget: { maxSteps: 1000 } }), 'spec.json')).not.toThrow();
    expect(errorOf(() => checkSpecAgainstTask(spec({ task: 'mlm', budget: { maxSteps: 10 } }), 'spec.json')).message).toMatch(
      /^spec\.json \(rankScale 0\.25\): 'train\.warmupUpdates' \d+ exceeds 'budget\.maxSteps' 10 \(linear schedule\)$/,
    );
    expect(errorOf(() => checkSpecAgainstTask(spec({ config: { model: { modelDim: 30 } } }), 'spec.json')).message).toMatch(/^spec\.json \(rankScale 0\.25\): .*modelDim/);
  });

  it('CLI: --dry-run lists the grid; a missing --spec is a one-line error', async () => {
    const io = captureIo();
    const program = new Command().exitOverride();
    registerExperimentCommands(program, io);
    await program.parseAsync(['experiment', '--spec', 'experiments/quick.json', '--out', join(root, 'dry'), '--dry-run'], { from: 'user' });
    expect(io.out.trim().split('\n')).toEqual(expandGrid(loadExperimentSpec('experiments/quick.json')).map((r) => `${r.name}\tnew`));
    const bare = new Command().exitOverride();
    registerExperimentCommands(bare, captureIo());
    await expect(bare.parseAsync(['experiment'], { from: 'user' })).rejects.toThrow(/^experiment: --spec FILE\.json is required/);
  });

  it('ships valid specs', () => {
    // Compression specs ("kind": "compress") are test/experiment-compress.test.ts's.
    for (const file of readdirSync('experiments').filter((f) => f.endsWith('.json') && readCompressSpecFile(join('experiments', f)) === null)) {
      const s = loadExperimentSpec(join('experiments', file));
      checkSpecAgainstTask(s, file);
      expect(expandGrid(s).length).toBeGreaterThan(1);
    }
  });
});

/** A fake run: writes a metrics.jsonl whose loss depends on the grid point, and a checkpoint marker. */
function fakeRunFunction(calls: { name: string; resume: boolean }[], failOn?: string): RunFunction {
  return async (_spec, run, ctx) => {
    calls.push({ name: run.name, resume: ctx.resume });
    const lines = [];
    for (let step = 10; step <= 30; step += 10) {
      lines.push(JSON.stringify({ type: 'valid', step, epoch: 0, time: step, loss: 5 - step / 10 + run.rankScale + run.seed / 10 }));
    }
    writeFileSync(join(ctx.dir, 'metrics.jsonl'), lines.join('\n') + '\n');
    mkdirSync(join(ctx.dir, 'checkpoint_last'), { recursive: true });
    if (run.name === failOn) throw new Error('killed');
    const result: RunResult = {
      steps: 30,
      finalValidLoss: 2 + run.rankScale + run.seed / 10,
      numParameters: Math.round(1000 * (0.5 + run.rankScale / 2)),
      fullRankParameters: 1000,
      trainWallSeconds: 12,
      evalWallSeconds: 3,
      test: { bleu: 10 * run.rankScale + run.seed, perplexity: 5 },
    };
    return result;
  };
}

describe('resumable runner', () => {
  const small = () => spec({ grid: { rankScale: [0.5, 1], variants: ['baseline', 'si-fd'], seeds: [1] } });

  it('runs every run once; a second call skips finished runs and resumes an interrupted one', async () => {
    const out = join(root, 'resume');
    const calls: { name: string; resume: boolean }[] = [];
    // First attempt: killed during the third run (after it wrote a checkpoint).
    await expect(runExperiment(small(), { out, runFn: fakeRunFunction(calls, 'rs1-baseline-seed1') })).rejects.toThrow('killed');
    expect(calls.map((c) => c.name)).toEqual(['rs0.5-baseline-seed1', 'rs0.5-si-fd-seed1', 'rs1-baseline-seed1']);
    expect(existsSync(join(runDir(out, 'rs0.5-si-fd-seed1'), DONE_JSON))).toBe(true);
    expect(existsSync(join(runDir(out, 'rs1-baseline-seed1'), DONE_JSON))).toBe(false);

    calls.length = 0;
    const outcome = await runExperiment(small(), { out, runFn: fakeRunFunction(calls) });
    expect(outcome).toEqual({ ran: ['rs1-si-fd-seed1'], resumed: ['rs1-baseline-seed1'], extended: [], skipped: ['rs0.5-baseline-seed1', 'rs0.5-si-fd-seed1'] });
    expect(calls).toEqual([
      { name: 'rs1-baseline-seed1', resume: true },
      { name: 'rs1-si-fd-seed1', resume: false },
    ]);
    const done = JSON.parse(readFileSync(join(runDir(out, 'rs0.5-baseline-seed1'), DONE_JSON), 'utf8'));
    expect(done).toMatchObject({ task: 'translation', run: { name: 'rs0.5-baseline-seed1', rankScale: 0.5, variant: 'baseline', seed: 1 }, compressionRatio: 0.75 });

    calls.length = 0;
    const again = await runExperiment(small(), { out, runFn: fakeRunFunction(calls) });
    expect(calls).toEqual([]);
    expect(again.skipped).toHaveLength(4);
  });

  it('extends finished runs to a larger step budget, but not those stopped for another reason', async () => {
    const out = join(root, 'extend');
    const calls: { name: string; resume: boolean }[] = [];
    await runExperiment(small(), { out, runFn: fakeRunFunction(calls) });
    // The fake runs stop at 30 updates; one stopped early (e.g. early stopping) is not extended.
    for (const name of ['rs0.5-baseline-seed1', 'rs0.5-si-fd-seed1']) {
      const file = join(runDir(out, name), DONE_JSON);
      const done = JSON.parse(readFileSync(file, 'utf8'));
      done.notes = { stopReason: name.includes('si-fd') ? 'earlyStop' : 'maxSteps' };
      writeFileSync(file, JSON.stringify(done));
    }
    // Without its checkpoint a run short of the budget is kept as it is.
    const gone = join(runDir(out, 'rs1-baseline-seed1'), DONE_JSON);
    writeFileSync(gone, JSON.stringify({ ...JSON.parse(readFileSync(gone, 'utf8')), notes: { stopReason: 'maxSteps' } }));
    rmSync(join(runDir(out, 'rs1-baseline-seed1'), 'checkpoint_last'), { recursive: true });
    const states = (budget?: number) => expandGrid(small()).map((r) => runState(runDir(out, r.name), budget).state);
    expect(states()).toEqual(['finished', 'finished', 'finished', 'finished']);
    expect(states(60)).toEqual(['extendable', 'finished', 'finished, not extendable', 'finished']);
    calls.length = 0;
    const larger = { ...small(), budget: { maxSteps: 60 } };
    const outcome = await runExperiment(larger, { out, runFn: fakeRunFunction(calls) });
    expect(outcome).toEqual({ ran: [], resumed: [], extended: ['rs0.5-baseline-seed1'], skipped: ['rs0.5-si-fd-seed1', 'rs1-baseline-seed1', 'rs1-si-fd-seed1'] });
    expect(calls).toEqual([{ name: 'rs0.5-baseline-seed1', resume: true }]);
    // A report of the grid under a still larger budget says which runs have not reached it.
    writeFileSync(join(out, 'experiment.json'), JSON.stringify({ ...larger, budget: { maxSteps: 90 } }));
    await writeReport(out);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain('4 of 4 planned runs finished; 1 finished short of the spec\'s 90 updates and not extended yet');
    expect(JSON.parse(readFileSync(join(runDir(out, 'rs0.5-baseline-seed1'), DONE_JSON), 'utf8')).extendedFrom).toMatchObject({ steps: 30, notes: { stopReason: 'maxSteps' } });
  });

  it('refuses to extend a run trained with the linear schedule (its decay ends at the budget)', async () => {
    const linear = spec({ config: { train: { schedule: 'linear', warmupUpdates: 1 } }, grid: { rankScale: [0.5], variants: ['baseline'], seeds: [1] } });
    const [run] = expandGrid(linear);
    const dir = join(root, 'linear-run');
    mkdirSync(dir, { recursive: true });
    const earlier = { steps: 4, notes: { stopReason: 'maxSteps' } } as unknown as Parameters<RunFunction>[2]['extending'];
    const err = await makeTaskRunFunction()(linear, run, { dir, resume: true, extending: earlier, log: () => undefined }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^rs0\.5-baseline-seed1: finished at 4 updates with the linear schedule, whose decay ends at the budget/);
  });

  it('refuses a second runner on the same folder while the first is running', async () => {
    const out = join(root, 'locked');
    const second: { outcome?: Promise<unknown> } = {};
    const runFn: RunFunction = async (s, run, ctx) => {
      second.outcome ??= runExperiment(small(), { out, runFn: fakeRunFunction([]) }).catch((err: Error) => err);
      return fakeRunFunction([])(s, run, ctx);
    };
    await runExperiment(small(), { out, runFn, only: ['rs0.5-baseline-seed1'] });
    const err = (await second.outcome) as Error;
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/another training .* is writing to this folder/);
    // released afterwards: a later runner goes ahead
    await expect(runExperiment(small(), { out, runFn: fakeRunFunction([]), only: ['rs1-si-fd-seed1'] })).resolves.toBeDefined();
  });

  it('clears a run killed before its first checkpoint and starts it afresh', async () => {
    const out = join(root, 'fresh');
    const dir = runDir(out, 'rs0.5-baseline-seed1');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'metrics.jsonl'), '{"type":"valid","step":999,"loss":9}\n');
    const calls: { name: string; resume: boolean }[] = [];
    await runExperiment(small(), { out, runFn: fakeRunFunction(calls), only: ['rs0.5-baseline-seed1'] });
    expect(calls).toEqual([{ name: 'rs0.5-baseline-seed1', resume: false }]);
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).not.toContain('999');
  });

  it('refuses a folder that holds a different experiment recipe, accepts a grown grid', async () => {
    const out = join(root, 'recipe');
    await runExperiment(small(), { out, runFn: fakeRunFunction([]), only: ['rs1-si-fd-seed1'] });
    const grown = spec({ grid: { rankScale: [0.5, 1], variants: ['baseline', 'si-fd'], seeds: [1, 2] } });
    await expect(runExperiment(grown, { out, runFn: fakeRunFunction([]), only: ['rs1-si-fd-seed2'] })).resolves.toBeDefined();
    const other = spec({ grid: small().grid, regularization: { weightDecay: 0, frobeniusDecay: 1e-3 } });
    await expect(runExperiment(other, { out, runFn: fakeRunFunction([]) })).rejects.toThrow(/different task, data, preset, config or regularization/);
    await expect(runExperiment(small(), { out, runFn: fakeRunFunction([]), only: ['nope'] })).rejects.toThrow(/`only`: 'nope' is not a run/);
  });
});

describe('report', () => {
  it('builds from a folder of synthetic metrics.jsonl files and contains every run', async () => {
    const dir = join(root, 'synthetic');
    const runs: { name: string; losses: number[]; done?: { bleu: number; params: number } }[] = [
      { name: 'rs0.25-baseline-seed1', losses: [6, 5, 4.5], done: { bleu: 10, params: 800 } },
      { name: 'rs0.25-baseline-seed2', losses: [6, 5, 4.1], done: { bleu: 12, params: 800 } },
      { name: 'rs0.25-si-fd-seed1', losses: [5.5, 4.4, 4.0], done: { bleu: 15, params: 800 } },
      { name: 'rs0.25-si-fd-seed2', losses: [5.6, 4.5, 3.9], done: { bleu: 17, params: 800 } },
      { name: 'rs1-baseline-seed1', losses: [6, 4.9], done: { bleu: 14, params: 1000 } },
      { name: 'rs1-si-fd-seed1', losses: [5.9] }, // unfinished: no done.json
    ];
    for (const r of runs) {
      const folder = join(dir, r.name);
      mkdirSync(folder, { recursive: true });
      const lines = r.losses.flatMap((loss, i) => [
        JSON.stringify({ type: 'train', step: 100 * (i + 1), epoch: 0, time: 10 * (i + 1), loss: loss + 0.3, lr: 1e-3 }),
        JSON.stringify({ type: 'valid', step: 100 * (i + 1), epoch: 0, time: 10 * (i + 1), loss, perplexity: Math.exp(loss), bleu: i }),
      ]);
      writeFileSync(join(folder, 'metrics.jsonl'), lines.join('\n') + '\n');
      if (r.done) {
        const id = parseRunName(r.name)!;
        writeFileSync(
          join(folder, DONE_JSON),
          JSON.stringify({
            format: 'factorized-transformer/experiment-run@1',
            task: 'translation',
            run: { name: r.name, ...id },
            steps: 100 * r.losses.length,
            finalValidLoss: r.losses[r.losses.length - 1],
            numParameters: r.done.params,
            fullRankParameters: 1000,
            compressionRatio: r.done.params / 1000,
            trainWallSeconds: 60,
            evalWallSeconds: 6,
            test: { bleu: r.done.bleu },
          }),
        );
      }
    }

    const results = readExperiment(dir);
    expect(results.task).toBe('translation');
    expect(results.runs.map((r) => r.name)).toEqual(runs.map((r) => r.name));
    const summaries = summarize(results);
    expect(summaries.map((s) => s.configuration)).toEqual(['rs0.25-baseline', 'rs0.25-si-fd', 'rs1-baseline', 'rs1-si-fd']);
    const base = summaries[0];
    expect(base.finalValidLoss.mean).toBeCloseTo(4.3, 10);
    expect(base.finalValidLoss.std).toBeCloseTo(Math.sqrt(0.08), 10);
    expect(base.testScore).toMatchObject({ mean: 11, n: 2 });
    expect(base.compressionRatio).toBeCloseTo(0.8, 10);
    expect(summaries[3]).toMatchObject({ runs: 1, finished: 0 });
    // the difference plot pairs each run with the baseline of the same seed, step by step
    const delta = rankScaleDeltaSpec(0.25, results.runs.filter((r) => r.rankScale === 0.25)) as { data: { values: { run: string; step: number; delta: number }[] } };
    const seed1 = delta.data.values.filter((v) => v.run === 'rs0.25-si-fd-seed1');
    expect(seed1.map((v) => v.step)).toEqual([100, 200, 300]);
    expect(seed1.map((v) => v.delta)).toEqual([5.5 - 6, 4.4 - 5, 4.0 - 4.5]);
    expect(delta.data.values.filter((v) => v.run === 'rs0.25-si-fd-seed2').map((v) => v.delta)).toEqual([5.6 - 6, 4.5 - 5, 3.9 - 4.1]);
    expect(rankScaleDeltaSpec(1, results.runs.filter((r) => r.variant === 'si-fd' && r.rankScale === 1))).toBeNull();

    const io = captureIo();
    const program = new Command().exitOverride();
    registerExperimentCommands(program, io);
    await program.parseAsync(['experiment', 'report', dir], { from: 'user' });
    expect(io.out).toContain('report.html');

    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    for (const r of runs) expect(md).toContain(`| ${r.name} |`);
    expect(md).toContain('| 0.25 | baseline | 2/2 | 800 | 0.800 | 4.300 ± 0.283 |  | 11.00 ± 1.41 |  |');
    // Paired by seed: loss differences -0.5 and -0.2 (mean -0.35, sd 0.212, t(1) = 12.706 → ±1.906).
    expect(md).toContain('| 0.25 | si-fd | 2/2 | 800 | 0.800 | 3.950 ± 0.071 | -0.350 [-2.256, +1.556] no difference detected | 16.00 ± 1.41 |');
    expect(md).toContain('| rs1-si-fd-seed1 | unfinished |');
    expect(md).toContain('5 of 6 planned runs finished; 1 unfinished');
    const figures = readdirSync(join(dir, 'figures')).sort();
    expect(figures).toEqual(
      [
        'curve-rs0.25-baseline.svg',
        'curve-rs0.25-si-fd.svg',
        'curve-rs1-baseline.svg',
        'curve-rs1-si-fd.svg',
        'curves-rs0.25.svg',
        'curves-rs1.svg',
        'delta-rs0.25.svg',
        'delta-rs1.svg',
        'summary.svg',
      ].sort(),
    );
    for (const f of figures) {
      const svg = readFileSync(join(dir, 'figures', f), 'utf8');
      expect(svg.startsWith('<svg')).toBe(true);
      expect(svg).toMatch(/<path/); // the plotted lines / points
    }
    // each configuration's figure has one line per seed: vega names the series in the legend
    expect(readFileSync(join(dir, 'figures', 'curve-rs0.25-baseline.svg'), 'utf8')).toContain('seed 2');
    // A legend lists only the variants the figure plots, and a variant keeps its colour across figures.
    const curves = readFileSync(join(dir, 'figures', 'curves-rs0.25.svg'), 'utf8');
    const deltaSvg = readFileSync(join(dir, 'figures', 'delta-rs0.25.svg'), 'utf8');
    expect(curves).toContain("titled 'variant' for fill color and stroke color with 2 values: baseline, si-fd");
    expect(deltaSvg).toContain("titled 'variant' for fill color and stroke color with 1 value: si-fd");
    const siFdColour = (svg: string) => /variant: si-fd[^>]*stroke="(#[0-9a-f]{6})"/.exec(svg)?.[1];
    expect(siFdColour(curves)).toMatch(/^#[0-9a-f]{6}$/);
    expect(siFdColour(deltaSvg)).toBe(siFdColour(curves));
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('<table>');
    expect((html.match(/<svg /g) ?? []).length).toBe(figures.length);
    for (const r of runs) expect(html).toContain(`<td>${r.name}</td>`);
  });

  it('names the file and line of a corrupt metrics.jsonl', () => {
    const dir = join(root, 'corrupt', 'rs1-fd-seed1');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'metrics.jsonl'), '{"type":"valid","step":1,"loss":2}\nnot json\n{"type":"valid","step":2,"loss":1}\n');
    expect(errorOf(() => readExperiment(join(root, 'corrupt'))).message).toMatch(/metrics\.jsonl:2: expected one JSON object per line/);
    expect(errorOf(() => readExperiment(join(root, 'nothing-here'))).message).toMatch(/does not exist/);
  });

  it('computes mean and sample std', () => {
    expect(meanStd([1, 2, 3])).toEqual({ mean: 2, std: 1, n: 3 });
    expect(meanStd([4, NaN])).toMatchObject({ mean: 4, n: 1 });
    expect(meanStd([]).n).toBe(0);
  });
});

describe('a two-run spec end to end (tiny copy task, real training)', () => {
  it('trains, evaluates, reports, and resumes without retraining', async () => {
    const specFile = join(root, 'two-run.json');
    writeFileSync(
      specFile,
      JSON.stringify({
        name: 'two-run',
        task: 'translation',
        data: { dir: 'test/fixtures/tasks/copy', sourceLang: 'xx', targetLang: 'yy' },
        preset: 'transformer_tiny',
        config: { train: { validEvery: 2, saveEvery: 2, logEvery: 1 }, decode: { validBleuSamples: 0 } },
        grid: { rankScale: [0.5], variants: ['baseline', 'si-fd'], seeds: [1] },
        regularization: { weightDecay: 1e-4, frobeniusDecay: 1e-4 },
        budget: { maxSteps: 4 },
        evaluate: { split: 'test', beam: 2, limit: 3 },
      }),
    );
    const out = join(root, 'two-run-out');
    const io = captureIo();
    const program = new Command().exitOverride();
    registerExperimentCommands(program, io);
    await program.parseAsync(['experiment', '--spec', specFile, '--out', out, '--progress', 'none'], { from: 'user' });
    expect(io.out).toContain('ran 2, resumed 0, extended 0, skipped 0');

    const names = ['rs0.5-baseline-seed1', 'rs0.5-si-fd-seed1'];
    // What `auto` decodes with on this machine (ONNX Runtime on a CPU backend where it is installed).
    const probe = new TransformerSeq2Seq({ srcVocabSize: 11, tgtVocabSize: 11, padId: 0, bosId: 1, eosId: 2, modelDim: 8, numHeads: 2, ffnDim: 16, maxPositions: 16, dropout: 0 });
    const opened = await openDecoder(probe, 'auto');
    const decodeEngine = opened.engine;
    await opened.dispose();
    probe.dispose();
    for (const name of names) {
      const done = JSON.parse(readFileSync(join(runDir(out, name), DONE_JSON), 'utf8'));
      expect(done.steps).toBe(4);
      expect(Number.isFinite(done.finalValidLoss)).toBe(true);
      expect(done.test.sentences).toBe(3);
      expect(done.test.bleu).toBeGreaterThanOrEqual(0);
      // d 32, 2 heads: rank 8 of 16 per head, so the attention has half its parameters
      expect(done.compressionRatio).toBeGreaterThan(0.5);
      expect(done.compressionRatio).toBeLessThan(1);
      // Provenance for the report: the machine and the backend the run trained on.
      expect(done.machine).toMatchObject({ platform: `${process.platform}-${process.arch}`, node: process.version });
      expect(done.machine.cpus).toBeGreaterThan(0);
      expect(done.notes.backend).toBe(tf.getBackend());
      // ... and the engine that decoded its test BLEU (auto: ONNX Runtime on wasm where installed).
      expect(done.notes.decodeEngine).toBe(decodeEngine);
      const config = JSON.parse(readFileSync(join(runDir(out, name), 'checkpoint_last', 'config.json'), 'utf8'));
      expect(config.model.attentionRankScale).toBe(0.5);
      expect(config.train.weightDecay).toBe(1e-4);
      expect(config.model.spectralInit).toBe(name.includes('si-fd'));
      expect(config.train.frobeniusDecay).toBe(name.includes('si-fd') ? 1e-4 : 0);
    }
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    for (const name of names) expect(md).toContain(`| ${name} | done |`);
    expect(md).toMatch(new RegExp(`Runs finished \\d{4}-\\d{2}-\\d{2} \\(UTC\\)\\. Machine: ${process.platform}-${process.arch}, \\d+ × .*Trained on the tfjs backend ${tf.getBackend()}\\. Test translations decoded by ${decodeEngine === 'onnx' ? 'ONNX Runtime' : 'tfjs'} \\(recorded by 2 of 2 runs\\)\\.`));
    expect(existsSync(join(out, 'report.html'))).toBe(true);
    expect(existsSync(join(out, 'figures', 'curve-rs0.5-si-fd.svg'))).toBe(true);

    // An interrupted run (no done.json, checkpoint there) resumes: its budget is spent, so it only re-evaluates.
    const first = JSON.parse(readFileSync(join(runDir(out, names[0]), DONE_JSON), 'utf8'));
    rmSync(join(runDir(out, names[0]), DONE_JSON));
    const io2 = captureIo();
    const program2 = new Command().exitOverride();
    registerExperimentCommands(program2, io2);
    await program2.parseAsync(['experiment', '--spec', specFile, '--out', out, '--progress', 'none', '--no-report'], { from: 'user' });
    expect(io2.out).toContain('ran 0, resumed 1, extended 0, skipped 1');
    const again = JSON.parse(readFileSync(join(runDir(out, names[0]), DONE_JSON), 'utf8'));
    expect(again.steps).toBe(4);
    expect(again.test.bleu).toBeCloseTo(first.test.bleu, 6);
    expect(again.finalValidLoss).toBeCloseTo(first.finalValidLoss, 6);

    // A larger budget extends the finished runs from their checkpoint_last (fairseq's larger
    // --max-update), keeping the shorter run's record; the result is the run trained to it at once.
    const longer = JSON.parse(readFileSync(specFile, 'utf8'));
    longer.budget.maxSteps = 6;
    writeFileSync(specFile, JSON.stringify(longer));
    const io3 = captureIo();
    const program3 = new Command().exitOverride();
    registerExperimentCommands(program3, io3);
    await program3.parseAsync(['experiment', '--spec', specFile, '--out', out, '--progress', 'none', '--no-report'], { from: 'user' });
    expect(io3.out).toContain('ran 0, resumed 0, extended 2, skipped 0');
    expect(io3.err).toContain('extending from 4 to 6 updates');
    const extended = JSON.parse(readFileSync(join(runDir(out, names[0]), DONE_JSON), 'utf8'));
    expect(extended.steps).toBe(6);
    expect(extended.extendedFrom.steps).toBe(4);
    expect(extended.extendedFrom.finalValidLoss).toBe(again.finalValidLoss);
    expect(extended.extendedFrom.test.bleu).toBe(again.test.bleu);
    const valids = readFileSync(join(runDir(out, names[0]), 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .filter((r) => r.type === 'valid')
      .map((r) => r.step);
    expect(valids).toEqual([2, 4, 6]);
    // The report keeps the shorter budget's results beside the new ones.
    await writeReport(out);
    const extendedMd = readFileSync(join(out, 'report.md'), 'utf8');
    expect(extendedMd).toContain('2 of 2 planned runs finished.');
    expect(extendedMd).toContain('2 of 2 runs were extended to a larger budget from their checkpoint at 4 updates');
    const atFour = extendedMd.split('## Results by configuration at 4 updates (before the extension)')[1]?.split('## ')[0] ?? '';
    expect(atFour).toContain(`| ${again.finalValidLoss.toFixed(3)} |`);
    expect(extendedMd.split('## Results by configuration\n')[1].split('## ')[0]).toContain(`| ${extended.finalValidLoss.toFixed(3)} |`);

    const direct = join(root, 'two-run-direct');
    const io4 = captureIo();
    const program4 = new Command().exitOverride();
    registerExperimentCommands(program4, io4);
    await program4.parseAsync(['experiment', '--spec', specFile, '--out', direct, '--progress', 'none', '--no-report', '--only', names[0]], { from: 'user' });
    const once = JSON.parse(readFileSync(join(runDir(direct, names[0]), DONE_JSON), 'utf8'));
    expect(once.steps).toBe(6);
    expect(extended.finalValidLoss).toBeCloseTo(once.finalValidLoss, 6);
    expect(extended.test.bleu).toBeCloseTo(once.test.bleu, 6);

    // Without its checkpoint a finished run cannot be extended: it is kept, and the log says why.
    rmSync(join(runDir(direct, names[0]), 'checkpoint_last'), { recursive: true });
    longer.budget.maxSteps = 8;
    writeFileSync(specFile, JSON.stringify(longer));
    const io5 = captureIo();
    const program5 = new Command().exitOverride();
    registerExperimentCommands(program5, io5);
    await program5.parseAsync(['experiment', '--spec', specFile, '--out', direct, '--progress', 'none', '--no-report', '--only', names[0]], { from: 'user' });
    expect(io5.out).toContain('ran 0, resumed 0, extended 0, skipped 1');
    expect(io5.err).toMatch(/finished at 6 of 8 updates, but its checkpoint_last is gone, so it cannot be extended/);
    expect(JSON.parse(readFileSync(join(runDir(direct, names[0]), DONE_JSON), 'utf8'))).toEqual(once);
  });
});

describe('the masked-LM task through the runner (tiny WordPiece corpus, real training)', () => {
  it('trains and evaluates each run and reports test perplexity', async () => {
    const data = join(root, 'mlm-data');
    mkdirSync(data, { recursive: true });
    const words = 'the and of to in he god lord said light earth heaven'.split(' ');
    const lines = (n: number, k: number) => Array.from({ length: n }, (_, i) => Array(4).fill(words[(i * k) % words.length]).join(' ')).join('\n') + '\n';
    writeFileSync(join(data, 'train.txt'), lines(120, 7));
    writeFileSync(join(data, 'valid.txt'), lines(20, 5));
    writeFileSync(join(data, 'test.txt'), lines(20, 3));
    const s = parseExperimentSpec(
      {
        name: 'mlm-two-run',
        task: 'mlm',
        data: { dir: data, tokenizer: join(import.meta.dirname, 'fixtures/text/wordpiece') },
        preset: 'bert_tiny',
        config: { train: { validEvery: 2, saveEvery: 2, logEvery: 1, maxTokens: 256, warmupUpdates: 2 }, data: { maxLength: 16 } },
        grid: { rankScale: [0.5], variants: ['baseline', 'si-fd'], seeds: [1] },
        regularization: { weightDecay: 0.01, frobeniusDecay: 1e-4 },
        budget: { maxSteps: 4 },
      },
      'mlm-spec.json',
    );
    checkSpecAgainstTask(s, 'mlm-spec.json');
    const out = join(root, 'mlm-out');
    const outcome = await runExperiment(s, { out, runFn: makeTaskRunFunction({ progress: 'none' }) });
    expect(outcome.ran).toEqual(['rs0.5-baseline-seed1', 'rs0.5-si-fd-seed1']);
    for (const name of outcome.ran) {
      const done = JSON.parse(readFileSync(join(runDir(out, name), DONE_JSON), 'utf8'));
      expect(done).toMatchObject({ task: 'mlm', steps: 4 });
      expect(done.test.perplexity).toBeGreaterThan(1);
      expect(done.compressionRatio).toBeGreaterThan(0.5);
      expect(done.compressionRatio).toBeLessThan(1);
      const config = JSON.parse(readFileSync(join(runDir(out, name), 'checkpoint_last', 'config.json'), 'utf8'));
      expect(config.model.attentionRankScale).toBe(0.5);
      expect(config.train.frobeniusDecay).toBe(name.includes('si-fd') ? 1e-4 : 0);
    }
    await writeReport(out);
    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('test perplexity');
    expect(md).toContain('| rs0.5-si-fd-seed1 | done |');
  });
});
