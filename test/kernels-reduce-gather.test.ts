/**
 * The wasm engine's Sum, Mean, GatherV2 and Identity (src/backend/kernels/reduce.ts, gather.ts,
 * identity.ts) against the tfjs cpu backend and the stock wasm kernels they replace, on random data
 * over ranks 1-5, every axis set (negative axes, keepDims, size-1 and empty dimensions), float32,
 * int32 and bool; gradients through them; and the reference counting of the shared-memory Identity.
 * Sum and Mean run twice: on the native addon (when built) and on the JS fallback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend/index.ts';
import { loadNativeBlas } from '../src/backend/native.ts';
import { reduceBlock, registerWasmReduce } from '../src/backend/kernels/reduce.ts';
import { registerWasmGather } from '../src/backend/kernels/gather.ts';
import { registerWasmIdentity } from '../src/backend/kernels/identity.ts';
import { replaceKernel, stockKernel } from '../src/backend/kernels/matMul.ts';

const native = loadNativeBlas();

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so failures reproduce. */
function uniform(n: number, seed: number): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
  return out;
}

type DType = 'float32' | 'int32' | 'bool';
interface Data {
  shape: number[];
  dtype: DType;
  values: Float32Array | Int32Array | Uint8Array;
}

/** float32 in [-1, 1), int32 in [-1000, 1000), bool 0/1. */
function randomData(shape: number[], dtype: DType, seed: number): Data {
  const u = uniform(tf.util.sizeFromShape(shape), seed);
  const values =
    dtype === 'float32'
      ? Float32Array.from(u, (v) => 2 * v - 1)
      : dtype === 'int32'
        ? Int32Array.from(u, (v) => Math.floor(2000 * v) - 1000)
        : Uint8Array.from(u, (v) => (v < 0.5 ? 0 : 1));
  return { shape, dtype, values };
}

interface Result {
  shape: number[];
  dtype: string;
  values: number[];
}

/** Runs `fn` on fresh tensors made from `data` on `backend`; every tensor is disposed again. */
async function runOn(backend: string, data: Data[], fn: (...xs: tf.Tensor[]) => tf.Tensor): Promise<Result> {
  await tf.setBackend(backend);
  const xs = data.map((d) => tf.tensor(d.values, d.shape, d.dtype));
  try {
    const y = tf.tidy(() => fn(...xs));
    const result = { shape: y.shape, dtype: y.dtype, values: Array.from(y.dataSync()) };
    y.dispose();
    return result;
  } finally {
    tf.dispose(xs);
    await tf.setBackend('wasm');
  }
}

/** Runs `fn` with the stock wasm kernels `names` registered instead of ours, then puts ours back. */
async function withStock<T>(names: string[], fn: () => Promise<T>, reduceBlas = native.blas): Promise<T> {
  for (const name of names) replaceKernel(name, stockKernel(name));
  try {
    return await fn();
  } finally {
    registerWasmReduce(reduceBlas);
    registerWasmGather();
    registerWasmIdentity();
  }
}

/** Every subset of the axes of a rank-`rank` tensor, the empty one included. */
function axisSets(rank: number): number[][] {
  const sets: number[][] = [];
  for (let mask = 0; mask < 1 << rank; mask++) sets.push([...Array(rank).keys()].filter((a) => mask & (1 << a)));
  return sets;
}

const REDUCE_SHAPES: number[][] = [
  [7],
  [1],
  [0],
  [5, 6],
  [1, 9],
  [9, 1],
  [0, 3],
  [3, 0],
  [4, 1, 5],
  [2, 3, 4],
  [2, 0, 3],
  [3, 1, 4, 1],
  [2, 3, 4, 5],
  [2, 1, 3, 2, 4],
  [3, 2, 2, 3, 2],
  [300, 70], // a bias gradient: sum over the tokens
  [4, 260, 17],
  [2, 1100],
];

/**
 * |ours - ref| ≤ 1e-5 · max(1, Σ|x|) per output element: float32 summation error grows with the
 * sum of the magnitudes added, not with the (possibly cancelled) result.
 */
function expectClose(ours: Result, ref: Result, scale: Result, label: string): void {
  expect(ours.shape, label).toEqual(ref.shape);
  expect(ours.dtype, label).toBe(ref.dtype);
  for (let i = 0; i < ref.values.length; i++) {
    const err = Math.abs(ours.values[i] - ref.values[i]);
    if (!(err <= 1e-5 * Math.max(1, scale.values[i]))) {
      throw new Error(`${label}: element ${i} is ${ours.values[i]}, reference ${ref.values[i]}`);
    }
  }
}

function reduceSuite(label: string, blas: typeof native.blas): void {
  describe(label, () => {
    beforeAll(() => registerWasmReduce(blas));
    afterAll(() => registerWasmReduce(native.blas));

    REDUCE_SHAPES.forEach((shape, s) => {
      it(`Sum and Mean of [${shape}] over every axis set match cpu and the stock kernel`, async () => {
        const x = randomData(shape, 'float32', 100 + s);
        const xi = randomData(shape, 'int32', 200 + s);
        const sets: (number[] | undefined)[] = [...axisSets(shape.length), undefined];
        for (const [k, set] of sets.entries()) {
          // Every other axis set negative (-1 is the last axis); both keepDims.
          const axis = set && k % 2 === 1 ? set.map((a) => a - shape.length) : set;
          for (const keepDims of [false, true]) {
            const what = `[${shape}] axis ${JSON.stringify(axis)} keepDims ${keepDims}`;
            const sum = (t: tf.Tensor) => tf.sum(t, axis, keepDims);
            const mean = (t: tf.Tensor) => tf.mean(t, axis, keepDims);
            const absSum = await runOn('cpu', [x], (t) => tf.sum(tf.abs(t), axis, keepDims));
            const absMean = await runOn('cpu', [x], (t) => tf.mean(tf.abs(t), axis, keepDims));
            expectClose(await runOn('wasm', [x], sum), await runOn('cpu', [x], sum), absSum, `sum ${what}`);
            expectClose(await runOn('wasm', [x], mean), await runOn('cpu', [x], mean), absMean, `mean ${what}`);
            // int32 sums are exact (and int32).
            expect(await runOn('wasm', [xi], sum), `int32 sum ${what}`).toEqual(await runOn('cpu', [xi], sum));
            // The stock kernel leaves the output of an empty input unwritten: compare non-empty ones only.
            if (tf.util.sizeFromShape(shape) > 0) {
              const stock = await withStock(['Sum', 'Mean'], async () => [await runOn('wasm', [x], sum), await runOn('wasm', [x], mean)], blas);
              expectClose(await runOn('wasm', [x], sum), stock[0], absSum, `sum vs stock ${what}`);
              expectClose(await runOn('wasm', [x], mean), stock[1], absMean, `mean vs stock ${what}`);
            }
          }
        }
      });
    });

    it('int32 Mean and bool Sum (cast by the op) match cpu', async () => {
      const xi = randomData([3, 4, 5], 'int32', 7);
      const xb = randomData([3, 4, 5], 'bool', 8);
      for (const axis of [0, [1, 2], -1]) {
        const absMean = await runOn('cpu', [xi], (t) => tf.mean(tf.abs(t), axis));
        expectClose(await runOn('wasm', [xi], (t) => tf.mean(t, axis)), await runOn('cpu', [xi], (t) => tf.mean(t, axis)), absMean, `int32 mean axis ${axis}`);
        expect(await runOn('wasm', [xb], (t) => tf.sum(t, axis))).toEqual(await runOn('cpu', [xb], (t) => tf.sum(t, axis)));
      }
    });

    it('sums over one block of axes allocate only their output (no transpose); other axis sets use the stock kernel', () => {
      // The stock kernel's transpose is a direct call, invisible to tf.profile: count the buffers
      // the backend allocates (makeOutput) during one sum instead.
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const backend = tf.backend() as any;
      const allocations = (shape: number[], axis: number[]) => {
        const x = tf.tensor(randomData(shape, 'float32', 9).values, shape);
        const makeOutput = backend.makeOutput;
        let count = 0;
        backend.makeOutput = (...args: unknown[]) => {
          count++;
          return makeOutput.apply(backend, args);
        };
        try {
          tf.sum(x, axis).dispose();
        } finally {
          backend.makeOutput = makeOutput;
          x.dispose();
        }
        return count;
      };
      expect(allocations([300, 70], [0])).toBe(1);
      expect(allocations([4, 260, 17], [1])).toBe(1);
      expect(allocations([2, 3, 4, 5], [1, 2])).toBe(1);
      expect(allocations([2, 1, 4], [0, 2])).toBe(1); // a size-1 axis between: still one block
      expect(allocations([2, 3, 4], [0, 2])).toBe(2); // two blocks: the stock kernel transposes
    });
  });
}

describe('wasm Sum, Mean, GatherV2 and Identity', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm' });
  });

  it('reduceBlock views a contiguous block of axes as [outer, reduce, inner]', () => {
    expect(reduceBlock([300, 70], [0])).toEqual({ outer: 1, reduce: 300, inner: 70 });
    expect(reduceBlock([300, 70], [1])).toEqual({ outer: 300, reduce: 70, inner: 1 });
    expect(reduceBlock([2, 3, 4, 5], [1, 2])).toEqual({ outer: 2, reduce: 12, inner: 5 });
    expect(reduceBlock([2, 1, 4], [0, 2])).toEqual({ outer: 1, reduce: 8, inner: 1 });
    expect(reduceBlock([2, 3, 1], [2])).toEqual({ outer: 6, reduce: 1, inner: 1 });
    expect(reduceBlock([2, 3, 4], [])).toEqual({ outer: 24, reduce: 1, inner: 1 });
    expect(reduceBlock([2, 0, 3], [0])).toEqual({ outer: 1, reduce: 2, inner: 0 });
    expect(reduceBlock([2, 3, 4], [0, 2])).toBeNull();
  });

  describe.skipIf(!native.blas)(`native path${native.blas ? '' : ` (skipped: ${native.reason})`}`, () => {
    reduceSuite('native reduceSum', native.blas);
    it('the addon rejects sizes that do not fit its arrays instead of touching the heap', () => {
      const x = new Float32Array(4);
      expect(() => native.blas!.reduceSum(x, new Float32Array(1), 1, 5, 1, 1)).toThrow(/sizes do not match/);
      expect(() => native.blas!.reduceSum(x, new Float32Array(1), 2, 2, 1, 1)).toThrow(/sizes do not match/);
      expect(() => native.blas!.reduceSum(new Float64Array(4) as never, x, 1, 4, 1, 1)).toThrow(/Float32Arrays/);
    });
  });
  reduceSuite('JS fallback', undefined);

  const GATHER_CASES: { shape: number[]; axis: number; indices: number[]; indicesShape: number[] }[] = [
    { shape: [7], axis: 0, indices: [3, 0, 6, 6], indicesShape: [4] },
    { shape: [7], axis: -1, indices: [2], indicesShape: [] },
    { shape: [5, 3], axis: 0, indices: [4, 0, 4], indicesShape: [3] },
    { shape: [5, 3], axis: 1, indices: [2, 2, 0, 1], indicesShape: [2, 2] },
    { shape: [4, 2, 20], axis: 0, indices: [3, 1, 0, 0], indicesShape: [2, 2] },
    { shape: [4, 2, 20], axis: 2, indices: [19, 0], indicesShape: [2] },
    { shape: [4, 2, 20], axis: -2, indices: [1], indicesShape: [1] },
    { shape: [10, 2, 7, 4], axis: 0, indices: [9, 3, 3, 0, 1, 2, 5, 6, 7, 8], indicesShape: [10] }, // the beam cache reorder
    { shape: [2, 1, 3, 1, 5], axis: 3, indices: [0, 0, 0], indicesShape: [3] },
    { shape: [3, 0], axis: 0, indices: [2, 0], indicesShape: [2] },
    { shape: [3, 4], axis: 0, indices: [], indicesShape: [0] },
    { shape: [300, 64], axis: 0, indices: [299, 0, 17, 17, 150], indicesShape: [5] }, // an embedding lookup
  ];

  for (const c of GATHER_CASES) {
    it(`GatherV2 of [${c.shape}] on axis ${c.axis} with indices [${c.indicesShape}] equals cpu and the stock kernel exactly`, async () => {
      for (const dtype of ['float32', 'int32', 'bool'] as const) {
        const x = randomData(c.shape, dtype, 31);
        const idx: Data = { shape: c.indicesShape, dtype: 'int32', values: Int32Array.from(c.indices) };
        const gather = (t: tf.Tensor, i: tf.Tensor) => tf.gather(t, i, c.axis);
        const ours = await runOn('wasm', [x, idx], gather);
        expect(ours, dtype).toEqual(await runOn('cpu', [x, idx], gather));
        if (tf.util.sizeFromShape(c.shape) > 0) expect(ours, dtype).toEqual(await withStock(['GatherV2'], () => runOn('wasm', [x, idx], gather)));
      }
    });
  }

  it('GatherV2 rejects an out-of-range index like the stock wasm and cpu kernels, leaking nothing', async () => {
    const message = (backend: string, index: number) =>
      runOn(backend, [randomData([5, 3], 'float32', 1), { shape: [2], dtype: 'int32', values: Int32Array.from([1, index]) }], (t, i) =>
        tf.gather(t, i),
      ).then(
        () => 'no error',
        (err: Error) => err.message,
      );
    for (const index of [-1, 5, 1000]) {
      const before = tf.memory().numTensors;
      const ours = await message('wasm', index);
      expect(ours).toBe(`GatherV2: the index value ${index} is not in [0, 4]`);
      expect(tf.memory().numTensors).toBe(before);
      expect(await withStock(['GatherV2'], () => message('wasm', index))).toBe(ours);
      expect(await message('cpu', index)).toBe(ours);
    }
  });

  it('gradients through sum, mean and gather (bias-gradient shapes) equal the cpu backend', async () => {
    const inputs: Data[] = [randomData([12, 5], 'float32', 41), randomData([5, 6], 'float32', 42), randomData([6], 'float32', 43), randomData([9, 5], 'float32', 44)];
    const idx = Int32Array.from([3, 0, 11, 3, 7]);
    const grads = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, table: tf.Tensor) => {
      const f = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor, tt: tf.Tensor) => {
        const h = tf.relu(tf.add(tf.matMul(tf.gather(xx, tf.tensor1d(idx, 'int32')), ww), bb)); // [5, 6]
        const rows = tf.gather(tt, tf.tensor1d([8, 1, 1], 'int32'), 0); // [3, 5]
        return tf.add(tf.sum(tf.mul(tf.sum(h, 0), tf.mean(h, 0))), tf.sum(tf.mul(rows, tf.mean(rows, 1, true))));
      };
      return tf.concat(tf.grads(f)([x, w, b, table]).map((g) => g.flatten()));
    };
    const ours = await runOn('wasm', inputs, grads);
    const ref = await runOn('cpu', inputs, grads);
    const maxRef = Math.max(1, ...ref.values.map(Math.abs));
    expect(ours.shape).toEqual(ref.shape);
    ours.values.forEach((v, i) => expect(Math.abs(v - ref.values[i])).toBeLessThanOrEqual(1e-5 * maxRef));
  });

  describe('Identity shares memory', () => {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const backend = () => tf.backend() as any;

    it('tf.clone returns the same data without a copy; either tensor may be disposed first', () => {
      for (const disposeFirst of ['original', 'clone'] as const) {
        for (const dtype of ['float32', 'int32', 'bool'] as const) {
          const d = randomData([3, 4], dtype, 51);
          const buffers = backend().numDataIds();
          const x = tf.tensor(d.values, d.shape, dtype);
          const y = tf.clone(x);
          expect(y.dataId).toBe(x.dataId);
          expect(backend().numDataIds()).toBe(buffers + 1);
          const [first, second] = disposeFirst === 'original' ? [x, y] : [y, x];
          first.dispose();
          expect(backend().numDataIds()).toBe(buffers + 1); // still held by the other tensor
          expect(Array.from(second.dataSync())).toEqual(Array.from(d.values));
          expect(second.dtype).toBe(dtype);
          second.dispose();
          expect(backend().numDataIds()).toBe(buffers);
        }
      }
    });

    it('a clone of a variable keeps its values when the variable is reassigned', () => {
      const before = tf.memory().numTensors;
      const init = tf.tensor1d([1, 2, 3]);
      const v = tf.variable(init);
      init.dispose();
      const c = tf.clone(v);
      const zeros = tf.zeros<tf.Rank.R1>([3]);
      v.assign(zeros);
      zeros.dispose();
      expect(Array.from(c.dataSync())).toEqual([1, 2, 3]);
      expect(Array.from(v.dataSync())).toEqual([0, 0, 0]);
      v.dispose();
      expect(Array.from(c.dataSync())).toEqual([1, 2, 3]);
      c.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });

    it('gradients (which clone every saved tensor) leave no tensor or buffer behind', () => {
      const x = tf.tensor2d(randomData([6, 5], 'float32', 61).values as Float32Array, [6, 5]);
      const tensors = tf.memory().numTensors;
      const buffers = backend().numDataIds();
      for (let i = 0; i < 3; i++) {
        const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.exp(t), tf.sum(t, 0))))(x);
        g.dispose();
      }
      expect(tf.memory().numTensors).toBe(tensors);
      expect(backend().numDataIds()).toBe(buffers);
      x.dispose();
    });
  });
});
