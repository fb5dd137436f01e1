/**
 * `npm run bench -- kernels`: GFLOP/s of the matrix products a training step of transformer_small
 * runs (4k tokens), ours (the engine's BatchMatMul: native BLAS or the wasm-sliced fallback) vs
 * tfjs-backend-wasm's stock kernel in the same run. ratio = ours / stock.
 */
import * as tf from '@tensorflow/tfjs';
import { describeBackend, initBackend } from '../src/backend/index.ts';
import { registerWasmMatMul, restoreStockWasmMatMul } from '../src/backend/kernels/matMul.ts';
import { loadNativeBlas } from '../src/backend/native.ts';
import { timeMedian, type Benchmark, type BenchResult } from './common.ts';

const CASES: { name: string; a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
  { name: 'ffn x·W [4096,256]x[256,1024]', a: [4096, 256], b: [256, 1024], ta: false, tb: false },
  { name: 'weight grad xᵀ·dy [4096,256]ᵀx[4096,1024]', a: [4096, 256], b: [4096, 1024], ta: true, tb: false },
  { name: 'input grad dy·Wᵀ [4096,1024]x[256,1024]ᵀ', a: [4096, 1024], b: [256, 1024], ta: false, tb: true },
  { name: 'attention QKᵀ [512,32,64]x[512,32,64]ᵀ', a: [512, 32, 64], b: [512, 32, 64], ta: false, tb: true },
  { name: 'attention P·V [512,32,32]x[512,32,64]', a: [512, 32, 32], b: [512, 32, 64], ta: false, tb: false },
  { name: 'tied output h·Eᵀ [4096,256]x[8000,256]ᵀ', a: [4096, 256], b: [8000, 256], ta: false, tb: true },
];

function flops(c: (typeof CASES)[number]): number {
  const batch = c.a.length === 3 ? c.a[0] : 1;
  const m = c.ta ? c.a[c.a.length - 1] : c.a[c.a.length - 2];
  const k = c.ta ? c.a[c.a.length - 2] : c.a[c.a.length - 1];
  const n = c.tb ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
  return 2 * batch * m * n * k;
}

async function gflops(c: (typeof CASES)[number], reps: number): Promise<number> {
  const a = tf.randomNormal(c.a);
  const b = tf.randomNormal(c.b);
  const ms = await timeMedian(() => {
    const y = tf.matMul(a, b, c.ta, c.tb);
    y.dataSync();
    y.dispose();
  }, reps);
  tf.dispose([a, b]);
  return flops(c) / (ms * 1e6);
}

export const run: Benchmark = async ({ quick }) => {
  await initBackend({ backend: 'wasm' });
  const ours = describeBackend().matMul;
  const results: BenchResult[] = [];
  const cases = quick ? CASES.slice(0, 2) : CASES;
  for (const c of cases) {
    const value = await gflops(c, quick ? 1 : 3);
    restoreStockWasmMatMul();
    const baseline = await gflops(c, 1);
    registerWasmMatMul(loadNativeBlas().blas);
    results.push({
      name: `kernels: ${c.name}`,
      value,
      unit: 'GFLOP/s',
      baseline,
      ratio: value / baseline,
      extra: { ours, baselineEngine: 'tfjs-backend-wasm stock BatchMatMul', threads: describeBackend().threads },
    });
  }
  return results;
};
