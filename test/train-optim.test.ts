import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { TrainOptimizer, makeSchedule, clipByGlobalNorm, globalNorm, type OptimizerName } from '../src/train/index.ts';

// Three updates from p0 with these gradients and rates; references from PyTorch 1.13 (float64):
// torch.optim.Adam / AdamW(betas=(0.9, 0.98), eps=1e-8, weight_decay=0.1), and fairseq's NAG
// (fairseq/optim/nag.py transcribed, momentum 0.9, weight_decay 0.1).
const p0 = [[0.5, -1.0, 2.0], [0.1, 0.0, -0.3]];
const grads = [
  [[0.2, -0.1, 0.4], [1.0, -2.0, 0.05]],
  [[-0.3, 0.1, 0.2], [0.5, 0.0, -0.4]],
  [[0.05, 0.3, -0.2], [-1.0, 2.0, 0.3]],
];
const lrs = [0.1, 0.05, 0.02];
const torchRef: Record<OptimizerName, number[][][]> = {
  adam: [
    [[0.4000000039999998, -0.9000000049999998, 1.9000000016666667], [9.900989889066736e-10, 0.0999999995, -0.399999950000025]],
    [[0.4036105660228829, -0.8682457728722166, 1.8515348860466936], [-0.046672110452570685, 0.1334775330161704, -0.3645211007500692]],
    [[0.4015790009764915, -0.8708739377604995, 1.8367470587054429], [-0.048902528633688276, 0.13166543337588626, -0.36163349583437576]],
  ],
  adamw: [
    [[0.39500000499999977, -0.890000009999999, 1.8800000024999999], [-0.0009999990000000153, 0.0999999995, -0.39699998000000397]],
    [[0.40538729621282726, -0.8881815886342096, 1.8238561540982932], [-0.047738848283808616, 0.13316498773677343, -0.36239997291244425]],
    [[0.40661920875250784, -0.89822762869909, 1.8122360927693417], [-0.04985898187810007, 0.1311813617420966, -0.36118083539718265]],
  ],
  nag: [
    [[0.457, -0.971, 1.904], [-0.091, 0.38, -0.3065]],
    [[0.47511500000000007, -0.9715949999999999, 1.85928], [-0.178545, 0.4591, -0.2689925]],
    [[0.47420877000000006, -0.9812138099999999, 1.85408944], [-0.16286791, 0.41134180000000004, -0.274103515]],
  ],
};

function run(name: OptimizerName, decay = true, steps = 3): { values: number[][]; opt: TrainOptimizer; p: tf.Variable } {
  const p = tf.variable(tf.tensor2d(p0));
  const opt = new TrainOptimizer({ name, betas: [0.9, 0.98], eps: 1e-8, momentum: 0.9, weightDecay: 0.1 }, [{ name: 'p', variable: p, decay }]);
  const values: number[][] = [];
  for (let i = 0; i < steps; i++) {
    const g = tf.tensor2d(grads[i]);
    opt.step({ [p.name]: g }, lrs[i]);
    g.dispose();
    values.push(Array.from(p.dataSync()));
  }
  return { values, opt, p };
}

describe('optimizers', () => {
  for (const name of ['adam', 'adamw', 'nag'] as const) {
    it(`${name} matches the PyTorch/fairseq reference over 3 updates`, () => {
      const { values, opt, p } = run(name);
      values.forEach((v, i) => {
        const ref = torchRef[name][i].flat();
        v.forEach((x, j) => expect(Math.abs(x - ref[j])).toBeLessThan(2e-6 * Math.max(1, Math.abs(ref[j]))));
      });
      expect(opt.numUpdates).toBe(3);
      opt.dispose();
      p.dispose();
    });
  }

  it('skips weight decay for params marked decay: false (factor weights)', () => {
    const withDecay = run('adamw', true, 1);
    const without = run('adamw', false, 1);
    // Decoupled decay: p·(1 − lr·wd) difference on the first update.
    const diff = withDecay.values[0][0] - without.values[0][0];
    expect(diff).toBeCloseTo(-0.1 * 0.1 * 0.5, 6);
    for (const r of [withDecay, without]) {
      r.opt.dispose();
      r.p.dispose();
    }
  });

  it('state round-trips exactly: a restored optimizer continues bit-for-bit', async () => {
    for (const name of ['adam', 'nag'] as const) {
      const straight = run(name, true, 3);
      const half = run(name, true, 2);
      const state = await half.opt.getState();
      const p = tf.variable(tf.tensor(Array.from(half.p.dataSync()), [2, 3]));
      const resumed = new TrainOptimizer({ name, betas: [0.9, 0.98], eps: 1e-8, momentum: 0.9, weightDecay: 0.1 }, [{ name: 'p', variable: p, decay: true }]);
      // The metadata travels as JSON (optimizer.json), the slots as float32 (optimizer.bin).
      resumed.setState({ meta: JSON.parse(JSON.stringify(state.meta)), buffers: state.buffers.map((b) => Float32Array.from(b)) });
      const g = tf.tensor2d(grads[2]);
      resumed.step({ [p.name]: g }, lrs[2]);
      expect(Array.from(p.dataSync())).toEqual(straight.values[2]);
      tf.dispose([g, p, straight.p, half.p]);
      for (const o of [straight.opt, half.opt, resumed]) o.dispose();
    }
  });

  it('refuses state of another optimizer or shape, and keeps numTensors flat', async () => {
    const a = run('adam', true, 1);
    const p = tf.variable(tf.zeros([3, 2]));
    const other = new TrainOptimizer({ name: 'adam' }, [{ name: 'p', variable: p, decay: true }]);
    const stateA = await a.opt.getState();
    expect(() => other.setState(stateA)).toThrow(/shape \[2,3\].*\[3,2\]/);
    const nag = new TrainOptimizer({ name: 'nag' }, [{ name: 'p', variable: a.p, decay: true }]);
    expect(() => nag.setState(stateA)).toThrow(/optimizer is 'adam'/);
    const before = tf.memory().numTensors;
    const g = tf.onesLike(a.p);
    for (let i = 0; i < 3; i++) a.opt.step({ [a.p.name]: g }, 0.01);
    g.dispose();
    expect(tf.memory().numTensors).toBe(before);
    expect(() => new TrainOptimizer({ name: 'sgd' as OptimizerName }, [])).toThrow(/unknown 'sgd'/);
    tf.dispose([p, a.p]);
    for (const o of [a.opt, other, nag]) o.dispose();
  });
});

describe('schedules', () => {
  it('inverse_sqrt follows fairseq: linear warmup from warmupInitLr, then lr·sqrt(warmup/k)', () => {
    const s = makeSchedule({ kind: 'inverse_sqrt', lr: 5e-4, warmupUpdates: 4000, warmupInitLr: 1e-7 });
    expect(s(0)).toBeCloseTo(1e-7, 12);
    expect(s(2000)).toBeCloseTo(1e-7 + 2000 * ((5e-4 - 1e-7) / 4000), 12);
    expect(s(4000)).toBeCloseTo(5e-4, 12);
    expect(s(16000)).toBeCloseTo(2.5e-4, 12);
    const noInit = makeSchedule({ kind: 'inverse_sqrt', lr: 1e-3, warmupUpdates: 10 });
    expect(noInit(0)).toBe(0);
    expect(noInit(5)).toBeCloseTo(5e-4, 12);
  });

  it('linear warms up then decays to 0 at totalUpdates; constant is constant', () => {
    const s = makeSchedule({ kind: 'linear', lr: 1e-3, warmupUpdates: 10, totalUpdates: 110 });
    expect(s(0)).toBe(0);
    expect(s(5)).toBeCloseTo(5e-4, 12);
    expect(s(10)).toBeCloseTo(1e-3, 12);
    expect(s(60)).toBeCloseTo(5e-4, 12);
    expect(s(110)).toBe(0);
    expect(s(200)).toBe(0);
    expect(makeSchedule({ kind: 'constant', lr: 0.1 })(1234)).toBe(0.1);
    expect(() => makeSchedule({ kind: 'linear', lr: 1, warmupUpdates: 20, totalUpdates: 10 })).toThrow(/warmupUpdates/);
    expect(() => makeSchedule({ kind: 'constant', lr: -1 })).toThrow(/lr: expected a positive/);
  });
});

describe('gradient clipping', () => {
  it('scales by maxNorm / (norm + 1e-6) only when the norm exceeds it; 0 = off', async () => {
    const grads = { a: tf.tensor1d([3, 0]), b: tf.tensor1d([0, 4]) };
    const norm = await globalNorm(grads);
    expect(norm).toBeCloseTo(5, 6);
    expect(clipByGlobalNorm(grads, norm, 0)).toBe(1);
    expect(clipByGlobalNorm(grads, norm, 10)).toBe(1);
    const coef = clipByGlobalNorm(grads, norm, 1);
    expect(coef).toBeCloseTo(1 / (5 + 1e-6), 9);
    expect(await globalNorm(grads)).toBeCloseTo(1, 5);
    tf.dispose(Object.values(grads));
    const bad = { a: tf.tensor1d([NaN, 1]) };
    expect(Number.isNaN(await globalNorm(bad))).toBe(true);
    bad.a.dispose();
  });
});
