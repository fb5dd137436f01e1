/**
 * The webgpu engine (tfjs-backend-webgpu on Dawn) against the cpu and wasm engines, on whatever
 * adapter Dawn finds here — in CI Mesa's lavapipe, a software Vulkan device (`.ci/run` installs
 * it) — with WEBGPU_CPU_FORWARD off, so that small tensors run as GPU kernels too instead of being
 * handed to the CPU. Skips, with the reason printed, only where no adapter starts.
 *
 * Tensors of one engine cannot be read by another here (moving GPU data reads it synchronously,
 * which Node's webgpu cannot do), so every comparison carries plain arrays across the switch.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FactorizedMultiHeadAttention } from '../src/attention/index.ts';
import { describeBackend, initBackend, softmaxCrossEntropy } from '../src/backend/index.ts';
import { CROSS_ENTROPY_GRAD, CROSS_ENTROPY_ROWS } from '../src/backend/kernels/crossEntropy.ts';
import { webGpuErrorCount } from '../src/backend/webgpu.ts';
import { setGlobalSeed } from '../src/random.ts';
import { labelSmoothedCrossEntropy, Trainer } from '../src/train/index.ts';
import { loadTranslator, trainTranslation, translateLines, type TranslationTrainOptions } from '../src/tasks/translation.ts';
import { buildToyModel, toyData, PAD, type ToyBatch } from './train-toy.ts';

const gpu = await initBackend({ backend: 'webgpu', verbose: false });
const skipReason = gpu.name === 'webgpu' ? undefined : (gpu.skipped.find((s) => s.name === 'webgpu')?.reason ?? `engine ${gpu.name} started instead`);
if (skipReason) console.log(`test/webgpu.test.ts skipped: no webgpu adapter (${skipReason})`);

/** Makes `name` the engine; on webgpu every op runs as a GPU kernel. */
async function useEngine(name: 'webgpu' | 'wasm' | 'cpu'): Promise<void> {
  const info = await initBackend({ backend: name, verbose: false });
  expect(info.name).toBe(name);
  if (name === 'webgpu') tf.env().set('WEBGPU_CPU_FORWARD', false);
}

async function values(t: tf.Tensor): Promise<number[]> {
  return Array.from(await t.data());
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const DATA = 'test/fixtures/tasks/copy';
const root = mkdtempSync(join(tmpdir(), 'ft-webgpu-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(skipReason !== undefined)('webgpu engine', () => {
  beforeAll(async () => {
    await useEngine('webgpu');
  });
  afterEach(() => {
    // A kernel whose pipeline the device rejects computes nothing, silently: every test checks.
    expect(webGpuErrorCount()).toBe(0);
  });

  it('starts on a described adapter, with our WGSL kernels registered', async () => {
    const d = describeBackend();
    expect(d.active).toBe('webgpu');
    expect(d.webgpu.adapter?.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(tf.getKernel(CROSS_ENTROPY_ROWS, 'webgpu')).toBeDefined();
    expect(tf.getKernel(CROSS_ENTROPY_GRAD, 'webgpu')).toBeDefined();
    // The registry is sound: the next op runs, and reads back asynchronously.
    expect(await values(tf.add(tf.ones([3]), tf.ones([3])))).toEqual([2, 2, 2]);
  });

  it('softmaxCrossEntropy: forward and backward match cpu (1e-4), padding and smoothing included', async () => {
    // A small vocabulary (64-thread rows), one ≥ 4096 (256-thread rows), and over 65535 rows (the
    // one-workgroup-per-row dispatch is then reshaped to 2-D, with spare workgroups that must not write).
    for (const [n, V] of [
      [37, 301],
      [24, 4100],
      [70000, 5],
    ]) {
      const logitValues = await values(tf.randomNormal([n, V], 0, 3, 'float32', n));
      const targets = Array.from({ length: n }, (_, i) => (i % 7 === 3 ? 0 : (i * 37 + 5) % V));
      const run = async () => {
        const f = (x: tf.Tensor) => {
          const r = softmaxCrossEntropy(x as tf.Tensor2D, tf.tensor1d(targets, 'int32'), { smoothing: 0.1, padId: 0 });
          // Different weights on the two outputs: the gradient must use both parts of dy.
          return tf.add(tf.mul(r.loss, 0.7), tf.mul(r.nll, 1.3)) as tf.Scalar;
        };
        const x = tf.tensor2d(logitValues, [n, V]);
        const { value, grad } = tf.valueAndGrad(f)(x);
        const out = { value: (await value.data())[0], grad: await values(grad) };
        tf.dispose([x, value, grad]);
        return out;
      };
      const ours = await run();
      await useEngine('cpu');
      const ref = await run();
      await useEngine('webgpu');
      expect(Math.abs(ours.value - ref.value)).toBeLessThan(1e-4 * Math.max(1, Math.abs(ref.value)));
      expect(maxAbsDiff(ours.grad, ref.grad)).toBeLessThan(1e-4);
    }
  });

  it('the per-row forward kernel: logsumexp, target logit and mean of every row, past 65535 rows too', async () => {
    const [n, V] = [70000, 5];
    const x = await values(tf.randomNormal([n, V], 0, 2, 'float32', 9));
    const t = Array.from({ length: n }, (_, i) => (i % 13 === 0 ? -1 : (i * 7) % V)); // -1: outside [0, V) reads as 0
    const rows = await values(
      tf.tidy(() => tf.engine().runKernel(CROSS_ENTROPY_ROWS, { logits: tf.tensor2d(x, [n, V]), targets: tf.tensor1d(t, 'int32') }) as tf.Tensor),
    );
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const row = x.slice(i * V, (i + 1) * V);
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
      const xt = t[i] >= 0 ? row[t[i]] : 0;
      const mean = row.reduce((s, v) => s + v, 0) / V;
      worst = Math.max(worst, Math.abs(rows[3 * i] - lse), Math.abs(rows[3 * i + 1] - xt), Math.abs(rows[3 * i + 2] - mean));
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it('factorized attention: outputs and gradients (weights, queries, memory) match cpu (1e-4)', async () => {
    const B = 2, T = 5, S = 6, d = 16, H = 4;
    const pad = [
      [0, 0, 0, 0, 1, 1],
      [0, 0, 0, 0, 0, 0],
    ];
    const xqValues = await values(tf.randomNormal([B, T, d], 0, 1, 'float32', 1));
    const memValues = await values(tf.randomNormal([B, S, d], 0, 1, 'float32', 2));
    const probeValues = await values(tf.randomNormal([B, T, d], 0, 1, 'float32', 3));
    let weights: { values: number[]; shape: number[] }[] | undefined;
    const run = async () => {
      setGlobalSeed(5);
      const layer = new FactorizedMultiHeadAttention({ numHeads: H, modelDim: d, rank: 3 });
      layer.build([null, null, d]);
      if (weights) layer.setWeights(weights.map((w) => tf.tensor(w.values, w.shape)));
      else weights = await Promise.all(layer.getWeights().map(async (w) => ({ values: await values(w), shape: w.shape })));
      const xq = tf.variable(tf.tensor3d(xqValues, [B, T, d]), true, 'xq');
      const mem = tf.variable(tf.tensor3d(memValues, [B, S, d]), true, 'mem');
      const probe = tf.tensor3d(probeValues, [B, T, d]);
      const padT = tf.tensor2d(pad) as tf.Tensor2D;
      const cross = layer.attend(xq, mem, { keyPaddingMask: padT });
      const causal = layer.attend(xq, null, { causal: true });
      const lossOf = () => tf.add(tf.sum(tf.mul(layer.attend(xq, mem, { keyPaddingMask: padT }), probe)), tf.sum(tf.square(layer.attend(xq, null, { causal: true })))) as tf.Scalar;
      const vars = [...layer.trainableWeights.map((w) => w.read() as tf.Variable), xq, mem];
      const { value, grads } = tf.variableGrads(lossOf, vars);
      const out = {
        cross: await values(cross),
        causal: await values(causal),
        loss: (await value.data())[0],
        grads: await Promise.all(vars.map((v) => values(grads[v.name]))),
      };
      tf.dispose([xq, mem, probe, padT, cross, causal, value, ...Object.values(grads)]);
      layer.dispose();
      return out;
    };
    const ours = await run();
    await useEngine('cpu');
    const ref = await run();
    await useEngine('webgpu');
    expect(maxAbsDiff(ours.cross, ref.cross)).toBeLessThan(1e-4);
    expect(maxAbsDiff(ours.causal, ref.causal)).toBeLessThan(1e-4);
    expect(Math.abs(ours.loss - ref.loss)).toBeLessThan(1e-4 * Math.max(1, Math.abs(ref.loss)));
    expect(ours.grads.length).toBe(ref.grads.length);
    ours.grads.forEach((g, i) => expect(maxAbsDiff(g, ref.grads[i]), `gradient ${i}`).toBeLessThan(1e-4));
  });

  it('tensor count stays flat over training steps', async () => {
    setGlobalSeed(3);
    const model = buildToyModel();
    const counts: number[] = [];
    const trainer = new Trainer<ToyBatch>({
      model,
      data: toyData(4),
      lossFn: (batch, { training }) => {
        const input = tf.tensor2d(batch.input, batch.shape, 'int32');
        const target = tf.tensor2d(batch.target, batch.shape, 'int32');
        const logits = model.apply(input, { training }) as tf.Tensor;
        const out = labelSmoothedCrossEntropy(logits, target, { smoothing: 0.1, padId: PAD, targetIds: batch.target });
        return { loss: out.loss, nllLoss: out.nllLoss, numTokens: out.numTokens };
      },
      optimizer: 'adamw',
      lr: 0.01,
      clipNorm: 0.5,
      frobeniusDecay: 1e-3,
      maxSteps: 8,
      progress: 'none',
      onStep: () => counts.push(tf.memory().numTensors),
    });
    const result = await trainer.train();
    expect(result.steps).toBe(8);
    expect(Number.isFinite(result.lastLoss)).toBe(true);
    // The optimizer creates its slots on the first steps; from then on nothing accumulates.
    expect(new Set(counts.slice(2)).size).toBe(1);
    trainer.dispose();
    model.dispose();
  });

  describe('transformer_tiny on the copy fixture: webgpu against wasm', () => {
    const run = (out: string): TranslationTrainOptions => ({
      data: DATA,
      out: join(root, out),
      sourceLang: 'xx',
      targetLang: 'yy',
      preset: 'transformer_tiny',
      progress: 'none',
      overrides: { train: { maxSteps: 20, logEvery: 1, validEvery: 20, saveEvery: 20 }, decode: { validBleuSamples: 4 } },
    });
    const trainRecords = (out: string): { step: number; loss: number; lr: number }[] =>
      readFileSync(join(root, out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .filter((r) => r.type === 'train')
        .map((r) => ({ step: r.step, loss: r.loss, lr: r.lr }));
    const lines = ['ka lo mi', 'vu we ba de', 'mi mi ka', 'de ba'];
    const source = [[5, 6, 7, 3]];
    const targetIn = [[2, 5, 6]];

    /** Logits of the checkpoint trained on `trainedOn`, computed on the current engine; and its beam-2 translations. */
    const outputsOf = async (trainedOn: string) => {
      const translator = await loadTranslator(join(root, trainedOn, 'checkpoint_last'));
      try {
        const s = tf.tensor2d(source, undefined, 'int32');
        const t = tf.tensor2d(targetIn, undefined, 'int32');
        const logits = await values(translator.model.forward(s, t, false));
        tf.dispose([s, t]);
        const translations = await translateLines(translator, lines, { beam: 2 });
        const before = tf.memory().numTensors;
        await translateLines(translator, lines, { beam: 2 });
        return { logits, translations, leaked: tf.memory().numTensors - before };
      } finally {
        translator.dispose();
      }
    };

    let gpuRun: Awaited<ReturnType<typeof outputsOf>>;
    beforeAll(async () => {
      await useEngine('webgpu');
      await trainTranslation(run('webgpu'));
      gpuRun = await outputsOf('webgpu');
      await useEngine('wasm');
      await trainTranslation(run('wasm'));
    });
    afterAll(async () => {
      await useEngine('webgpu');
    });

    it('20 training steps give the same losses as wasm (1e-3)', () => {
      const gpuLosses = trainRecords('webgpu');
      const wasmLosses = trainRecords('wasm');
      expect(gpuLosses.map((r) => r.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(gpuLosses.map((r) => r.lr)).toEqual(wasmLosses.map((r) => r.lr));
      gpuLosses.forEach((r, i) => expect(Math.abs(r.loss - wasmLosses[i].loss), `step ${r.step}`).toBeLessThan(1e-3));
      expect(gpuLosses[19].loss).toBeLessThan(gpuLosses[0].loss);
    });

    it('a checkpoint saved on webgpu loads on wasm with the same outputs, and beam search gives the same translations', async () => {
      const onWasm = await outputsOf('webgpu');
      expect(maxAbsDiff(onWasm.logits, gpuRun.logits)).toBeLessThan(1e-4);
      expect(gpuRun.translations).toEqual(onWasm.translations);
      expect(gpuRun.translations.some((s) => s.length > 0)).toBe(true);
      // Decoding on webgpu leaves no tensors behind.
      expect(gpuRun.leaked).toBe(0);
    });
  });
});
