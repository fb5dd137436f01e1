// Bad input through the CLI (issue 8 item 4) and two trainings on one --out (item 6): every
// mistake is one line `error: ...` naming the file or option, exit code 1, no stack trace.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIo } from '../src/cli/io.ts';
import { runCli } from '../src/cli/main.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';

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
    expectUserError(await cli(train(DATA, 'o5', '--max-length', '4', '--long-lines', 'error')), /train\.(xx|yy):\d+: \d+ tokens, longer than data\.maxLength 4/);
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
    expectUserError(await cli(['translate', '--checkpoint', other], 'ka lo\n'), /weights\.bin: weight .* has shape \[.*\], the model built from the config expects/);
    const mlm = join(root, 'mlm-task');
    cpSync(checkpoint, mlm, { recursive: true });
    writeFileSync(join(mlm, 'config.json'), JSON.stringify({ ...config, task: 'mlm' }));
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
