import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../src/backend/index.ts';
import { UserError } from '../src/errors.ts';
import {
  Trainer,
  NonFiniteLossError,
  acquireOutputLock,
  loadCheckpoint,
  ProgressReporter,
  labelSmoothedCrossEntropy,
  enableSignalHandling,
  type StepInfo,
  type TrainerOptions,
  type LossFn,
} from '../src/train/index.ts';
import { buildToyModel, toyData, toyLoss, weightValues, TOY, PAD, type ToyBatch } from './train-toy.ts';

// Bitwise comparisons need the deterministic cpu kernels.
beforeAll(async () => {
  await initBackend({ backend: 'cpu' });
});

function tmpDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'ft-train-'));
}

const silent = { progress: 'none' as const };

/** Validation: the loss per token on two fixed batches, without dropout. */
function toyValidate(model: tf.LayersModel): () => Promise<Record<string, number>> {
  const data = toyData(2, 4, 6, 99);
  const batches = [...data.batches(0, 0)];
  const loss = toyLoss(model, 0);
  return async () => {
    let sum = 0;
    let n = 0;
    for (const b of batches) {
      const out = tf.tidy(() => {
        const r = loss(b, { training: false });
        return { l: r.loss, t: r.numTokens };
      });
      sum += out.l.dataSync()[0];
      n += out.t;
      out.l.dispose();
    }
    return { loss: sum / n, perplexity: Math.exp(sum / n) };
  };
}

function baseOptions(model: tf.LayersModel, extra: Partial<TrainerOptions<ToyBatch>> = {}): TrainerOptions<ToyBatch> {
  return {
    model,
    lossFn: toyLoss(model),
    data: toyData(5),
    optimizer: 'adamw',
    lr: 0.05,
    schedule: 'inverse_sqrt',
    warmupUpdates: 3,
    warmupInitLr: 1e-3,
    clipNorm: 0.5,
    updateFreq: 2,
    weightDecay: 0.01,
    frobeniusDecay: 1e-3,
    seed: 42,
    logEvery: 3,
    ...silent,
    ...extra,
  };
}

describe('Trainer', () => {
  it('resume continues exactly: N/2 + save + fresh Trainer + N/2 equals N straight (bitwise on cpu)', async () => {
    // 5 batches per epoch, updateFreq 2: epochs end mid-way; dropout + shuffling in play; the
    // logging window (every 3) straddles the save at 4.
    const N = 8;
    const straightLosses: number[] = [];
    const straightModel = buildToyModel();
    const outA = tmpDir();
    const straight = new Trainer(
      baseOptions(straightModel, { outDir: outA, maxSteps: N, saveEvery: N / 2, validEvery: N / 2, validate: toyValidate(straightModel), onStep: (s) => straightLosses.push(s.loss) }),
    );
    const resultA = await straight.train();
    expect(resultA.steps).toBe(N);
    expect(resultA.stopReason).toBe('maxSteps');

    const outB = tmpDir();
    const resumedLosses: number[] = [];
    const first = buildToyModel();
    await new Trainer(
      baseOptions(first, { outDir: outB, maxSteps: N / 2, validEvery: N / 2, validate: toyValidate(first), onStep: (s) => resumedLosses.push(s.loss) }),
    ).train();
    // A fresh process would build the model anew; scramble it to prove the checkpoint restores it.
    const second = buildToyModel();
    second.setWeights(second.getWeights().map((w) => tf.mul(w, 3)));
    const resumed = new Trainer(
      baseOptions(second, { outDir: outB, maxSteps: N, saveEvery: N / 2, validEvery: N / 2, validate: toyValidate(second), resume: true, onStep: (s) => resumedLosses.push(s.loss) }),
    );
    const resultB = await resumed.train();

    expect(resultB.steps).toBe(N);
    expect(resumedLosses).toEqual(straightLosses);
    expect(resultB.lastLoss).toBe(resultA.lastLoss);
    const wa = weightValues(straightModel);
    const wb = weightValues(second);
    wa.forEach((w, i) => expect(Array.from(wb[i])).toEqual(Array.from(w)));
    const [stateB, stateA] = await Promise.all([resumed.optimizer.getState(), straight.optimizer.getState()]);
    expect(stateB.buffers.map((b) => Array.from(b))).toEqual(stateA.buffers.map((b) => Array.from(b)));
    expect(resultB.bestScore).toBe(resultA.bestScore);
    // metrics.jsonl has the same train losses (time and speed differ, of course).
    const trainLosses = (dir: string) =>
      readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .filter((r) => r.type === 'train')
        .map((r) => [r.step, r.loss]);
    expect(trainLosses(outB)).toEqual(trainLosses(outA));
    const state = (await loadCheckpoint(path.join(outB, 'checkpoint_last'))).trainerState!;
    expect(state.step).toBe(N);
    expect(state.elapsedSeconds).toBeGreaterThan(0);
    straight.dispose();
    resumed.dispose();
  });

  it('is a function of the seed: same seed, same run; another seed, other dropout masks', async () => {
    const losses = async (seed: number) => {
      const model = buildToyModel();
      const out: number[] = [];
      await new Trainer(baseOptions(model, { maxSteps: 3, seed, onStep: (s) => out.push(s.loss) })).train();
      return out;
    };
    const a = await losses(42);
    expect(await losses(42)).toEqual(a);
    const c = await losses(43);
    expect(c[0]).not.toBe(a[0]);
  });

  it('keeps tf.memory().numTensors flat across steps', async () => {
    const model = buildToyModel();
    const counts: number[] = [];
    // Validation and checkpointing every other step are part of the loop being measured.
    const trainer = new Trainer(
      baseOptions(model, { maxSteps: 8, outDir: tmpDir(), validEvery: 2, validate: toyValidate(model), keepLast: 2, onStep: () => counts.push(tf.memory().numTensors) }),
    );
    await trainer.train();
    expect(counts.length).toBe(8);
    expect(new Set(counts).size).toBe(1);
    expect(tf.memory().numTensors).toBe(counts[0]);
    trainer.dispose();
  });

  it('accumulating updateFreq micro-batches equals one update on the merged batch', async () => {
    const sizes = { ...TOY, dropout: 0 };
    const data = toyData(2, 3, 5, 7);
    const [b0, b1] = [...data.batches(0, 0)];
    const merged: ToyBatch = {
      input: Int32Array.from([...b0.input, ...b1.input]),
      target: Int32Array.from([...b0.target, ...b1.target]),
      shape: [6, 5],
    };
    const accumulated = buildToyModel(sizes);
    const one = buildToyModel(sizes);
    const common = { optimizer: 'adam' as const, lr: 0.01, schedule: 'constant' as const, maxSteps: 1, frobeniusDecay: 0.01, clipNorm: 0.1, ...silent };
    await new Trainer({ ...common, model: accumulated, lossFn: toyLoss(accumulated), data: { numBatches: () => 2, batches: () => [b0, b1] }, updateFreq: 2 }).train();
    await new Trainer({ ...common, model: one, lossFn: toyLoss(one), data: { numBatches: () => 1, batches: () => [merged] } }).train();
    const a = weightValues(accumulated);
    const b = weightValues(one);
    a.forEach((w, i) => w.forEach((x, j) => expect(Math.abs(x - b[i][j])).toBeLessThan(1e-6)));
  });

  it('adds Frobenius decay to factor weights and decoupled weight decay to the others', async () => {
    const model = buildToyModel({ ...TOY, dropout: 0 });
    const before = model.getWeights().map((w) => tf.clone(w));
    // A loss with zero gradient that still touches every weight: the update is decay alone.
    const zeroLoss: LossFn<ToyBatch> = () => ({
      loss: tf.mul(tf.addN(model.trainableWeights.map((w) => tf.sum(w.read()))), 0) as tf.Scalar,
      numTokens: 1,
    });
    const lr = 0.1;
    const lambda = 0.2;
    const wd = 0.5;
    const run = async (fdPairs?: { qk: boolean }, frobeniusDecay = lambda) => {
      model.setWeights(before);
      await new Trainer({
        model, lossFn: zeroLoss, data: toyData(1), maxSteps: 1, optimizer: 'nag', momentum: 0, lr, schedule: 'constant',
        weightDecay: wd, frobeniusDecay, fdPairs, ...silent,
      }).train();
      return model.getWeights();
    };
    // Weights: embedding, U, V, dense kernel, dense bias.
    const [emb0, U0, V0, k0] = before;
    let [emb, U, , k] = await run();
    const fd = tf.mul(tf.matMul(U0 as tf.Tensor3D, tf.matMul(V0 as tf.Tensor3D, V0 as tf.Tensor3D, true, false)), lambda);
    const expectedU = tf.sub(U0, tf.mul(fd, lr));
    expect(tf.max(tf.abs(tf.sub(U, expectedU))).dataSync()[0]).toBeLessThan(1e-6);
    expect(tf.max(tf.abs(tf.sub(k, tf.mul(k0, 1 - lr * wd)))).dataSync()[0]).toBeLessThan(1e-6);
    expect(tf.max(tf.abs(tf.sub(emb, tf.mul(emb0, 1 - lr * wd)))).dataSync()[0]).toBeLessThan(1e-6);
    // With the qk pair excluded from FD, its factors get plain weight decay instead.
    [emb, U, , k] = await run({ qk: false });
    expect(tf.max(tf.abs(tf.sub(U, tf.mul(U0, 1 - lr * wd)))).dataSync()[0]).toBeLessThan(1e-6);
    // Without Frobenius decay (the paper's baseline) the factors keep plain weight decay.
    [emb, U, , k] = await run(undefined, 0);
    expect(tf.max(tf.abs(tf.sub(U, tf.mul(U0, 1 - lr * wd)))).dataSync()[0]).toBeLessThan(1e-6);
  });

  it("nanPolicy 'stop' names the step and keeps the last good checkpoint", async () => {
    const out = tmpDir();
    const model = buildToyModel();
    const good = toyLoss(model);
    let calls = 0;
    // Updates 1–4 are fine (updateFreq 1); the 5th update's loss is NaN.
    const lossFn: LossFn<ToyBatch> = (b, ctx) => {
      const r = good(b, ctx);
      return ++calls === 5 ? { ...r, loss: tf.mul(r.loss, NaN) as tf.Scalar } : r;
    };
    const trainer = new Trainer(baseOptions(model, { outDir: out, lossFn, updateFreq: 1, maxSteps: 10, saveEvery: 2 }));
    const err = await trainer.train().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NonFiniteLossError);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe("training stopped at step 5: loss is NaN/Inf (nanPolicy 'stop'); the last good checkpoint is kept");
    const ckpt = await loadCheckpoint(path.join(out, 'checkpoint_last'));
    expect(ckpt.trainerState!.step).toBe(4);
    expect(existsSync(path.join(out, '.lock'))).toBe(false);

    // NaN at the very first update: there is no good checkpoint to keep, and the message says so.
    const first = tmpDir();
    const fresh = buildToyModel();
    const freshLoss = toyLoss(fresh);
    const nanAtOnce: LossFn<ToyBatch> = (b, ctx) => {
      const r = freshLoss(b, ctx);
      return { ...r, loss: tf.mul(r.loss, NaN) as tf.Scalar };
    };
    const firstErr = await new Trainer(baseOptions(fresh, { outDir: first, lossFn: nanAtOnce, updateFreq: 1, maxSteps: 10 }))
      .train()
      .catch((e: unknown) => e);
    expect((firstErr as Error).message).toBe("training stopped at step 1: loss is NaN/Inf (nanPolicy 'stop'); no checkpoint was written yet");
    expect(existsSync(path.join(first, 'checkpoint_last'))).toBe(false);
  });

  it("nanPolicy 'skip' skips non-finite updates, halves the lr scale, and stops after K in a row", async () => {
    const model = buildToyModel();
    const good = toyLoss(model);
    let calls = 0;
    // Finite loss, NaN gradient: d/dw sqrt(w − w) = ∞ · 0.
    const nanGrad = (r: ReturnType<LossFn<ToyBatch>>) => ({
      ...r,
      loss: tf.add(r.loss, tf.sum(tf.sqrt(tf.sub(model.trainableWeights[0].read(), model.trainableWeights[0].read())))) as tf.Scalar,
    });
    const lossFn: LossFn<ToyBatch> = (b, ctx) => {
      const r = good(b, ctx);
      calls++;
      return calls === 3 || calls === 4 ? nanGrad(r) : r;
    };
    const infos: StepInfo[] = [];
    const trainer = new Trainer(baseOptions(model, { lossFn, updateFreq: 1, maxSteps: 5, nanPolicy: 'skip', schedule: 'constant', warmupUpdates: 0, onStep: (s) => infos.push(s) }));
    const result = await trainer.train();
    expect(result.steps).toBe(5);
    expect(result.nanSkips).toBe(2);
    expect(infos.map((i) => i.skipped)).toEqual([false, false, true, true, false, false, false]);
    expect(infos[6].lr).toBeCloseTo(0.05 / 4, 12);
    expect(weightValues(model).every((w) => w.every(Number.isFinite))).toBe(true);

    // The last update of the last epoch skipped: the run still ends at the epoch budget and saves.
    const out = tmpDir();
    calls = 0;
    const lastBad: LossFn<ToyBatch> = (b, ctx) => (++calls === 5 ? nanGrad(good(b, ctx)) : good(b, ctx));
    const ended = await new Trainer(baseOptions(model, { lossFn: lastBad, outDir: out, maxEpochs: 1, nanPolicy: 'skip' })).train();
    expect([ended.steps, ended.epoch, ended.stopReason, ended.nanSkips]).toEqual([2, 1, 'maxEpochs', 1]);
    const saved = (await loadCheckpoint(path.join(out, 'checkpoint_last'))).trainerState!;
    expect([saved.step, saved.epoch, saved.batchIndex, saved.lrScale]).toEqual([2, 1, 0, 0.5]);

    calls = 0;
    const always: LossFn<ToyBatch> = (b, ctx) => nanGrad(good(b, ctx));
    const stopper = new Trainer(baseOptions(model, { lossFn: always, updateFreq: 1, maxSteps: 50, nanPolicy: 'skip', maxConsecutiveNanSkips: 3 }));
    await expect(stopper.train()).rejects.toThrow(/training stopped at step 1: 3 consecutive updates with NaN\/Inf .*; nothing was saved \(no output folder\)$/);
  });

  it('tracks the best validation, saves checkpoint_best and stops early', async () => {
    const out = tmpDir();
    const model = buildToyModel();
    const scores = [10, 20, 15, 18, 19, 30];
    let v = 0;
    const trainer = new Trainer(
      baseOptions(model, {
        outDir: out, maxSteps: 100, validEvery: 2, bestMetric: 'bleu', bestMode: 'max', earlyStopPatience: 3, keepLast: 2,
        validate: async () => ({ loss: 1, bleu: scores[v++] }),
      }),
    );
    const result = await trainer.train();
    expect(result.stopReason).toBe('earlyStop');
    expect(result.steps).toBe(10); // validations at 2,4,6,8,10: best at 4, then 3 without improvement
    expect(result.bestScore).toBe(20);
    expect(result.bestStep).toBe(4);
    const best = await loadCheckpoint(path.join(out, 'checkpoint_best'));
    expect(best.trainerState!.step).toBe(4);
    expect(readdirSync(out).filter((f) => /^checkpoint_\d+$/.test(f)).sort()).toEqual(['checkpoint_10', 'checkpoint_8']);
    expect(readdirSync(out).filter((f) => f.startsWith('.')).sort()).toEqual([]);
    const valid = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'valid');
    expect(valid.map((r) => r.bleu)).toEqual([10, 20, 15, 18, 19]);
    await expect(new Trainer(baseOptions(model, { outDir: out, maxSteps: 1, validate: async () => ({ loss: 1 }), validEvery: 1, bestMetric: 'bleu', overwrite: true })).train()).rejects.toThrow(
      "`bestMetric` 'bleu': not among the validation results (loss)",
    );
  });

  it('budgets: maxEpochs counts epochs, maxTimeMinutes stops early', async () => {
    const model = buildToyModel();
    const epochs = await new Trainer(baseOptions(model, { maxEpochs: 2 })).train();
    expect(epochs.stopReason).toBe('maxEpochs');
    expect(epochs.steps).toBe(6); // 5 batches / updateFreq 2 = 3 updates per epoch
    expect(epochs.epoch).toBe(2);
    const timed = await new Trainer(baseOptions(model, { maxTimeMinutes: 1e-9, maxSteps: 100 })).train();
    expect(timed.stopReason).toBe('maxTime');
    expect(timed.steps).toBeLessThanOrEqual(1);
    expect(() => new Trainer(baseOptions(model, {}))).toThrow(/set at least one of `maxSteps`, `maxEpochs`, `maxTimeMinutes`/);
    // Time is counted across resumes: a resumed run whose time is already spent does nothing more.
    const out = tmpDir();
    await new Trainer(baseOptions(model, { outDir: out, maxSteps: 2 })).train();
    const spent = (await loadCheckpoint(path.join(out, 'checkpoint_last'))).trainerState!.elapsedSeconds;
    const again = await new Trainer(baseOptions(model, { outDir: out, maxSteps: 50, maxTimeMinutes: spent / 60, resume: true })).train();
    expect(again.stopReason).toBe('maxTime');
    expect(again.steps).toBe(2);
  });

  it('refuses a second training on the same --out; takes over a stale lock', async () => {
    const out = tmpDir();
    const model = buildToyModel();
    const first = new Trainer(baseOptions(model, { outDir: out, maxSteps: 2 }));
    const running = first.train();
    const second = new Trainer(baseOptions(model, { outDir: out, maxSteps: 2, overwrite: true }));
    await expect(second.train()).rejects.toThrow(/^`out` .*: another training \(this process, since .*\) is writing to this folder; use another `out`/);
    await running;
    expect(existsSync(path.join(out, '.lock'))).toBe(false);
    // A lock from a process that has exited is stale.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    writeFileSync(path.join(out, '.lock'), JSON.stringify({ pid: dead, host: os.hostname(), started: 'earlier' }));
    await new Trainer(baseOptions(model, { outDir: out, maxSteps: 3, resume: true })).train();
    expect(existsSync(path.join(out, '.lock'))).toBe(false);
    // Held by a live process other than us (our parent, say).
    writeFileSync(path.join(out, '.lock'), JSON.stringify({ pid: process.ppid, host: os.hostname(), started: 'now' }));
    expect(() => acquireOutputLock(out)).toThrow(new RegExp(`process ${process.ppid}`));
  });

  it('a full disk during training stops with one clear line; the previous checkpoint and the lock are handled', async () => {
    const out = tmpDir();
    const model = buildToyModel();
    let saves = 0;
    const writer = {
      async writeFile(file: string, data: Uint8Array) {
        if (file.endsWith('model.json') && ++saves === 2) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
        writeFileSync(file, data);
      },
    };
    const err = await new Trainer(baseOptions(model, { outDir: out, maxSteps: 6, saveEvery: 2, writer })).train().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^cannot write checkpoint .*checkpoint_last: disk full \(ENOSPC\); the previous checkpoint is kept$/);
    expect((await loadCheckpoint(path.join(out, 'checkpoint_last'))).trainerState!.step).toBe(2);
    expect(readdirSync(out).sort()).toEqual(['checkpoint_last', 'metrics.jsonl']);
  });

  it('refuses to resume into a model of another shape, and bad options, with one clear line', async () => {
    const out = tmpDir();
    await new Trainer(baseOptions(buildToyModel(), { outDir: out, maxSteps: 1 })).train();
    const wider = buildToyModel({ ...TOY, dim: 12 });
    await expect(new Trainer(baseOptions(wider, { outDir: out, maxSteps: 2, resume: true })).train()).rejects.toThrow(
      /checkpoint_last\/weights.bin: weight .* has shape \[11,8\], the model built from the config expects \[11,12\]/,
    );
    await expect(new Trainer(baseOptions(buildToyModel(), { outDir: out, maxSteps: 2, resume: true, optimizer: 'nag' })).train()).rejects.toThrow(
      /optimizer.json: optimizer is 'adamw' but the run is configured with 'nag'/,
    );
    const model = buildToyModel();
    const bad = (extra: Partial<TrainerOptions<ToyBatch>>) => () => new Trainer(baseOptions(model, { maxSteps: 1, ...extra })).currentLr();
    expect(bad({ schedule: 'cosine' as 'linear' })).toThrow(/`schedule`: unknown 'cosine'/);
    expect(bad({ updateFreq: 0 })).toThrow(/`updateFreq`: expected an integer >= 1, got 0/);
    expect(bad({ nanPolicy: 'ignore' as 'skip' })).toThrow(/`nanPolicy`: expected 'stop' or 'skip'/);
    expect(bad({ clipNorm: -1 })).toThrow(/`clipNorm`: expected a number >= 0/);
    expect(bad({ schedule: 'linear', maxSteps: undefined, maxTimeMinutes: 5 })).toThrow(/`schedule` 'linear': needs `maxSteps` or `maxEpochs`/);
    expect(bad({ updateFreq: 0 })).toThrow(UserError);
  });

  it('leaves SIGINT/SIGTERM alone unless asked: handleSignals, or enableSignalHandling() for Trainers with an outDir', async () => {
    const model = buildToyModel();
    const listeners = (): number[] => [process.listenerCount('SIGINT'), process.listenerCount('SIGTERM')];
    const before = listeners();
    const during = async (extra: Partial<TrainerOptions<ToyBatch>>): Promise<number[]> => {
      let seen: number[] = [];
      await new Trainer(baseOptions(model, { outDir: tmpDir(), maxSteps: 1, ...extra, onStep: () => (seen = listeners()) })).train();
      return seen;
    };
    expect(await during({})).toEqual(before);
    expect(await during({ handleSignals: true })).toEqual(before.map((n) => n + 1));
    const disable = enableSignalHandling();
    try {
      expect(await during({})).toEqual(before.map((n) => n + 1));
      expect(await during({ handleSignals: false })).toEqual(before);
      expect(await during({ outDir: undefined })).toEqual(before);
    } finally {
      disable();
    }
    expect(listeners()).toEqual(before);
  });

  it('refuses to start afresh over an existing checkpoint without resume or overwrite', async () => {
    const out = tmpDir();
    const model = buildToyModel();
    await new Trainer(baseOptions(model, { outDir: out, maxSteps: 1 })).train();
    await expect(new Trainer(baseOptions(model, { outDir: out, maxSteps: 2 })).train()).rejects.toThrow(/^`out` .*: already holds checkpoint_last; pass `resume` to continue it/);
  });

  it('prints plain progress lines when not on a terminal', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, done) {
        lines.push(...String(chunk).split('\n').filter(Boolean));
        done();
      },
    });
    const model = buildToyModel();
    await new Trainer(baseOptions(model, { maxSteps: 4, logEvery: 2, progress: 'auto', progressStream: stream })).train();
    expect(lines.length).toBe(2);
    expect(lines[0]).toMatch(/^step 2\/4 loss \d+\.\d{3} lr \d\.\de-\d+ tok\/s \d+ eta \d+s$/);
  });

  it('draws a cli-progress bar on a terminal', async () => {
    let text = '';
    const tty = Object.assign(
      new Writable({
        write(chunk, _enc, done) {
          text += String(chunk);
          done();
        },
      }),
      { isTTY: true, columns: 120 },
    );
    const model = buildToyModel();
    await new Trainer(baseOptions(model, { maxSteps: 4, logEvery: 2, progress: 'auto', progressStream: tty })).train();
    expect(text).toMatch(/step 4\/4 \[=+\] loss \d+\.\d{3} lr \d\.\de-\d+ tok\/s \d+ eta \d+s/);
    // Only a time budget: no total, so no bar and no ETA.
    text = '';
    const reporter = new ProgressReporter('bar', tty);
    reporter.update({ step: 7, total: null, loss: 1.5, lr: 1e-3, tokensPerSecond: 12, etaSeconds: null });
    reporter.stop();
    expect(text).toContain('step 7 loss 1.500 lr 1.0e-3 tok/s 12');
    expect(text).not.toContain('eta');
  });

  it('labelSmoothedCrossEntropy is what toyLoss trains on (sanity: training lowers the loss)', async () => {
    const model = buildToyModel({ ...TOY, dropout: 0 });
    const infos: StepInfo[] = [];
    await new Trainer(baseOptions(model, { maxSteps: 30, updateFreq: 1, lr: 0.05, clipNorm: 0, onStep: (s) => infos.push(s) })).train();
    expect(infos[infos.length - 1].nll).toBeLessThan(infos[0].nll * 0.7);
    void labelSmoothedCrossEntropy;
    void PAD;
  });

  it('a wasm abort in a step (the engine out of its 4 GB heap) is a one-line UserError that says how to go on', async () => {
    const model = buildToyModel(TOY);
    const aborting: LossFn<ToyBatch> = () => {
      throw new WebAssembly.RuntimeError('Aborted(). Build with -sASSERTIONS for more info.');
    };
    const run = new Trainer(baseOptions(model, { maxSteps: 2, lossFn: aborting })).train();
    await expect(run).rejects.toThrow(UserError);
    await expect(new Trainer(baseOptions(model, { maxSteps: 2, lossFn: aborting })).train()).rejects.toThrow(/ran out of memory.*`train\.maxTokens`.*resume/);
    // Any other failure is not dressed up as one.
    const other: LossFn<ToyBatch> = () => {
      throw new RangeError('something else');
    };
    await expect(new Trainer(baseOptions(model, { maxSteps: 2, lossFn: other })).train()).rejects.toThrow(RangeError);
    model.dispose();
  });
});
