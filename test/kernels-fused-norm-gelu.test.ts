/**
 * The fused GELU and LayerNorm kernels (src/backend/kernels/gelu.ts, layerNorm.ts; the addon's
 * native/src/fused.c): values and gradients against the plain op formulas, on wasm with and
 * without the native addon and on cpu; then whole models (seq2seq post- and pre-norm, BERT MLM)
 * with the kernels on and off give the same loss and gradients.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend/index.ts';
import { GELU, GELU_GRAD, gelu, registerGelu } from '../src/backend/kernels/gelu.ts';
import { LAYER_NORM, LAYER_NORM_GRAD, LAYER_NORM_RESIDUAL, fusedLayerNorm, hasFusedLayerNorm, registerLayerNorm } from '../src/backend/kernels/layerNorm.ts';
import { loadNativeBlas } from '../src/backend/native.ts';
import { UserError } from '../src/errors.ts';
import { TransformerSeq2Seq } from '../src/models/index.ts';
import { buildBertForMaskedLM, disposeBertModel } from '../src/models/bert.ts';
import { resolveBertConfig } from '../src/models/bert-config.ts';
import { setGlobalSeed } from '../src/random.ts';

const native = loadNativeBlas().blas;
const EPS = 1e-5;

/** Deterministic values spread over [-spread, spread] around `offset`. */
function values(n: number, seed: number, spread = 3, offset = 0): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = offset + spread * Math.sin(i * 1.37 + seed * 2.11) * Math.cos(i * 0.29 + seed);
  return out;
}

/** |a − b| ≤ 1e-5 · max(1, |b|) everywhere (absolute for small values, relative for large). */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i]));
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  expect(worst, `${what}: worst at ${at}: ${actual[at]} vs ${expected[at]}`).toBeLessThanOrEqual(1e-5);
}

/** The reference GELU: the op formula. */
function geluReference(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
}

/** The reference LayerNorm of x (+ residual): the op formula; returns [y, sum]. */
function layerNormReference(x: tf.Tensor, residual: tf.Tensor | null, gamma: tf.Tensor, beta: tf.Tensor): [tf.Tensor, tf.Tensor | null] {
  const s = residual ? tf.add(x, residual) : x;
  const centered = tf.sub(s, tf.mean(s, -1, true));
  const variance = tf.mean(tf.square(centered), -1, true);
  const y = tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(variance, EPS))), gamma), beta);
  return [y, residual ? s : null];
}

type Engine = { name: string; backend: 'wasm' | 'cpu'; useNative: boolean };
const ENGINES: Engine[] = [
  { name: 'wasm + addon', backend: 'wasm', useNative: true },
  { name: 'wasm, JS loops', backend: 'wasm', useNative: false },
  { name: 'cpu, JS loops', backend: 'cpu', useNative: false },
  { name: 'cpu + addon', backend: 'cpu', useNative: true },
];

/** Puts the kernels of `e` in place and makes its engine active. */
async function use(e: Engine): Promise<void> {
  await initBackend({ backend: 'wasm' });
  registerGelu(e.backend, e.useNative ? native : undefined);
  registerLayerNorm(e.backend, e.useNative ? native : undefined);
  await tf.setBackend(e.backend);
}

afterEach(async () => {
  // Back to what initBackend installs: the addon's loops on both engines, wasm active.
  for (const b of ['wasm', 'cpu'] as const) {
    registerGelu(b, native);
    registerLayerNorm(b, native);
  }
  await tf.setBackend('wasm');
});

const GELU_SHAPES: number[][] = [[5, 13], [2, 3, 37], [4, 256]];
/** LayerNorm cases: shapes (odd widths, rank 2 and 3), offset rows, and rows whose variance is near ε (so that ε counts). */
const NORM_CASES: { shape: number[]; spread: number; offset: number }[] = [
  { shape: [6, 13], spread: 4, offset: 10 },
  { shape: [2, 3, 37], spread: 4, offset: 10 },
  { shape: [3, 5, 256], spread: 4, offset: 10 },
  { shape: [4, 24], spread: 0.006, offset: 0 },
];

describe('fused GELU', () => {
  for (const e of ENGINES) {
    it.skipIf(e.useNative && !native)(`${e.name}: value and gradient match the op formula (rank 2 and 3, odd widths)`, async () => {
      await use(e);
      expect(tf.getKernel(GELU, e.backend)).toBeDefined();
      for (const shape of GELU_SHAPES) {
        const size = tf.util.sizeFromShape(shape);
        const x = tf.tensor(values(size, 1, 8), shape);
        const w = tf.tensor(values(size, 2, 1.5), shape);
        const loss = (f: (t: tf.Tensor) => tf.Tensor) => (t: tf.Tensor) => tf.sum(tf.mul(f(t), w));
        const before = tf.memory().numTensors;
        const fusedY = tf.tidy(() => gelu(x));
        const [fusedG] = tf.grads(loss(gelu))([x]);
        expect(tf.memory().numTensors, 'only the two results are left').toBe(before + 2);
        const refY = tf.tidy(() => geluReference(x));
        const [refG] = tf.grads(loss(geluReference))([x]);
        expectClose(fusedY.dataSync(), refY.dataSync(), `gelu [${shape}]`);
        expectClose(fusedG.dataSync(), refG.dataSync(), `gelu gradient [${shape}]`);
        tf.dispose([x, w, fusedY, fusedG, refY, refG]);
      }
    });
  }

  it("tfjs-layers' 'gelu' activation runs the kernel, serializes as before and matches tfjs' formula without it", async () => {
    await initBackend({ backend: 'wasm' });
    const dense = tf.layers.dense({ units: 3, activation: 'gelu', kernelInitializer: 'ones', biasInitializer: 'zeros' });
    const x = tf.tensor2d([[-1.5, 0.2], [0.9, 2.5]]);
    const info = await tf.profile(() => dense.apply(x) as tf.Tensor);
    expect(info.kernelNames).toContain(GELU);
    expect(dense.getConfig().activation).toBe('gelu');
    const fused = info.result as tf.Tensor;
    tf.unregisterKernel(GELU, 'wasm');
    const ops = dense.apply(x) as tf.Tensor;
    expectClose(fused.dataSync(), ops.dataSync(), 'dense gelu');
    tf.dispose([x, fused, ops]);
    dense.dispose();
  });

  it('without the kernel (as on webgpu or tensorflow) gelu runs the op formula', async () => {
    await initBackend({ backend: 'wasm' });
    tf.unregisterKernel(GELU, 'wasm');
    tf.unregisterKernel(GELU_GRAD, 'wasm');
    const x = tf.tensor1d([-3, -0.5, 0, 0.7, 4]);
    const y = gelu(x);
    const ref = geluReference(x);
    expect(Array.from(y.dataSync())).toEqual(Array.from(ref.dataSync()));
    tf.dispose([x, y, ref]);
  });
});

describe('fused LayerNorm', () => {
  for (const e of ENGINES) {
    for (const withResidual of [false, true]) {
      it.skipIf(e.useNative && !native)(
        `${e.name}, ${withResidual ? 'x + residual' : 'x alone'}: outputs and gradients (x, residual, gamma, beta) match the op formula`,
        async () => {
          await use(e);
          for (const { shape, spread, offset } of NORM_CASES) {
            const d = shape[shape.length - 1];
            const size = tf.util.sizeFromShape(shape);
            // With a residual, the offset and spread are split between the two inputs.
            const x = tf.tensor(values(size, 3, withResidual ? spread / 2 : spread, withResidual ? offset / 2 : offset), shape);
            const residual = withResidual ? tf.tensor(values(size, 4, spread / 2, offset / 2), shape) : null;
            const gamma = tf.tensor1d(values(d, 5, 0.5, 1));
            const beta = tf.tensor1d(values(d, 6, 0.3));
            // The loss uses both outputs (as the pre-norm block does), with uneven weights.
            const wy = tf.tensor(values(size, 7, 1.2), shape);
            const ws = tf.tensor(values(size, 8, 0.8), shape);
            const inputs = residual ? [x, residual, gamma, beta] : [x, gamma, beta];
            const lossOf = (norm: (x: tf.Tensor, r: tf.Tensor | null, g: tf.Tensor, b: tf.Tensor) => [tf.Tensor, tf.Tensor | null]) =>
              (...t: tf.Tensor[]) => {
                const [xx, rr, g, b] = residual ? t : [t[0], null, t[1], t[2]];
                const [y, s] = norm(xx, rr, g, b);
                const ly = tf.sum(tf.mul(y, wy));
                return s ? tf.add(ly, tf.sum(tf.mul(s, ws))) : ly;
              };
            const fused = (xx: tf.Tensor, rr: tf.Tensor | null, g: tf.Tensor, b: tf.Tensor): [tf.Tensor, tf.Tensor | null] => {
              const { y, sum } = fusedLayerNorm(xx, rr, g, b, EPS);
              return [y, sum ?? null];
            };
            const before = tf.memory().numTensors;
            const fusedOut = tf.tidy(() => fused(x, residual, gamma, beta).filter((t): t is tf.Tensor => t != null));
            const fusedGrads = tf.grads(lossOf(fused))(inputs);
            expect(tf.memory().numTensors, 'only the outputs and gradients are left').toBe(before + (residual ? 2 : 1) + inputs.length);
            const refOut = tf.tidy(() => layerNormReference(x, residual, gamma, beta).filter((t): t is tf.Tensor => t != null));
            const refGrads = tf.grads(lossOf(layerNormReference))(inputs);
            const tag = `[${shape}] spread ${spread}${residual ? ' + residual' : ''}`;
            expectClose(fusedOut[0].dataSync(), refOut[0].dataSync(), `y ${tag}`);
            if (residual) expectClose(fusedOut[1].dataSync(), refOut[1].dataSync(), `sum ${tag}`);
            const names = residual ? ['x', 'residual', 'gamma', 'beta'] : ['x', 'gamma', 'beta'];
            names.forEach((n, i) => expectClose(fusedGrads[i].dataSync(), refGrads[i].dataSync(), `d${n} ${tag}`));
            tf.dispose([x, gamma, beta, wy, ws, ...fusedOut, ...fusedGrads, ...refOut, ...refGrads, ...(residual ? [residual] : [])]);
          }
        },
      );
    }
  }

  it('bad shapes are a UserError', async () => {
    await initBackend({ backend: 'wasm' });
    expect(hasFusedLayerNorm()).toBe(true);
    const x = tf.zeros([2, 4]);
    const g = tf.ones([3]);
    expect(() => fusedLayerNorm(x, null, g, g, EPS)).toThrow(UserError);
    expect(() => fusedLayerNorm(x, tf.zeros([2, 3]), tf.ones([4]), tf.zeros([4]), EPS)).toThrow(UserError);
    tf.dispose([x, g]);
  });
});

/** Removes the fused kernels from the active engine (as on webgpu), so the models take the op path. */
function fusedOff(): void {
  const b = tf.getBackend();
  for (const name of [GELU, GELU_GRAD, LAYER_NORM, LAYER_NORM_RESIDUAL, LAYER_NORM_GRAD]) {
    if (tf.getKernel(name, b)) tf.unregisterKernel(name, b);
  }
}

/** Loss value and gradient of every trainable weight, as flat arrays keyed by weight name. */
function lossAndGrads(weights: tf.LayerVariable[], loss: () => tf.Scalar): { value: number; grads: Map<string, Float32Array> } {
  const vars = weights.map((w) => (w as unknown as { val: tf.Variable }).val);
  const { value, grads } = tf.variableGrads(loss, vars);
  const out = new Map<string, Float32Array>();
  for (const v of vars) out.set(v.name, grads[v.name].dataSync() as Float32Array);
  const result = { value: value.dataSync()[0], grads: out };
  tf.dispose([value, ...Object.values(grads)]);
  return result;
}

/** The kernel names one call of `f` ran. */
async function kernelsRun(f: () => tf.Tensor): Promise<Set<string>> {
  const info = await tf.profile(() => f());
  tf.dispose(info.result as tf.Tensor);
  return new Set(info.kernelNames);
}

function expectSameTraining(fused: ReturnType<typeof lossAndGrads>, ops: ReturnType<typeof lossAndGrads>): void {
  expectClose([fused.value], [ops.value], 'loss');
  expect([...fused.grads.keys()]).toEqual([...ops.grads.keys()]);
  for (const [name, g] of fused.grads) expectClose(g, ops.grads.get(name)!, `gradient of ${name}`);
}

describe('whole models: fused kernels on and off give the same loss and gradients', () => {
  const ids = (rows: number[][]) => tf.tensor2d(rows, [rows.length, rows[0].length], 'int32');
  const SEQ2SEQ = {
    srcVocabSize: 13,
    tgtVocabSize: 11,
    padId: 0,
    bosId: 1,
    eosId: 2,
    modelDim: 24,
    numHeads: 2,
    ffnDim: 40,
    encoderLayers: 2,
    decoderLayers: 2,
    maxPositions: 16,
    dropout: 0,
    attentionDropout: 0,
    activationDropout: 0,
  };
  for (const [label, extra] of [
    ['post-norm, relu', {}],
    ['pre-norm, gelu', { normFirst: true, activation: 'gelu' as const }],
  ] as const) {
    it(`seq2seq ${label}`, async () => {
      await initBackend({ backend: 'wasm' });
      setGlobalSeed(11);
      const model = new TransformerSeq2Seq({ ...SEQ2SEQ, ...extra });
      const src = ids([[3, 4, 5, 6, 2], [7, 8, 2, 0, 0]]);
      const tgt = ids([[1, 3, 4, 5], [1, 6, 7, 0]]);
      const loss = () => tf.mean(tf.square(model.forward(src, tgt, true))) as tf.Scalar;
      const ran = await kernelsRun(loss);
      expect(ran.has(LAYER_NORM_RESIDUAL)).toBe(true);
      expect(ran.has(GELU)).toBe(extra === undefined ? false : 'activation' in extra);
      const before = tf.memory().numTensors;
      const fused = lossAndGrads(model.trainableWeights, loss);
      expect(tf.memory().numTensors).toBe(before);
      fusedOff();
      const ops = lossAndGrads(model.trainableWeights, loss);
      expectSameTraining(fused, ops);
      tf.dispose([src, tgt]);
      model.dispose();
    });
  }

  for (const normFirst of [false, true]) {
    it(`BERT MLM (gelu FFN and head), ${normFirst ? 'pre' : 'post'}-norm`, async () => {
      await initBackend({ backend: 'wasm' });
      setGlobalSeed(12);
      const bert = buildBertForMaskedLM(
        resolveBertConfig({ vocabSize: 40, padId: 0, modelDim: 24, numHeads: 2, ffnDim: 40, numLayers: 2, maxPositions: 12, dropout: 0, attentionDropout: 0, normFirst }),
      );
      const tokens = ids([[2, 5, 6, 7, 8, 3], [2, 9, 10, 3, 0, 0]]);
      const positions = ids([[1, 3], [2, 0]]);
      const loss = () => tf.mean(tf.square(bert.model.apply([tokens, positions], { training: true }) as tf.Tensor)) as tf.Scalar;
      const ran = await kernelsRun(loss);
      for (const k of [GELU, LAYER_NORM, LAYER_NORM_RESIDUAL]) expect(ran.has(k), k).toBe(true);
      const before = tf.memory().numTensors;
      const fused = lossAndGrads(bert.model.trainableWeights, loss);
      expect(tf.memory().numTensors).toBe(before);
      fusedOff();
      const ops = lossAndGrads(bert.model.trainableWeights, loss);
      expectSameTraining(fused, ops);
      tf.dispose([tokens, positions]);
      disposeBertModel(bert.model);
    });
  }
});
