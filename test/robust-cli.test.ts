// Bad input through the CLI (issue 8 item 4) and two trainings on one --out (item 6): every
// mistake is one line `error: ...` naming the file or option, exit code 1, no stack trace.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIo } from '../src/cli/io.ts';
import { runCli } from '../src/cli/main.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.ts';
import { InterruptedError, UserError } from '../src/errors.ts';
import { fileSystemProblem, reportError } from '../src/cli/report-error.ts';
import { removeStaleScratch } from '../src/text/scratch.ts';
import { clearRunFolder, notOurs } from '../src/cli/output-folder.ts';
import * as tf from '@tensorflow/tfjs';

const DATA = 'test/fixtures/tasks/copy';
const root = mkdtempSync(join(tmpdir(), 'ft-robust-cli-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const LANGS = ['--source-lang', 'xx', '--target-lang', 'yy'];
const TINY = ['--preset', 'transformer_tiny', '--max-steps', '1', '--valid-bleu-samples', '0', '--progress', 'none'];

/** Runs the CLI in-process; returns exit code and output. */
async function cli(args: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo(stdin);
  const code = await runCli(args, io);
  return { code, out: io.out, err: io.err };
}

/** Asserts the one-line user-error contract and returns the message. */
function expectUserError(result: { code: number; err: string }, ...mentions: (string | RegExp)[]): string {
  expect(result.code, result.err).toBe(1);
  const lines = result.err.split('\n').filter((l) => l !== '');
  expect(lines, result.err).toHaveLength(1);
  expect(lines[0]).toMatch(/^error: /);
  expect(result.err).not.toMatch(/\n\s+at /);
  for (const m of mentions) expect(lines[0]).toMatch(m);
  return lines[0];
}

/** A copy of the fixture corpus to break. */
function corpusCopy(name: string): string {
  const dir = join(root, name);
  cpSync(DATA, dir, { recursive: true, filter: (f) => !f.endsWith('.ids.bin') });
  return dir;
}

function train(data: string, out: string, ...extra: string[]): string[] {
  return ['train', 'translation', '--data', data, ...LANGS, ...TINY, '--out', join(root, out), ...extra];
}

/**
 * Recomputes a checkpoint's SHA256SUMS after a test edited a file on purpose, so that the case
 * reaches the check it is about (a consistent but wrong config), not the checksum check.
 */
function resealChecksums(dir: string): void {
  const manifest = join(dir, 'SHA256SUMS');
  if (!existsSync(manifest)) return;
  const lines = readFileSync(manifest, 'utf8').trim().split('\n');
  const names = lines.map((l) => l.replace(/^[0-9a-f]{64} [ *]/, ''));
  writeFileSync(manifest, names.map((n) => `${createHash('sha256').update(readFileSync(join(dir, n))).digest('hex')}  ${n}\n`).join(''));
}

let checkpoint: string;
beforeAll(async () => {
  const result = await cli(train(DATA, 'good'));
  expect(result.code, result.err).toBe(0);
  checkpoint = join(root, 'good', 'checkpoint_last');
});

describe('bad input gives one clear line and exit code 1', () => {
  it('missing data folder', async () => {
    expectUserError(await cli(train(join(root, 'nope'), 'o1')), /--data: folder '.*nope' does not exist/);
  });

  it('parallel files with different line counts', async () => {
    const data = corpusCopy('mismatch');
    appendFileSync(join(data, 'train.xx'), 'ka lo\n');
    expectUserError(await cli(train(data, 'o2')), /train\.yy ends at line 400 but .*train\.xx has more lines/);
  });

  it('empty split', async () => {
    const data = corpusCopy('empty');
    writeFileSync(join(data, 'valid.yy'), '');
    expectUserError(await cli(train(data, 'o3')), /valid\.yy is empty/);
  });

  it('invalid UTF-8', async () => {
    const data = corpusCopy('utf8');
    const lines = readFileSync(join(data, 'train.xx'));
    writeFileSync(join(data, 'train.xx'), Buffer.concat([Buffer.from('ka lo\nmi \xff nu\n', 'latin1'), lines.subarray(lines.indexOf(0x0a, lines.indexOf(0x0a) + 1) + 1)]));
    expectUserError(await cli(train(data, 'o4')), /train\.xx:2: invalid UTF-8/);
  });

  it('a line longer than the maximum: error when asked, else skipped with a count', async () => {
    expectUserError(await cli(train(DATA, 'o5', '--max-length', '4', '--long-lines', 'error')), /train\.(xx|yy):\d+: \d+ tokens, longer than data\.maxLength 4 \(shorten it, raise --max-length, or set --long-lines to skip to drop such lines\)$/);
    const skipped = await cli(train(DATA, 'o5b', '--max-length', '4', '--long-lines', 'skip'));
    expect(skipped.code, skipped.err).toBe(0);
    expect(skipped.err).toMatch(/train: skipped \d+ of 400 pairs longer than data\.maxLength 4 tokens/);
  });

  it('unknown config key and wrong type, naming the key and the file', async () => {
    const unknown = join(root, 'unknown.json');
    writeFileSync(unknown, JSON.stringify({ train: { learningRate: 0.1 } }));
    expectUserError(await cli(train(DATA, 'o6', '--config', unknown)), /unknown\.json: unknown key 'train\.learningRate'/);
    const wrongType = join(root, 'wrong-type.json');
    writeFileSync(wrongType, JSON.stringify({ model: { dropout: 'high' } }));
    expectUserError(await cli(train(DATA, 'o7', '--config', wrongType)), /wrong-type\.json: 'model\.dropout': expected number, received string/);
    expectUserError(await cli(train(DATA, 'o7b', '--set', 'train.optimizr=adam')), /command line: unknown key 'train\.optimizr'/);
  });

  it('--resume with --config: the task names its option `configFile`, the CLI shows --config', async () => {
    const config = join(root, 'resume-config.json');
    writeFileSync(config, JSON.stringify({ train: { maxSteps: 2 } }));
    expectUserError(await cli(train(DATA, 'good', '--resume', '--config', config)), /^error: --resume: --config cannot be combined with --resume \(the run keeps its stored config\)$/);
  });

  it('negative rank and rank larger than the dimension', async () => {
    expectUserError(await cli(train(DATA, 'o8', '--rank', '-2')), /'model\.attentionRank': Too small/);
    expectUserError(await cli(train(DATA, 'o9', '--rank', '33')), /'model\.attentionRank' 33 is larger than the model dimension 32/);
    expectUserError(await cli(train(DATA, 'o9b', '--max-steps', 'x')), /option '--max-steps <n>' argument 'x' is invalid/);
  });

  it('checkpoint from another architecture', async () => {
    const other = join(root, 'other-arch');
    cpSync(checkpoint, other, { recursive: true });
    const config = JSON.parse(readFileSync(join(other, 'config.json'), 'utf8'));
    config.model.ffnDim = 48;
    writeFileSync(join(other, 'config.json'), JSON.stringify(config));
    resealChecksums(other);
    expectUserError(await cli(['translate', '--checkpoint', other], 'ka lo\n'), /weights\.bin: weight .* has shape \[.*\], the model built from the config expects/);
    const mlm = join(root, 'mlm-task');
    cpSync(checkpoint, mlm, { recursive: true });
    writeFileSync(join(mlm, 'config.json'), JSON.stringify({ ...config, task: 'mlm' }));
    resealChecksums(mlm);
    expectUserError(await cli(['translate', '--checkpoint', mlm], 'ka lo\n'), /config\.json: this checkpoint is for task 'mlm', not translation/);
  });

  it('corrupted weights.bin', async () => {
    const broken = join(root, 'truncated');
    cpSync(checkpoint, broken, { recursive: true });
    truncateSync(join(broken, 'weights.bin'), 1000);
    expectUserError(await cli(['evaluate', 'translation', '--checkpoint', broken, '--data', DATA]), /weights\.bin: 1000 bytes, but model\.json lists weights of \d+ bytes/);
  });

  it('tokenizer file that is not a tokenizer', async () => {
    const fake = join(root, 'fake.model');
    writeFileSync(fake, 'this is not a sentencepiece model\n');
    expectUserError(await cli(train(DATA, 'o10', '--tokenizer', fake)), /fake\.model is not a SentencePiece model/);
    expectUserError(await cli(train(DATA, 'o11', '--tokenizer', join(root, 'missing.model'))), /--tokenizer: '.*missing\.model' does not exist/);
  });

  it('translate maps characters outside the vocabulary to unk instead of failing', async () => {
    const result = await cli(['translate', '--checkpoint', checkpoint, '--beam', '1'], 'ka ☃ 中文 ñ lo\nQQQ\n');
    expect(result.code, result.err).toBe(0);
    expect(result.out.split('\n')).toHaveLength(3);
  });

  it('unknown command and missing required option', async () => {
    expectUserError(await cli(['trian']), /unknown command 'trian'/);
    expectUserError(await cli(['translate']), /required option '--checkpoint <dir>' not specified/);
    expectUserError(await cli(['translate', '--checkpoint', join(root, 'absent')]), /--checkpoint: '.*absent' does not exist/);
  });
});

describe('the installed command', () => {
  it('exits 1 with one line on stderr and no stack trace (real process)', () => {
    const run = spawnSync(process.execPath, ['bin/factorized-transformer.js', 'train', 'translation', '--data', join(root, 'nope'), ...LANGS, '--max-steps', '1', '--out', join(root, 'o12')], {
      encoding: 'utf8',
      env: { ...process.env, FT_BACKEND: 'cpu' },
    });
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^error: --data: folder '.*nope' does not exist$/)]);
  });

  it('prints help for every command', async () => {
    for (const args of [['--help'], ['train', 'translation', '--help'], ['translate', '--help'], ['evaluate', 'translation', '--help'], ['quickstart', '--help'], ['doctor', '--help'], ['average-checkpoints', '--help']]) {
      const result = await cli(args);
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.out).toMatch(/^Usage: factorized-transformer/);
    }
  });
});

describe('two trainings on one --out folder', () => {
  it('the second refuses with a clear message while the first holds the lock; the first finishes intact', async () => {
    const out = join(root, 'shared-out');
    mkdirSync(out, { recursive: true });
    const first = spawn(
      process.execPath,
      ['bin/factorized-transformer.js', ...train(DATA, 'shared-out', '--max-steps', '8', '--save-every', '2')],
      { env: { ...process.env, FT_BACKEND: 'cpu' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    first.stderr.on('data', (d) => (stderr += d));
    const firstDone = new Promise<number | null>((done) => first.on('exit', (code) => done(code)));
    // Wait until the first training is under way (its first checkpoint written, lock held).
    const lock = join(out, '.lock');
    const started = () => existsSync(join(out, 'checkpoint_last')) && existsSync(lock);
    for (let i = 0; i < 1200 && !started(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(started(), `the first training did not start: ${stderr}`).toBe(true);
    const second = await cli(train(DATA, 'shared-out', '--max-steps', '6'));
    expectUserError(second, /--out .*shared-out/, /lock|in use|another/i);
    const resumed = await cli([...train(DATA, 'shared-out', '--max-steps', '6'), '--resume']);
    expectUserError(resumed, /--out .*shared-out/);
    expect(await firstDone, stderr).toBe(0);
    const ckpt = await loadCheckpoint(join(out, 'checkpoint_last'));
    expect(ckpt.trainerState?.step).toBe(8);
  });
});

describe('file-system mistakes and interruptions (issue 13 items 10, 11, 13)', () => {
  const errno = (code: string, syscall: string, path?: string) =>
    Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code, syscall, ...(path ? { path } : {}) });

  it('maps file-system errors the user can fix to one line and exit 1, in one place', () => {
    expect(fileSystemProblem(errno('EROFS', 'mkdir', '/mnt/ro/out'))).toBe('/mnt/ro/out: read-only file system (EROFS in mkdir)');
    expect(fileSystemProblem(errno('EEXIST', 'mkdir', '/tmp/x'))).toMatch(/^\/tmp\/x: a file is in the way/);
    expect(fileSystemProblem(errno('EACCES', 'open', '/root/x'))).toBe('/root/x: permission denied (EACCES in open)');
    expect(fileSystemProblem(errno('EIO', 'read', '/x'))).toBeNull(); // the hardware's problem: reported as internal
    expect(fileSystemProblem(new Error('plain'))).toBeNull();
    const io = captureIo();
    expect(reportError(errno('EROFS', 'mkdir', '/mnt/ro/out'), io)).toBe(1);
    expect(io.err).toBe('error: /mnt/ro/out: read-only file system (EROFS in mkdir)\n');
  });

  it('exits 130 on SIGINT and 143 on SIGTERM', () => {
    const io = captureIo();
    expect(reportError(new InterruptedError('SIGTERM'), io)).toBe(143);
    expect(reportError(new InterruptedError('SIGINT'), io)).toBe(130);
    expect(io.err).toBe('error: interrupted by SIGTERM\nerror: interrupted by SIGINT\n');
  });

  it('SIGTERM while the tokenizer trains: the trainer child is killed, no temporary folder is left, exit 143', async () => {
    const data = corpusCopy('spm-sigterm');
    rmSync(join(data, 'spm.model'));
    const out = join(root, 'spm-sigterm-out');
    const pidFile = join(root, 'spm-sigterm.pid');
    const child = spawn(process.execPath, ['bin/factorized-transformer.js', ...train(data, 'spm-sigterm-out')], {
      env: { ...process.env, FT_BACKEND: 'cpu', SPM_TRAIN: join(import.meta.dirname, 'fixtures/cli/fake-spm-train.sh'), FAKE_SPM_MODE: 'slow', FAKE_SPM_PIDFILE: pidFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    for (let i = 0; i < 600 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(pidFile), stderr).toBe(true);
    const trainerPid = Number(readFileSync(pidFile, 'utf8'));
    expect(readdirSync(out).some((e) => e.startsWith('.tokenizer-'))).toBe(true);
    child.kill('SIGTERM');
    expect(await exited, stderr).toBe(143);
    expect(stderr).toMatch(/^error: interrupted by SIGTERM$/m);
    expect(() => process.kill(trainerPid, 0), 'spm_train still running').toThrow();
    // Nothing left: the scratch folder is gone, and with it the --out folder the run had created.
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  }, 60_000);

  it('removes the tokenizer scratch folders of dead runs (only those)', async () => {
    const out = join(root, 'stale-scratch');
    mkdirSync(out);
    const dead = spawnSync(process.execPath, ['-e', 'process.exit(0)']).pid!;
    const sleeper = spawn('sleep', ['30']);
    try {
      mkdirSync(join(out, `.tokenizer-${dead}`));
      writeFileSync(join(out, `.tokenizer-${dead}`, 'spm.model'), 'half-trained');
      mkdirSync(join(out, `.tokenizer-${sleeper.pid}`));
      mkdirSync(join(out, '.tokenizer-notapid'));
      expect(removeStaleScratch(out, '.tokenizer-')).toEqual([`.tokenizer-${dead}`]);
      expect(readdirSync(out).sort()).toEqual([`.tokenizer-${sleeper.pid}`, '.tokenizer-notapid'].sort());
      // A training run does it at its start.
      mkdirSync(join(out, `.tokenizer-${dead}`));
      rmSync(join(out, `.tokenizer-${sleeper.pid}`), { recursive: true });
      rmSync(join(out, '.tokenizer-notapid'), { recursive: true });
      const result = await cli(train(DATA, 'stale-scratch'));
      expect(result.code, result.err).toBe(0);
      expect(readdirSync(out).filter((e) => e.startsWith('.tokenizer-'))).toEqual([]);
    } finally {
      sleeper.kill('SIGKILL');
    }
  }, 60_000);

  it('a failed first checkpoint write does not claim that a previous checkpoint was kept', async () => {
    const model = tf.sequential({ layers: [tf.layers.dense({ units: 2, inputShape: [3] })] });
    const full = { writeFile: async () => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' })) };
    try {
      const first = join(root, 'disk-full-first');
      const err = await saveCheckpoint(first, { model, writer: full }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UserError);
      expect((err as Error).message).toMatch(/disk full \(ENOSPC\); no checkpoint was written$/);
      const second = join(root, 'disk-full-second');
      await saveCheckpoint(second, { model });
      const again = await saveCheckpoint(second, { model, writer: full }).catch((e: unknown) => e);
      expect((again as Error).message).toMatch(/disk full \(ENOSPC\); the previous checkpoint is kept$/);
    } finally {
      model.dispose();
    }
  });
});

describe('--overwrite of a run folder (quickstart)', () => {
  it('empties a run folder of ours, and refuses one that holds anything a run does not write', async () => {
    const run = join(root, 'overwrite-run');
    cpSync(join(root, 'good'), run, { recursive: true });
    expect(readdirSync(run)).toContain('checkpoint_last');
    expect(notOurs(run, 'run')).toBeNull();
    clearRunFolder(run);
    expect(readdirSync(run)).toEqual([]);
    const mixed = join(root, 'overwrite-mixed');
    cpSync(join(root, 'good'), mixed, { recursive: true });
    writeFileSync(join(mixed, 'notes.txt'), 'mine');
    expect(() => clearRunFolder(mixed)).toThrow(/refusing to delete it: it holds 'notes\.txt', which a training run does not write/);
    expect(readdirSync(mixed)).toEqual(expect.arrayContaining(['notes.txt', 'checkpoint_last', 'metrics.jsonl']));
  });
});
