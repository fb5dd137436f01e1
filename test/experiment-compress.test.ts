// The compression experiment: spec and plan, the shipped spec, and a tiny spec end to end on the
// copy-task fixture with the real tasks — interrupted between parts, rerun (finished parts
// skipped), and reported.
import { Command } from 'commander';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { captureIo } from '../src/cli/io.ts';
import { registerExperimentCommands } from '../src/cli/commands/experiment.ts';
import { compressedDir, compressRunOverrides, checkCompressSpec, compressTrainRun, readCompressRecord, runCompressExperiment } from '../src/experiments/compress-runner.ts';
import { parseCompressSpec, planCompressExperiment, readCompressSpecFile, type CompressRun } from '../src/experiments/compress-spec.ts';
import { DONE_JSON, runDir } from '../src/experiments/runner.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-experiment-compress-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const tinySpec = {
  name: 'compress-tiny',
  kind: 'compress',
  task: 'translation',
  data: { dir: 'test/fixtures/tasks/copy', sourceLang: 'xx', targetLang: 'yy' },
  preset: 'transformer_tiny',
  config: { train: { validEvery: 2, saveEvery: 2, logEvery: 1 }, decode: { validBleuSamples: 0 } },
  teacher: { maxSteps: 6 },
  fineTune: { maxSteps: 2 },
  rankScale: [0.5],
  linear: [false, true],
  seeds: [1],
  regularization: { weightDecay: 1e-4, frobeniusDecay: 1e-4 },
  evaluate: { split: 'test', beam: 2, limit: 3 },
};

async function cli(argv: string[]): Promise<ReturnType<typeof captureIo>> {
  const io = captureIo();
  const program = new Command().exitOverride();
  registerExperimentCommands(program, io);
  await program.parseAsync(argv, { from: 'user' });
  return io;
}

describe('compression spec and plan', () => {
  it('plans per seed: teacher, then per rank scale and arm: compress, ft-fd, ft-wd, scratch with the total budget', () => {
    const spec = parseCompressSpec({ ...tinySpec, seeds: [1, 2] }, 'spec.json');
    const parts = planCompressExperiment(spec);
    const names = parts.map((p) => (p.kind === 'train' ? p.run.name : `compress ${p.part.name}`));
    expect(names.slice(0, 9)).toEqual([
      'rs1-teacher-seed1',
      'compress rs0.5-attn-seed1',
      'rs0.5-attn-ft-fd-seed1',
      'rs0.5-attn-ft-wd-seed1',
      'rs0.5-attn-scratch-si-fd-seed1',
      'compress rs0.5-attn-ffn-seed1',
      'rs0.5-attn-ffn-ft-fd-seed1',
      'rs0.5-attn-ffn-ft-wd-seed1',
      'rs0.5-attn-ffn-scratch-si-fd-seed1',
    ]);
    expect(names).toHaveLength(18);
    const runs: CompressRun[] = parts.flatMap((p) => (p.kind === 'train' ? [p.run] : []));
    const run = (name: string) => runs.find((r) => r.name === name)!;
    expect(run('rs0.5-attn-ffn-scratch-si-fd-seed1').maxSteps).toBe(8);
    expect(run('rs0.5-attn-ft-wd-seed1').maxSteps).toBe(2);
    expect(compressRunOverrides(spec, run('rs1-teacher-seed1'))).toMatchObject({ model: { attentionRankScale: 1, spectralInit: false }, train: { frobeniusDecay: 0, maxSteps: 6 } });
    expect(compressRunOverrides(spec, run('rs0.5-attn-ffn-scratch-si-fd-seed1'))).toMatchObject({
      model: { attentionRankScale: 0.5, linearRankScale: 0.5, spectralInit: true },
      train: { frobeniusDecay: 1e-4, weightDecay: 1e-4, maxSteps: 8 },
    });
    expect(compressRunOverrides(spec, run('rs0.5-attn-ft-wd-seed1'))).toMatchObject({ model: {}, train: { frobeniusDecay: 0, weightDecay: 1e-4 } });
  });

  it('rejects bad specs with one line naming the file and key; ships a valid spec', () => {
    expect(() => parseCompressSpec({ ...tinySpec, rankScale: [1] }, 'spec.json')).toThrow(/^spec.json: 'rankScale.0'/);
    expect(() => parseCompressSpec({ ...tinySpec, fineTune: {} }, 'spec.json')).toThrow(/^spec.json: 'fineTune.maxSteps'/);
    expect(() => parseCompressSpec({ ...tinySpec, grid: {} }, 'spec.json')).toThrow(/unknown key 'grid'/);
    const file = 'experiments/compress-translation.json';
    const spec = parseCompressSpec(readCompressSpecFile(file), file);
    checkCompressSpec(spec, file);
    expect(planCompressExperiment(spec)).toHaveLength(3 * 9);
  });

  it('CLI: --dry-run lists the parts', async () => {
    const io = await cli(['experiment', '--spec', 'experiments/compress-translation.json', '--dry-run']);
    expect(io.out.split('\n')).toContain('compress rs0.25-attn-seed3');
    expect(io.err).toContain('27 parts');
  });
});

describe('the tiny compression experiment end to end (copy task, real training)', () => {
  it('runs, is interrupted between parts, reruns skipping the finished parts, and reports', async () => {
    const specFile = join(root, 'tiny.json');
    writeFileSync(specFile, JSON.stringify(tinySpec));
    const spec = parseCompressSpec(tinySpec, specFile);
    const out = join(root, 'out');

    // First attempt: killed when the first ft-wd run starts (teacher, a compression and ft-fd are done).
    const started: string[] = [];
    await expect(
      runCompressExperiment(spec, {
        out,
        train: (s, run, ctx) => {
          started.push(run.name);
          if (run.method === 'ft-wd') throw new Error('killed');
          return compressTrainRun(s, run, ctx);
        },
      }),
    ).rejects.toThrow('killed');
    expect(started).toEqual(['rs1-teacher-seed1', 'rs0.5-attn-ft-fd-seed1', 'rs0.5-attn-ft-wd-seed1']);
    const record = readCompressRecord(out, 'rs0.5-attn-seed1')!;
    expect(record.attentionRank).toEqual({ before: 16, after: 8 });
    expect(record.validLoss!.after).toBeGreaterThan(0);
    const ftConfig = JSON.parse(readFileSync(join(runDir(out, 'rs0.5-attn-ft-fd-seed1'), 'checkpoint_last', 'config.json'), 'utf8'));
    expect(ftConfig.initFrom).toBe(join(compressedDir(out, 'rs0.5-attn-seed1'), 'checkpoint_last'));
    expect(ftConfig.model.attentionRankScale).toBe(0.5);
    expect(ftConfig.train.frobeniusDecay).toBe(1e-4);
    const teacherDone = readFileSync(join(runDir(out, 'rs1-teacher-seed1'), DONE_JSON), 'utf8');

    // The rerun (the CLI): finished parts are skipped, the rest run; the report is written.
    const io = await cli(['experiment', '--spec', specFile, '--out', out, '--progress', 'none']);
    expect(io.out).toContain('ran 6, resumed 0, extended 0, skipped 3');
    expect(io.err).toContain('rs1-teacher-seed1: finished earlier, skipped');
    expect(io.err).toContain('compress rs0.5-attn-seed1: compressed earlier, skipped');
    expect(readFileSync(join(runDir(out, 'rs1-teacher-seed1'), DONE_JSON), 'utf8')).toBe(teacherDone);
    for (const name of ['rs0.5-attn-ft-wd-seed1', 'rs0.5-attn-scratch-si-fd-seed1', 'rs0.5-attn-ffn-ft-fd-seed1', 'rs0.5-attn-ffn-scratch-si-fd-seed1']) {
      const done = JSON.parse(readFileSync(join(runDir(out, name), DONE_JSON), 'utf8'));
      expect(done.steps).toBe(name.includes('scratch') ? 8 : 2);
      expect(done.test.sentences).toBe(3);
    }
    const ffn = JSON.parse(readFileSync(join(runDir(out, 'rs0.5-attn-ffn-ft-fd-seed1'), 'checkpoint_last', 'config.json'), 'utf8'));
    expect(ffn.model.linearRankScale).toBe(0.5);
    expect(readCompressRecord(out, 'rs0.5-attn-ffn-seed1')!.errors.FFN.layers).toBe(4);

    const md = readFileSync(join(out, 'report.md'), 'utf8');
    expect(md).toContain('## The compression itself (before fine-tuning)');
    expect(md).toMatch(/\| 0\.5 \| attention \+ FFN \| compressed \+ fine-tuned, FD \| 1\/1 \| 2 \|/);
    expect(md).toMatch(/\| 0\.5 \| attention \| from scratch, SI \+ FD \| 1\/1 \| 8 \|/);
    // One seed: a paired difference, but no interval.
    expect(md).toMatch(/compressed \+ fine-tuned, weight decay \|[^\n]*\(one seed: no interval\)/);
    expect(md).toContain('## Frobenius decay vs weight decay in fine-tuning');
    expect(md).toMatch(/\| 0\.5 \| attention \+ FFN \| 1 \| [-+]\d\.\d{3} \(one seed: no interval\) \|/);
    expect(md).toContain('| rs1-teacher-seed1 | done |');
    expect(existsSync(join(out, 'report.html'))).toBe(true);
    expect(existsSync(join(out, 'figures', 'curve-rs0.5-attn-ft-fd.svg'))).toBe(true);

    // A compression killed before its record is made again; everything else is skipped.
    rmSync(`${compressedDir(out, 'rs0.5-attn-ffn-seed1')}.json`);
    const io2 = await cli(['experiment', '--spec', specFile, '--out', out, '--progress', 'none', '--no-report']);
    expect(io2.out).toContain('ran 1, resumed 0, extended 0, skipped 8');
    expect(readCompressRecord(out, 'rs0.5-attn-ffn-seed1')).not.toBeNull();
    // `experiment report` rebuilds this kind of report too.
    rmSync(join(out, 'report.md'));
    await cli(['experiment', 'report', out]);
    expect(readFileSync(join(out, 'report.md'), 'utf8')).toContain('from scratch, SI + FD');
  });
});
