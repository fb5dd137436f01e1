/**
 * Every kernel the engine replaces, compared with the tfjs `cpu` backend (the reference) on random
 * inputs: transposes, batch broadcasting, odd shapes, fused bias + activations and their gradients.
 * Both matMul paths are checked: native BLAS (when the addon is built) and the wasm-only fallback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { describeBackend, initBackend } from '../src/backend/index.ts';
import { registerWasmMatMul, planMatMul } from '../src/backend/kernels/matMul.ts';
import { chooseCoreType, loadNativeBlas } from '../src/backend/native.ts';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Deterministic pseudo-random values in [-1, 1) (mulberry32), so failures reproduce. */
function randomValues(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

type Inputs = { shape: number[]; seed: number }[];

/** Runs `fn` on fresh tensors built from `inputs` on `backend`; returns every output's values. */
async function runOn(backend: string, inputs: Inputs, fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[]): Promise<{ shape: number[]; values: Float32Array }[]> {
  await tf.setBackend(backend);
  const xs = inputs.map(({ shape, seed }) => tf.tensor(randomValues(shape.reduce((a, b) => a * b, 1), seed), shape));
  const outs = tf.tidy(() => {
    const r = fn(...xs);
    return Array.isArray(r) ? r : [r];
  });
  const result = outs.map((t) => ({ shape: t.shape, values: t.dataSync() as Float32Array }));
  tf.dispose([...xs, ...outs]);
  return result;
}

async function expectSameAsCpu(inputs: Inputs, fn: (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[], tol = 1e-4): Promise<void> {
  const ours = await runOn('wasm', inputs, fn);
  const ref = await runOn('cpu', inputs, fn);
  await tf.setBackend('wasm');
  expect(ours.length).toBe(ref.length);
  ours.forEach((o, i) => {
    expect(o.shape).toEqual(ref[i].shape);
    let maxErr = 0;
    let maxRef = 0;
    for (let j = 0; j < o.values.length; j++) {
      maxErr = Math.max(maxErr, Math.abs(o.values[j] - ref[i].values[j]));
      maxRef = Math.max(maxRef, Math.abs(ref[i].values[j]));
      if (Number.isNaN(o.values[j]) !== Number.isNaN(ref[i].values[j])) throw new Error(`NaN mismatch at ${j}`);
    }
    expect(maxErr).toBeLessThanOrEqual(tol * Math.max(1, maxRef));
  });
}

const MATMUL_CASES: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
  { a: [5, 7], b: [7, 3], ta: false, tb: false },
  { a: [7, 5], b: [7, 3], ta: true, tb: false },
  { a: [5, 7], b: [3, 7], ta: false, tb: true },
  { a: [7, 5], b: [3, 7], ta: true, tb: true },
  { a: [1, 1], b: [1, 1], ta: false, tb: false },
  { a: [1, 13], b: [13, 1], ta: false, tb: false },
  { a: [4, 9, 6], b: [4, 6, 11], ta: false, tb: false },
  { a: [4, 6, 9], b: [4, 11, 6], ta: true, tb: true },
  { a: [2, 3, 8, 5], b: [2, 3, 8, 4], ta: true, tb: false }, // per-head attention-like, rank 4
  { a: [3, 6, 5], b: [5, 4], ta: false, tb: false }, // rank-3 x rank-2
  { a: [6, 5], b: [3, 4, 5], ta: false, tb: true }, // rank-2 x rank-3
  { a: [1, 33, 65], b: [1, 65, 17], ta: false, tb: false }, // sizes off SIMD multiples
];

function matMulSuite(label: string): void {
  for (const c of MATMUL_CASES) {
    it(`${label}: matMul ${JSON.stringify(c.a)}${c.ta ? 'ᵀ' : ''} x ${JSON.stringify(c.b)}${c.tb ? 'ᵀ' : ''}`, async () => {
      await expectSameAsCpu([{ shape: c.a, seed: 1 }, { shape: c.b, seed: 2 }], (a, b) => tf.matMul(a, b, c.ta, c.tb));
    });
  }
  it(`${label}: two-sided batch broadcasting [2,1,6,5] x [1,3,5,4] equals the explicitly tiled product`, async () => {
    // tfjs's cpu kernel does not broadcast two-sided batches (it cycles indices), so the reference
    // here is the product of explicitly tiled operands.
    const inputs = [{ shape: [2, 1, 6, 5], seed: 24 }, { shape: [1, 3, 5, 4], seed: 25 }];
    const [ours] = await runOn('wasm', inputs, (a, b) => tf.matMul(a, b));
    const [ref] = await runOn('cpu', inputs, (a, b) => tf.matMul(tf.tile(a, [1, 3, 1, 1]), tf.tile(b, [2, 1, 1, 1])));
    await tf.setBackend('wasm');
    expect(ours.shape).toEqual([2, 3, 6, 4]);
    ours.values.forEach((v, i) => expect(Math.abs(v - ref.values[i])).toBeLessThan(1e-4));
  });
  it(`${label}: matMul gradients (transposes) match cpu`, async () => {
    await expectSameAsCpu(
      [{ shape: [3, 5, 4], seed: 3 }, { shape: [3, 6, 4], seed: 4 }, { shape: [3, 5, 6], seed: 5 }],
      (a, b, dy) => {
        const g = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.mul(tf.matMul(x, y, false, true), dy).sum());
        return g([a, b]);
      },
    );
  });
}

describe('wasm kernels vs the cpu backend', () => {
  const native = loadNativeBlas();

  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });
  afterAll(async () => {
    registerWasmMatMul(native.blas);
    await initBackend({ backend: 'wasm' });
  });

  describe.skipIf(!native.blas)(`native BLAS path${native.blas ? '' : ` (skipped: ${native.reason})`}`, () => {
    beforeAll(() => {
      expect(registerWasmMatMul(native.blas).path).toBe('native');
    });
    matMulSuite('native');

    for (const activation of ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid'] as const) {
      it(`fused matMul + bias + ${activation} (forward and gradients) match cpu`, async () => {
        await expectSameAsCpu([{ shape: [6, 5], seed: 6 }, { shape: [5, 7], seed: 7 }, { shape: [7], seed: 8 }], (a, b, bias) => {
          const f = (x: tf.Tensor, w: tf.Tensor, c: tf.Tensor) =>
            tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: c, activation, leakyreluAlpha: 0.3 });
          const y = f(a, b, bias);
          const grads = tf.grads((x: tf.Tensor, w: tf.Tensor, c: tf.Tensor) => f(x, w, c).square().sum())([a, b, bias]);
          return [y, ...grads];
        });
      });
    }

    it('fused matMul with transposes, prelu weights and a batch matches cpu', async () => {
      await expectSameAsCpu([{ shape: [2, 5, 6], seed: 9 }, { shape: [2, 7, 5], seed: 10 }, { shape: [7], seed: 11 }, { shape: [7], seed: 12 }], (a, b, bias, alpha) =>
        tf.fused.matMul({ a: a as tf.Tensor3D, b: b as tf.Tensor3D, transposeA: true, transposeB: true, bias, activation: 'prelu', preluActivationWeights: alpha }),
      );
    });

    it('fused matMul with a full-shape and a batch-broadcast bias matches cpu', async () => {
      await expectSameAsCpu([{ shape: [6, 5], seed: 13 }, { shape: [5, 7], seed: 14 }, { shape: [6, 7], seed: 15 }], (a, b, bias) =>
        tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation: 'relu' }),
      );
      await expectSameAsCpu([{ shape: [3, 6, 5], seed: 26 }, { shape: [3, 5, 7], seed: 27 }, { shape: [6, 1], seed: 28 }], (a, b, bias) =>
        tf.fused.matMul({ a: a as tf.Tensor3D, b: b as tf.Tensor3D, bias, activation: 'linear' }),
      );
    });

    it('a large product stays correct after the wasm heap grows', async () => {
      // 3 x 8 MB operands force memory growth between makeOutput and the sgemm call sites.
      await expectSameAsCpu([{ shape: [1024, 2048], seed: 16 }, { shape: [2048, 512], seed: 17 }], (a, b) => tf.matMul(a, b), 1e-3);
    });

    it('the addon rejects indices outside its arrays instead of touching the heap', () => {
      const a = new Float32Array(4);
      const c = new Float32Array(4);
      expect(() => native.blas!.gemmBatched(a, a, c, new Int32Array([1]), null, 1, 2, 2, 2, false, false, 0)).toThrow(/outside its array/);
      expect(() => native.blas!.gemmBatched(a, a, c, null, null, 2, 2, 2, 2, false, false, 0)).toThrow(/sizes do not match/);
      expect(() => native.blas!.gemmBatched(a, a, new Float64Array(4) as never, null, null, 1, 2, 2, 2, false, false, 0)).toThrow(/Float32Arrays/);
    });
  });

  describe('wasm-only fallback path (no native BLAS)', () => {
    beforeAll(() => {
      expect(registerWasmMatMul(undefined).path).toBe('wasm-sliced');
    });
    matMulSuite('wasm-sliced');
    it('fused matMul (stock) with bias + relu matches cpu', async () => {
      await expectSameAsCpu([{ shape: [6, 5], seed: 18 }, { shape: [5, 7], seed: 19 }, { shape: [7], seed: 20 }], (a, b, bias) =>
        tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias, activation: 'relu' }),
      );
    });
  });

  it('UnsortedSegmentSum (gather gradient) matches cpu, incl. repeated and unused ids', async () => {
    const ids = [3, 0, 3, 7, 3, 1];
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const table = tf.tensor2d(randomValues(10 * 4, 21), [10, 4]);
      const idx = tf.tensor1d(ids, 'int32');
      const g = tf.grad((t: tf.Tensor) => tf.gather(t, idx).mul(tf.range(1, 7).reshape([6, 1])).sum())(table);
      const v = g.dataSync().slice();
      tf.dispose([table, idx, g]);
      return v;
    };
    const ours = await run('wasm');
    const ref = await run('cpu');
    await tf.setBackend('wasm');
    expect(Array.from(ours)).toEqual(Array.from(ref));
  });

  it('UnsortedSegmentSum over a large table (heap growth while allocating the output) matches cpu', async () => {
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      const table = tf.tensor2d(randomValues(30000 * 64, 29), [30000, 64]);
      const idx = tf.tensor1d([29999, 5, 5, 12345, 0], 'int32');
      const g = tf.grad((t: tf.Tensor) => tf.gather(t, idx).square().sum())(table);
      const v = g.dataSync().slice();
      tf.dispose([table, idx, g]);
      return v;
    };
    const ours = await run('wasm');
    const ref = await run('cpu');
    await tf.setBackend('wasm');
    let maxErr = 0;
    for (let i = 0; i < ref.length; i++) maxErr = Math.max(maxErr, Math.abs(ours[i] - ref[i]));
    expect(maxErr).toBeLessThan(1e-5);
    expect(ours[29999 * 64]).not.toBe(0);
  });

  it('does not leak tensors or wasm data ids in a matMul forward + backward', async () => {
    await tf.setBackend('wasm');
    const a = tf.tensor3d(randomValues(2 * 3 * 4, 22), [2, 3, 4]);
    const b = tf.tensor3d(randomValues(2 * 5 * 4, 23), [2, 5, 4]);
    const run = () => tf.tidy(() => tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y, false, true).sum())([a, b])).forEach((t) => t.dispose());
    run();
    const before = tf.memory().numTensors;
    const idsBefore = tf.engine().backend.numDataIds();
    for (let i = 0; i < 5; i++) run();
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.engine().backend.numDataIds()).toBe(idsBefore);
    tf.dispose([a, b]);
  });
});

describe('engine description and start-up', () => {
  it('plans broadcasting batch products', () => {
    const p = planMatMul([2, 1, 6, 5], [1, 3, 5, 4], false, false);
    expect(p.batchShape).toEqual([2, 3]);
    expect(Array.from(p.aIndex!)).toEqual([0, 0, 0, 1, 1, 1]);
    expect(Array.from(p.bIndex!)).toEqual([0, 1, 2, 0, 1, 2]);
    expect(() => planMatMul([2, 3], [4, 5], false, false)).toThrow(/inner dimensions 3 and 4/);
  });

  it('rejects a bad FT_THREADS with a one-line error instead of falling back', async () => {
    const saved = process.env.FT_THREADS;
    process.env.FT_THREADS = 'two';
    try {
      await expect(initBackend({ backend: 'cpu' })).rejects.toThrow(/^FT_THREADS: expected a positive integer, got 'two'$/);
    } finally {
      if (saved === undefined) delete process.env.FT_THREADS;
      else process.env.FT_THREADS = saved;
    }
  });

  it('chooses an OpenBLAS core type from CPU flags only when it can', () => {
    expect(chooseCoreType(new Set(['avx512f', 'avx512bw', 'avx512vl', 'avx512dq', 'avx2', 'fma']))).toBe('SkylakeX');
    expect(chooseCoreType(new Set(['avx2', 'fma']))).toBe('Haswell');
    expect(chooseCoreType(new Set(['sse4_2']))).toBeUndefined();
  });

  it('describes the running engine for doctor', async () => {
    await initBackend({ backend: 'wasm' });
    const d = describeBackend();
    expect(d.active).toBe('wasm');
    expect(d.threads).toBeGreaterThanOrEqual(1);
    expect(d.wasmThreads.pool).toBeGreaterThanOrEqual(1);
    if (!d.wasmThreads.enabled) expect(d.wasmThreads.reason).toBeTruthy();
    expect(d.versions['@tensorflow/tfjs-core']).toBe('4.22.0');
    expect(d.nativeBlas.available).toBe(Boolean(loadNativeBlas().blas));
    if (!d.nativeBlas.available) expect(d.nativeBlas.reason).toBeTruthy();
    expect(['native', 'wasm-sliced']).toContain(d.matMul);
  });

  it('a process using the threaded wasm engine exits on its own', () => {
    const script = join(repoRoot, 'test/fixtures/backend/exit-check.ts');
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, FT_THREADS: '2', FT_WASM_THREADS: '1' },
    });
    expect(r.error, String(r.error)).toBeUndefined(); // a timeout (process kept alive) shows up here
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.v).toBe(65);
    expect(out.threaded).toBe(true);
    expect(out.pool).toBe(2);
  });
});

describe('vectorized Tile gradient (registered by initBackend)', () => {
  it('equals the sum of the gradient over the repetitions', () => {
    const x = tf.tensor3d([[[1, 2, 3]], [[4, 5, 6]]]); // [2, 1, 3]
    const reps = [2, 4, 1];
    const dy = tf.randomNormal([4, 4, 3], 0, 1, 'float32', 3);
    const grad = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.tile(v, reps), dy)))(x);
    // Expected: out[i, j, k] = x[i mod 2, j mod 1, k], so dx[a, 0, k] = Σ_{i ≡ a (2), j} dy[i, j, k].
    const d = dy.arraySync() as number[][][];
    const expected = [0, 1].map((a) => [[0, 1, 2].map((k) => [a, a + 2].reduce((s, i) => s + d[i].reduce((t, row) => t + row[k], 0), 0))]);
    const got = grad.arraySync() as number[][][];
    for (let a = 0; a < 2; a++) for (let k = 0; k < 3; k++) expect(got[a][0][k]).toBeCloseTo(expected[a][0][k], 5);
    tf.dispose([x, dy, grad]);
  });

  it('runs a constant number of kernels, not one slice + add per repetition (the stock gradient)', async () => {
    const x = tf.ones([1, 1, 8]);
    const dy = tf.ones([16, 32, 8]);
    const info = await tf.profile(() => tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.tile(v, [16, 32, 1]), dy)))(x));
    // Forward (tile, mul, sum) + backward of sum and mul + ours (reshape, sum): a handful; the
    // stock gradient would add 16·32 = 512 slices and adds.
    expect(info.kernels.length).toBeLessThan(20);
    tf.dispose([x, dy]);
  });
});
