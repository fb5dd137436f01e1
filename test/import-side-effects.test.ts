/**
 * Importing the package changes nothing in the user's tfjs but the layer registry: no backend
 * (the wasm one used to be registered at priority 2, so a user's first synchronous op threw "The
 * highest priority backend 'wasm' has not yet been initialized"), no kernels or gradients, no
 * flags, no `file://` routers, no process listeners, nothing on stderr. Each entry registers the
 * layer classes its checkpoints use, so plain `tf.loadLayersModel` loads translation and MLM
 * checkpoints; `initBackend()` is what installs the engine and the `file://` routers.
 *
 * Each check runs in a child process (test/fixtures/import/check-entries.ts): in this worker the
 * test setup has already called initBackend.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../src/random.ts';
import { trainMlm } from '../src/tasks/mlm.ts';
import { trainTranslation } from '../src/tasks/translation.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const SCRIPT = join(ROOT, 'test/fixtures/import/check-entries.ts');
const ENTRIES = {
  root: 'src/index.ts',
  attention: 'src/entry/attention.ts',
  translation: 'src/entry/translation.ts',
  mlm: 'src/entry/mlm.ts',
  browser: 'src/entry/browser.ts',
} as const;

const root = mkdtempSync(join(tmpdir(), 'ft-import-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Snapshot {
  backends: string[];
  cpuKernels: number;
  tileGradient: number;
  flags: string;
  fileSaveHandlers: number;
  listeners: Record<string, number>;
}
interface Report {
  before: Snapshot;
  after: Snapshot;
  stderrAtImport: string;
  op: { backend: string; value: number } | { error: string };
  missingClasses: string[];
  loaded: { dir: string; layers: number; inputs: number }[];
  saved?: { ok: boolean; diff: number };
}

/** tfjs' own hint on the cpu backend's first use in Node (not ours; printed by the op below). */
const TFJS_NODE_HINT = /\n?=+\nHi, looks like you are running TensorFlow\.js in Node\.js[^]*?\n=+\n/g;

/** The child's environment: no logging settings of the test setup, so defaults apply. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, FT_BACKEND: 'cpu', ...extra };
  if (!('FT_BACKEND_LOG' in extra)) delete env.FT_BACKEND_LOG;
  if (!('FT_LOG' in extra)) delete env.FT_LOG;
  return env;
}

async function check(entries: string[], flags: string[] = [], env: Record<string, string> = {}): Promise<{ report: Report; stderr: string }> {
  const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', SCRIPT, ...entries.map((e) => join(ROOT, e)), ...flags], {
    cwd: ROOT,
    env: childEnv(env),
    timeout: 90_000,
    maxBuffer: 16 << 20,
  });
  return { report: JSON.parse(stdout.trim().split('\n').pop()!) as Report, stderr: stderr.replace(TFJS_NODE_HINT, '') };
}

/** Every `class_name` in a model.json's topology (the layer classes a loader must know). */
function classNames(modelJson: string): string[] {
  const names = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'class_name' && typeof x === 'string') names.add(x);
        else walk(x);
      }
    }
  };
  walk((JSON.parse(readFileSync(modelJson, 'utf8')) as { modelTopology: unknown }).modelTopology);
  return [...names].sort();
}

function expectNoSideEffects({ report, stderr }: { report: Report; stderr: string }): void {
  expect(report.op).toEqual({ backend: 'cpu', value: 3 });
  expect(report.after.backends).toEqual(report.before.backends);
  expect(report.after.backends).not.toContain('wasm');
  expect(report.after.cpuKernels).toBe(report.before.cpuKernels);
  expect(report.after.tileGradient).toBe(report.before.tileGradient);
  expect(report.after.flags).toBe(report.before.flags);
  expect(report.after.fileSaveHandlers).toBe(0);
  expect(report.after.listeners).toEqual(report.before.listeners);
  expect(report.after.listeners.SIGINT).toBe(0);
  expect(report.after.listeners.SIGTERM).toBe(0);
  expect(report.stderrAtImport).toBe('');
  expect(stderr).toBe('');
}

const translationDir = join(root, 'translation', 'checkpoint_last');
const mlmDir = join(root, 'mlm', 'checkpoint_last');
let translationClasses: string[] = [];
let mlmClasses: string[] = [];

beforeAll(async () => {
  // One update each: the checkpoints' layer structure is what matters, not their weights.
  await trainTranslation({
    data: 'test/fixtures/tasks/copy',
    out: join(root, 'translation'),
    sourceLang: 'xx',
    targetLang: 'yy',
    preset: 'transformer_tiny',
    progress: 'none',
    overrides: { train: { maxSteps: 1, validEvery: 1, logEvery: 1 }, decode: { validBleuSamples: 0 } },
  });
  const data = join(root, 'mlm-data');
  mkdirSync(data, { recursive: true });
  const rng = new SeededRandom(1);
  const words = 'the and of to in he god lord said light'.split(' ');
  const lines = (n: number) => Array.from({ length: n }, () => Array(4).fill(words[rng.nextInt(words.length)]).join(' ')).join('\n') + '\n';
  for (const split of ['train', 'valid', 'test']) writeFileSync(join(data, `${split}.txt`), lines(40));
  await trainMlm({
    data,
    tokenizer: join(ROOT, 'test/fixtures/text/wordpiece'),
    out: join(root, 'mlm'),
    preset: 'bert_tiny',
    progress: 'none',
    overrides: { train: { maxSteps: 1, validEvery: 1, maxTokens: 256, logEvery: 1 }, data: { maxLength: 16 } },
  });
  translationClasses = classNames(join(translationDir, 'model.json'));
  mlmClasses = classNames(join(mlmDir, 'model.json'));
});

describe('importing the package', () => {
  it('the checkpoints use our layer classes (what the entries must register)', () => {
    expect(translationClasses).toEqual(expect.arrayContaining(['TokenEmbedding', 'TransformerEncoderBlock', 'TransformerDecoderBlock']));
    expect(mlmClasses).toEqual(expect.arrayContaining(['GatherPositions', 'OutputBias', 'TransformerEncoderBlock']));
  });

  it('root: no side effects; every checkpoint class registered; initBackend adds file:// routers that save and load checkpoints', async () => {
    const saveDir = join(root, 'saved');
    const classes = [...new Set([...translationClasses, ...mlmClasses, 'FactorizedMultiHeadAttention', 'FactorizedDense', 'FactorizedEmbedding', 'TransformerLayerNorm'])];
    const result = await check([ENTRIES.root], ['--classes', classes.join(','), '--init', '--load', `${translationDir},${mlmDir}`, '--save', saveDir], {
      FT_LOG: '0',
    });
    expectNoSideEffects(result);
    expect(result.report.missingClasses).toEqual([]);
    expect(result.report.loaded.map((l) => [l.dir, l.inputs])).toEqual([
      [translationDir, 2],
      [mlmDir, 2],
    ]);
    expect(result.report.saved).toEqual({ ok: true, diff: 0 });
  });

  it.each([
    ['attention', ENTRIES.attention, () => ['FactorizedMultiHeadAttention', 'FactorizedDense', 'FactorizedEmbedding']],
    ['translation', ENTRIES.translation, () => translationClasses],
    ['mlm', ENTRIES.mlm, () => mlmClasses],
    ['browser', ENTRIES.browser, () => [...translationClasses, ...mlmClasses, 'FactorizedMultiHeadAttention', 'FactorizedDense', 'FactorizedEmbedding']],
  ])('./%s: no side effects, and registers the layers of its checkpoints', async (_name, entry, classes) => {
    const result = await check([entry], ['--classes', classes().join(',')]);
    expectNoSideEffects(result);
    expect(result.report.missingClasses).toEqual([]);
  });
});

describe('initBackend logging', () => {
  const script = "const { initBackend } = await import('./src/backend/index.ts'); await initBackend({ backend: 'cpu' });";
  async function stderrOf(env: Record<string, string>): Promise<string> {
    const { stderr } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env: childEnv(env), timeout: 60_000 });
    return stderr;
  }

  it('logs the engine by default; FT_LOG=0 (or the older FT_BACKEND_LOG=0) turns it off', async () => {
    const [plain, ftLog, backendLog] = await Promise.all([stderrOf({}), stderrOf({ FT_LOG: '0' }), stderrOf({ FT_BACKEND_LOG: '0' })]);
    expect(plain).toMatch(/^\[factorized-transformer\] backend cpu/m);
    expect(ftLog).toBe('');
    expect(backendLog).toBe('');
  });
});
