/**
 * The portable GPU bundle (scripts/bundle.ts, `npm run bundle`): built once for this file, unpacked
 * into an empty folder and run the way a bare GPU machine runs it — `env -i`, a PATH that holds
 * only `sh` (so no `node` can be found), nothing from this checkout. `doctor` and a 5-step
 * training run on the wasm engine and, where Mesa's lavapipe gives a Vulkan adapter, on webgpu
 * (chosen with VK_DRIVER_FILES, as on an NVIDIA machine), whose losses must match wasm's.
 * Skipped, with the reason printed, only where xz or the Vulkan loader is missing.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findVulkanLoader } from '../scripts/bundle.ts';
import { probeWebGpu } from '../src/backend/webgpu.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LAVAPIPE_ICD = '/usr/share/vulkan/icd.d/lvp_icd.json';
const MAX_BYTES = 45 * 2 ** 20;

function missingTool(): string | undefined {
  for (const tool of ['xz', 'tar']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) return `${tool} is not installed`;
  }
  try {
    findVulkanLoader();
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

const skipReason = missingTool();
if (skipReason) console.warn(`test/bundle.test.ts skipped: ${skipReason}`);

/** Whether Dawn finds lavapipe here (probed from the checkout, so a broken bundle fails rather than skips). */
function lavapipeReason(): string | undefined {
  if (!existsSync(LAVAPIPE_ICD)) return `no lavapipe ICD (${LAVAPIPE_ICD}; apt-get install -t bookworm-backports mesa-vulkan-drivers)`;
  const saved = process.env.VK_DRIVER_FILES;
  process.env.VK_DRIVER_FILES = LAVAPIPE_ICD;
  try {
    const status = probeWebGpu();
    return status.adapter ? undefined : `no WebGPU adapter on lavapipe: ${status.reason}`;
  } finally {
    if (saved === undefined) delete process.env.VK_DRIVER_FILES;
    else process.env.VK_DRIVER_FILES = saved;
  }
}
const webgpuReason = skipReason ? skipReason : lavapipeReason();
if (!skipReason && webgpuReason) console.warn(`test/bundle.test.ts: webgpu runs skipped: ${webgpuReason}`);

describe.skipIf(skipReason !== undefined)('portable GPU bundle', () => {
  let work: string;
  let archive: string;
  let home: string; // the unpacked ft-gpu/
  let path: string; // a PATH with only sh
  const losses: Record<string, number> = {};

  /** Runs the launcher with nothing inherited from this process's environment. */
  function ft(args: string[], env: Record<string, string> = {}, timeout = 300_000) {
    const vars = Object.entries({ PATH: path, ...env }).map(([k, v]) => `${k}=${v}`);
    const r = spawnSync('/usr/bin/env', ['-i', ...vars, join(home, 'ft'), ...args], { cwd: work, encoding: 'utf8', timeout });
    return { status: r.status, out: `${r.stdout}${r.stderr}`, stdout: r.stdout };
  }

  /** A copy of the copy-task fixture: text and its SentencePiece model only (no id caches). */
  function corpus(): string {
    const dir = join(work, 'corpus');
    mkdirSync(dir, { recursive: true });
    const src = join(ROOT, 'test/fixtures/tasks/copy');
    for (const f of readdirSync(src)) if (!f.endsWith('.bin')) copyFileSync(join(src, f), join(dir, f));
    return dir;
  }

  function train(name: string, env: Record<string, string>): number {
    const out = join(work, `run-${name}`);
    const r = ft(['train', 'translation', '--data', join(work, 'corpus'), '--source-lang', 'xx', '--target-lang', 'yy', '--preset', 'transformer_tiny', '--max-steps', '5', '--progress', 'none', '--out', out], env, 600_000);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain(`backend ${env.FT_BACKEND}`);
    expect(r.out).toMatch(/trained 5 steps/);
    expect(existsSync(join(out, 'checkpoint_last', 'weights.bin'))).toBe(true);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { type: string; step: number; loss: number });
    const valid = metrics.filter((m) => m.type === 'valid').pop()!;
    expect(valid.step).toBe(5);
    expect(Number.isFinite(valid.loss)).toBe(true);
    return valid.loss;
  }

  beforeAll(() => {
    work = mkdtempSync(join(os.tmpdir(), 'ft-bundle-test-'));
    archive = join(work, 'ft-gpu.tar.xz');
    const made = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bundle.ts', '--out', archive], { cwd: ROOT, encoding: 'utf8', timeout: 1_500_000 });
    expect(made.status, `${made.stdout}${made.stderr}`).toBe(0);
    console.log(`bundle: ${made.stdout.trim().split('\n')[0]}`);
    const unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    const untar = spawnSync('tar', ['-xJf', archive, '-C', unpacked], { encoding: 'utf8' });
    expect(untar.status, untar.stderr).toBe(0);
    expect(readdirSync(unpacked)).toEqual(['ft-gpu']);
    home = join(unpacked, 'ft-gpu');
    const bin = join(work, 'bin');
    mkdirSync(bin);
    symlinkSync(realpathSync('/bin/sh'), join(bin, 'sh'));
    path = bin;
    corpus();
  }, 1_800_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('is one .tar.xz of at most 45 MiB holding the launcher, Node, the Vulkan loader and dawn.node', () => {
    const bytes = statSync(archive).size;
    console.log(`bundle size: ${bytes} bytes (${(bytes / 2 ** 20).toFixed(2)} MiB)`);
    expect(bytes).toBeLessThanOrEqual(MAX_BYTES);
    expect(statSync(join(home, 'ft')).mode & 0o111).not.toBe(0);
    expect(statSync(join(home, 'node/bin/node')).mode & 0o111).not.toBe(0);
    expect(lstatSync(join(home, 'lib/libvulkan.so.1')).isSymbolicLink() || lstatSync(join(home, 'lib/libvulkan.so.1')).isFile()).toBe(true);
    expect(statSync(join(home, 'lib/libvulkan.so.1')).size).toBeGreaterThan(100_000); // resolves to the real loader
    expect(existsSync(join(home, 'app/node_modules/webgpu/dist/linux-x64/dawn.node'))).toBe(true);
    expect(existsSync(join(home, 'app/node_modules/webgpu/dist/linux-arm64'))).toBe(false);
    expect(existsSync(join(home, 'app/bench/reference/gpu_cuda.py'))).toBe(true);
    expect(existsSync(join(home, 'app/data/web-rv1909.en-es.tsv.gz'))).toBe(true);
    // No TypeScript at run time: the program is compiled JavaScript.
    expect(readdirSync(join(home, 'app/dist')).every((f) => f.endsWith('.mjs') || f.endsWith('.txt'))).toBe(true);
  });

  it('the test PATH cannot find node', () => {
    expect(spawnSync('/usr/bin/env', ['-i', `PATH=${path}`, 'sh', '-c', 'command -v node']).status).not.toBe(0);
  });

  it('runs doctor with env -i', () => {
    const r = ft(['doctor']);
    expect(r.status, r.out).toBe(0);
    expect(r.stdout).toMatch(/^node\s+v\d+/m);
    expect(r.stdout).toMatch(/^backend\s+(wasm|webgpu)/m);
    expect(r.stdout).toMatch(/^webgpu\s+/m);
  });

  it('trains 5 steps on the wasm engine', () => {
    losses.wasm = train('wasm', { FT_BACKEND: 'wasm' });
  });

  it('finds its embedded corpus and tokenizer under app/data (train mlm without --data, 2 steps)', () => {
    const r = ft(['train', 'mlm', '--preset', 'bert_tiny', '--max-steps', '2', '--progress', 'none', '--out', join(work, 'run-mlm')], { FT_BACKEND: 'wasm' });
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain(`tokenizer ${join(home, 'app/data/moby-dick.en.spm.model')}`);
    expect(r.out).toMatch(/trained 2 steps/);
  });

  it.skipIf(webgpuReason !== undefined)('runs doctor and trains 5 steps on webgpu (lavapipe through VK_DRIVER_FILES), with the losses of wasm', () => {
    const env = { FT_BACKEND: 'webgpu', VK_DRIVER_FILES: LAVAPIPE_ICD };
    const doctor = ft(['doctor'], env);
    expect(doctor.status, doctor.out).toBe(0);
    expect(doctor.stdout).toMatch(/^backend\s+webgpu/m);
    expect(doctor.stdout).toMatch(/llvmpipe/);
    const loss = train('webgpu', env);
    expect(losses.wasm).toBeDefined();
    expect(Math.abs(loss - losses.wasm)).toBeLessThan(1e-3);
  });

  it('dispatches `ft bench`: lists the benchmarks, and gpu says why it cannot run without an adapter', () => {
    const unknown = ft(['bench', 'no-such-benchmark']);
    expect(unknown.status).toBe(1);
    expect(unknown.out).toMatch(/available: .*\bgpu\b/);
    const noGpu = ft(['bench', 'gpu', '--quick'], { VK_DRIVER_FILES: join(work, 'no-such-icd.json') });
    expect(noGpu.status, noGpu.out).toBe(1);
    expect(noGpu.out).toMatch(/error: the gpu benchmark needs the webgpu engine/);
  });
});
