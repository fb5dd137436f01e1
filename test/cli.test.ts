// The CLI framework: version, doctor, error reporting and exit codes, config layering through
// flags, --resume rules, average-checkpoints.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import { captureIo } from '../src/cli/io.ts';
import { runCli } from '../src/cli/main.ts';
import { reportError } from '../src/cli/report-error.ts';
import { selectCheckpoints } from '../src/cli/commands/average.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';

const DATA = 'test/fixtures/tasks/copy';
const root = mkdtempSync(join(tmpdir(), 'ft-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function cli(args: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo(stdin);
  const code = await runCli(args, io);
  return { code, out: io.out, err: io.err };
}

const TRAIN = ['train', 'translation', '--data', DATA, '--source-lang', 'xx', '--target-lang', 'yy', '--preset', 'transformer_tiny', '--valid-bleu-samples', '0', '--progress', 'none'];

describe('program', () => {
  it('prints its version', async () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
    const result = await cli(['--version']);
    expect(result.code).toBe(0);
    expect(result.out.trim()).toBe(pkg.version);
  });

  it('doctor reports the engine as JSON', async () => {
    const result = await cli(['doctor', '--json']);
    expect(result.code, result.err).toBe(0);
    const report = JSON.parse(result.out);
    expect(report.tfjs).toBe('4.22.0');
    expect(typeof report.backend).toBe('string');
    expect(report.cpus).toBeGreaterThan(0);
  });

  it('reports user mistakes as one line (exit 1) and anything else with a hint (exit 2)', () => {
    const user = captureIo();
    expect(reportError(new UserError('cfg.json: unknown key \'x\''), user)).toBe(1);
    expect(user.err).toBe("error: cfg.json: unknown key 'x'\n");
    const bug = captureIo();
    const saved = process.env.FT_DEBUG;
    delete process.env.FT_DEBUG;
    expect(reportError(new TypeError('cannot read properties of undefined\n    at foo (x.ts:1:1)'), bug)).toBe(2);
    if (saved !== undefined) process.env.FT_DEBUG = saved;
    expect(bug.err).toMatch(/^error: cannot read properties of undefined\nhint: .*FT_DEBUG=1/);
    expect(bug.err).not.toContain('x.ts:1:1');
  });
});

describe('train translation options', () => {
  let out: string;
  beforeAll(async () => {
    out = join(root, 'run');
    const config = join(root, 'cfg.json');
    writeFileSync(config, JSON.stringify({ train: { lr: 0.002, maxSteps: 4 }, decode: { beam: 3 } }));
    const result = await cli([...TRAIN, '--config', config, '--max-steps', '3', '--save-every', '1', '--keep-last', '2', '--set', 'train.labelSmoothing=0.05', '--rank-scale', '0.5', '--out', out]);
    expect(result.code, result.err).toBe(0);
  });

  it('layers preset, config file, flags and --set into the stored config.json', () => {
    const config = JSON.parse(readFileSync(join(out, 'checkpoint_last', 'config.json'), 'utf8'));
    expect(config.train).toMatchObject({ lr: 0.002, maxSteps: 3, labelSmoothing: 0.05, saveEvery: 1, keepLast: 2 });
    expect(config.model).toMatchObject({ attentionRankScale: 0.5, modelDim: 32 });
    expect(config.decode.beam).toBe(3);
  });

  it('refuses to start over an existing run, and --resume refuses to change the model', async () => {
    const again = await cli([...TRAIN, '--max-steps', '3', '--out', out]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^error: --out .*run: already holds checkpoint_last; pass --resume/);
    const changed = await cli([...TRAIN, '--max-steps', '5', '--dropout', '0.3', '--resume', '--out', out]);
    expect(changed.code).toBe(1);
    expect(changed.err).toMatch(/^error: --resume: cannot change 'model\.dropout' of an existing run/);
  });

  it('--resume with a larger budget continues to it', async () => {
    const result = await cli(['train', 'translation', '--data', DATA, '--resume', '--max-steps', '4', '--progress', 'none', '--out', out]);
    expect(result.code, result.err).toBe(0);
    const ckpt = await loadCheckpoint(join(out, 'checkpoint_last'));
    expect(ckpt.trainerState?.step).toBe(4);
  });

  it('average-checkpoints averages the last N step checkpoints into a usable model', async () => {
    expect(existsSync(join(out, 'checkpoint_3')) && existsSync(join(out, 'checkpoint_4'))).toBe(true);
    const averaged = join(root, 'averaged');
    const result = await cli(['average-checkpoints', '--checkpoint-dir', out, '--last', '2', '--out', averaged]);
    expect(result.code, result.err).toBe(0);
    const [a, b, avg] = await Promise.all([join(out, 'checkpoint_3'), join(out, 'checkpoint_4'), averaged].map((d) => loadCheckpoint(d)));
    const x = new Float32Array(a.weightData);
    const y = new Float32Array(b.weightData);
    const z = new Float32Array(avg.weightData);
    for (const i of [0, 100, x.length - 1]) expect(z[i]).toBeCloseTo((x[i] + y[i]) / 2, 6);
    const translated = await cli(['translate', '--checkpoint', averaged], 'ka lo\n');
    expect(translated.code, translated.err).toBe(0);
    expect(() => selectCheckpoints({ checkpointDir: out, last: 9 })).toThrow(/fewer than --last 9/);
    expect(() => selectCheckpoints({ inputs: [out], checkpointDir: out })).toThrow(/not both/);
  });
});
