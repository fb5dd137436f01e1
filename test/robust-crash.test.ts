// Crash safety through the CLI (issue 8 item 1): kill -9 a training at random moments, 5 times in
// a row; each time the latest checkpoint loads, and --resume ends at the same step with the same
// weights and losses, bit for bit, as a run that was never interrupted (cpu backend, fixed seed).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { SeededRandom } from '../src/random.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-robust-crash-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const MAX_STEPS = 16;

/** A very small model on the copy fixture; a checkpoint after every update, so kills land in and between saves. */
function trainArgs(out: string): string[] {
  return [
    'bin/factorized-transformer.js',
    'train', 'translation',
    '--data', 'test/fixtures/tasks/copy', '--source-lang', 'xx', '--target-lang', 'yy',
    '--preset', 'transformer_tiny', '--set', 'model.modelDim=16', '--set', 'model.ffnDim=32', '--dropout', '0.1',
    '--max-tokens', '128', '--max-steps', String(MAX_STEPS), '--save-every', '1', '--valid-every', '1000', '--log-every', '1',
    '--valid-bleu-samples', '0', '--progress', 'none', '--seed', '7',
    '--resume', '--out', out,
  ];
}

function start(out: string): { child: ChildProcess; exit: Promise<{ code: number | null; signal: string | null; stderr: string }> } {
  const child = spawn(process.execPath, trainArgs(out), { env: { ...process.env, FT_BACKEND: 'cpu' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exit = new Promise<{ code: number | null; signal: string | null; stderr: string }>((done) =>
    child.on('exit', (code, signal) => done({ code, signal, stderr })),
  );
  return { child, exit };
}

/** The last step in metrics.jsonl (0 if none yet). */
function loggedStep(out: string): number {
  const file = join(out, 'metrics.jsonl');
  if (!existsSync(file)) return 0;
  let step = 0;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    try {
      step = Math.max(step, JSON.parse(line).step ?? 0);
    } catch {
      // empty or cut line
    }
  }
  return step;
}

function trainRecords(out: string): { step: number; loss: number; lr: number; gradNorm: number }[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l))
    .filter((r) => r.type === 'train')
    .map((r) => ({ step: r.step, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm }));
}

it('kill -9 at random moments, resume: same final step, weights and losses as an uninterrupted run', { timeout: 300_000 }, async () => {
  const reference = join(root, 'reference');
  const ref = await start(reference).exit;
  expect(ref.code, ref.stderr).toBe(0);

  const out = join(root, 'interrupted');
  const rng = new SeededRandom(2026);
  let kills = 0;
  const killedAt: number[] = [];
  for (let attempt = 0; attempt < 5; attempt++) {
    const before = loggedStep(out);
    const run = start(out);
    let exited = false;
    void run.exit.then(() => (exited = true));
    // Kill once this run has logged 1-3 new steps, plus a random few ms: the moment falls anywhere
    // in an update or a checkpoint write, whatever the speed of the machine.
    const target = Math.min(MAX_STEPS - 1, loggedStep(out) + 1 + rng.nextInt(3));
    while (!exited && (loggedStep(out) < target || loggedStep(out) === before)) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, rng.nextInt(150)));
    run.child.kill('SIGKILL');
    const result = await run.exit;
    if (result.signal === 'SIGKILL') {
      kills++;
      killedAt.push(loggedStep(out));
    } else expect(result.code, result.stderr).toBe(0);
    // Whatever the moment, the latest checkpoint is complete and loads.
    const last = join(out, 'checkpoint_last');
    if (existsSync(last)) {
      const ckpt = await loadCheckpoint(last);
      expect(ckpt.trainerState!.step).toBeGreaterThanOrEqual(1);
      expect(ckpt.trainerState!.step).toBeLessThanOrEqual(MAX_STEPS);
    }
  }
  console.log(`killed ${kills} times, after logged steps ${killedAt.join(', ')}`);
  expect(kills).toBeGreaterThanOrEqual(3);

  const final = await start(out).exit;
  expect(final.code, final.stderr).toBe(0);
  const a = await loadCheckpoint(join(out, 'checkpoint_last'));
  const b = await loadCheckpoint(join(reference, 'checkpoint_last'));
  expect(a.trainerState!.step).toBe(MAX_STEPS);
  expect(b.trainerState!.step).toBe(MAX_STEPS);
  expect(Buffer.from(a.weightData).equals(Buffer.from(b.weightData))).toBe(true);
  expect(trainRecords(out)).toEqual(trainRecords(reference));
});
