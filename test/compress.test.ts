// Compressing a trained translation model (tasks/compress.ts, the `compress` command) and
// fine-tuning it (`train translation --init-from`), on the tiny copy-task fixture.
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FactorizedMultiHeadAttention } from '../src/attention/factorized-attention.ts';
import { captureIo } from '../src/cli/io.ts';
import { runCli } from '../src/cli/main.ts';
import { FactorizedDense } from '../src/factorized/dense.ts';
import { fromArray, matmul, svd } from '../src/factorized/linalg.ts';
import { compressTranslation, type CompressSummary } from '../src/tasks/compress.ts';
import { loadTranslator, trainTranslation, type LoadedTranslator } from '../src/tasks/translation.ts';

const DATA = 'test/fixtures/tasks/copy';
const root = mkdtempSync(join(tmpdir(), 'ft-compress-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const teacher = join(root, 'teacher');

beforeAll(async () => {
  // Untied output projection, so that --linear has one to convert too.
  await trainTranslation({
    data: DATA,
    out: teacher,
    sourceLang: 'xx',
    targetLang: 'yy',
    preset: 'transformer_tiny',
    progress: 'none',
    overrides: { model: { tieOutput: false }, train: { maxSteps: 30, validEvery: 30, saveEvery: 30, logEvery: 10 }, decode: { validBleuSamples: 0 } },
  });
});

/** Teacher-forced logits of both models on the same small batch. */
function logitsOf(t: LoadedTranslator): Float32Array {
  return tf.tidy(() => {
    const source = tf.tensor2d([[5, 6, 7, 8, t.model.eosId], [9, 10, 11, t.model.eosId, t.model.padId]], [2, 5], 'int32');
    const target = tf.tensor2d([[t.model.bosId, 5, 6, 7], [t.model.bosId, 9, 10, 11]], [2, 4], 'int32');
    return t.model.forward(source, target, false).dataSync() as Float32Array;
  });
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Row-major [m, n] product of host [m, k] and [n, k] (a bᵀ), in Float64. */
function product(a: ArrayLike<number>, b: ArrayLike<number>, m: number, n: number, k: number) {
  return matmul(fromArray(m, k, Float64Array.from(a)), fromArray(n, k, Float64Array.from(b)), true);
}

/** The best rank-r approximation of a host matrix, by a full SVD of the formed product. */
function truncated(p: { rows: number; cols: number; data: Float64Array }, r: number): Float64Array {
  const { u, s, v } = svd(p);
  const k = s.length;
  const out = new Float64Array(p.rows * p.cols);
  for (let i = 0; i < p.rows; i++) {
    for (let j = 0; j < p.cols; j++) {
      let acc = 0;
      for (let c = 0; c < r; c++) acc += u.data[i * k + c] * s[c] * v.data[j * k + c];
      out[i * p.cols + j] = acc;
    }
  }
  return out;
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Head h's product as fromDenseAttention factorizes it: [Wq_h; bq_h] [Wk_h; bk_h]ᵀ ([d+1, d+1])
 * or [Wv_h; bv_h] Wo_h ([d+1, d]) — the biases ride along as an extra row.
 */
function headProduct(layer: FactorizedMultiHeadAttention, kind: 'qk' | 'ov', h: number) {
  const d = layer.modelDim!;
  const r = layer.rank;
  const withBias = (w: tf.LayerVariable, b: tf.LayerVariable) => {
    const out = new Float64Array((d + 1) * r);
    out.set((w.read().dataSync() as Float32Array).slice(h * d * r, (h + 1) * d * r));
    out.set((b.read().dataSync() as Float32Array).slice(h * r, (h + 1) * r), d * r);
    return out;
  };
  if (kind === 'qk') return product(withBias(layer.queryFactor, layer.queryBias!), withBias(layer.keyFactor, layer.keyBias!), d + 1, d + 1, r);
  // outputFactor is [H, r, d]: head h's block transposed is [d, r].
  const o = (layer.outputFactor.read().dataSync() as Float32Array).slice(h * r * d, (h + 1) * r * d);
  const oT = new Float64Array(d * r);
  for (let c = 0; c < r; c++) for (let j = 0; j < d; j++) oT[j * r + c] = o[c * d + j];
  return product(withBias(layer.valueFactor, layer.valueBias!), oT, d + 1, d, r);
}

function attentionLayers(t: LoadedTranslator): FactorizedMultiHeadAttention[] {
  return [...t.model.encoderBlocks, ...t.model.decoderBlocks].flatMap((b) => b.sublayers().filter((l) => l instanceof FactorizedMultiHeadAttention));
}

describe('compress', () => {
  it('at rank scale 1 (and the FFN and output projection at full rank) reproduces the model exactly; no tensors leak', async () => {
    const before = tf.memory().numTensors;
    const summary = await compressTranslation({ checkpoint: teacher, rankScale: 1, linear: true, out: join(root, 'full') });
    expect(tf.memory().numTensors).toBe(before);
    for (const e of Object.values(summary.errors)) expect(e.max).toBeLessThan(1e-5);
    expect(Object.keys(summary.errors).sort()).toEqual(['FFN', 'attention OV', 'attention QK', 'output projection']);
    const [a, b] = [await loadTranslator(teacher), await loadTranslator(join(root, 'full'))];
    try {
      expect(b.config.model.linearRankScale).toBe(1);
      expect(maxAbsDiff(logitsOf(a), logitsOf(b))).toBeLessThan(1e-4);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  let half: CompressSummary;
  it('at a lower rank every head product is the truncated SVD of the trained one; the folder is a complete checkpoint', async () => {
    half = await compressTranslation({ checkpoint: teacher, rankScale: 0.5, linear: true, out: join(root, 'half'), data: DATA });
    expect(half.attentionRank).toEqual({ before: 16, after: 8 });
    expect(half.parameters.after).toBeLessThan(half.parameters.before);
    expect(half.validLoss!.after).toBeGreaterThan(0);
    expect(half.errors['attention QK'].max).toBeGreaterThan(0);

    const dir = join(root, 'half', 'checkpoint_last');
    expect(readdirSync(dir).sort()).toEqual(['SHA256SUMS', 'config.json', 'model.json', 'spm.model', 'weights.bin']);
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    expect(config.model).toMatchObject({ attentionRankScale: 0.5, attentionRank: null, linearRankScale: 0.5 });

    const [a, b] = [await loadTranslator(teacher), await loadTranslator(join(root, 'half'))];
    try {
      const [la, lb] = [attentionLayers(a), attentionLayers(b)];
      expect(la.length).toBe(3); // encoder self, decoder self and cross
      const errors: number[] = [];
      la.forEach((src, i) => {
        let dropped = 0;
        let total = 0;
        for (let h = 0; h < src.numHeads; h++) {
          // The compressed layer scales its logits by 1/√8, the trained one by 1/√16: QK absorbs √(8/16).
          const qk = truncated(headProduct(src, 'qk', h), 8).map((x) => x * Math.sqrt(8 / 16));
          expect(maxAbs(headProduct(lb[i], 'qk', h).data, qk)).toBeLessThan(1e-4);
          const full = headProduct(src, 'ov', h);
          const kept = truncated(full, 8);
          expect(maxAbs(headProduct(lb[i], 'ov', h).data, kept)).toBeLessThan(1e-4);
          full.data.forEach((x, k) => {
            dropped += (x - kept[k]) ** 2;
            total += x ** 2;
          });
        }
        errors.push(Math.sqrt(dropped / total));
      });
      // The reported error: ‖P − P_r‖_F / ‖P‖_F over a layer's heads, averaged over the layers.
      expect(half.errors['attention OV'].mean).toBeCloseTo(errors.reduce((x, y) => x + y) / errors.length, 4);
      expect(half.errors['attention OV'].max).toBeCloseTo(Math.max(...errors), 4);
      // The FFN: U·V_s is the truncated SVD (rank 16 of 32) of the trained kernel.
      const kernel = (a.model.encoderBlocks[0].sublayers()[2] as tf.layers.Layer).getWeights()[0];
      const ffn = b.model.encoderBlocks[0].sublayers()[2] as FactorizedDense;
      expect(ffn).toBeInstanceOf(FactorizedDense);
      const [u, vs] = ffn.getWeights();
      const got = tf.tidy(() => tf.matMul(u as tf.Tensor2D, vs as tf.Tensor2D).dataSync());
      const want = truncated(fromArray(32, 64, Float64Array.from(kernel.dataSync())), 16);
      expect(maxAbs(got, want)).toBeLessThan(1e-4);
      // And the compressed model still translates (evaluate / translate read the folder).
      expect(logitsOf(b).every(Number.isFinite)).toBe(true);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it('`train translation --init-from` starts from the compressed model: loss continuous with it; resume works; initFrom recorded', async () => {
    const ft = join(root, 'ft');
    const args = ['train', 'translation', '--data', DATA, '--out', ft, '--init-from', join(root, 'half'), '--progress', 'none', '--valid-every', '1', '--log-every', '1', '--valid-bleu-samples', '0'];
    // A learning rate of ~0: the validation after the first update is the compressed model's.
    const io = captureIo();
    expect(await runCli([...args, '--max-steps', '1', '--lr', '1e-9', '--resume'], io), io.err).toBe(0);
    const metrics = () => readFileSync(join(ft, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const valid = metrics().filter((r) => r.type === 'valid');
    expect(valid[0].loss).toBeCloseTo(half.validLoss!.after, 4);
    const config = JSON.parse(readFileSync(join(ft, 'checkpoint_last', 'config.json'), 'utf8'));
    expect(config.initFrom).toBe(join(root, 'half', 'checkpoint_last'));
    expect(config.model.attentionRankScale).toBe(0.5);
    expect(config.preset).toBe('transformer_tiny');
    expect(io.out).toContain(`initial model: ${join(root, 'half', 'checkpoint_last')}`);
    // The same command line again (a restart loop) resumes the run, here to a larger budget.
    const io2 = captureIo();
    expect(await runCli([...args, '--max-steps', '3', '--lr', '1e-9', '--resume'], io2), io2.err).toBe(0);
    expect(io2.out).toContain('trained 3 steps');
    expect(metrics().filter((r) => r.type === 'train').map((r) => r.step)).toEqual([1, 2, 3]);
    // Resuming with another source is refused.
    const io3 = captureIo();
    expect(await runCli([...args.map((a) => (a === join(root, 'half') ? teacher : a)), '--max-steps', '4', '--resume'], io3)).not.toBe(0);
    expect(io3.err).toMatch(/was started from .*half.*not from --init-from/);
  });

  it('a fine-tuning from the compressed model trains (from a compress output and from any checkpoint)', async () => {
    const ft = join(root, 'ft-real');
    const summary = await trainTranslation({ data: DATA, out: ft, initFrom: join(root, 'half'), progress: 'none', overrides: { train: { maxSteps: 20, validEvery: 20, logEvery: 5 }, decode: { validBleuSamples: 0 } } });
    expect(summary.finalValidLoss).toBeLessThan(half.validLoss!.after);
    const fromTeacher = await trainTranslation({ data: DATA, out: join(root, 'ft-teacher'), initFrom: teacher, progress: 'none', overrides: { model: { dropout: 0.1 }, train: { maxSteps: 2, validEvery: 2 }, decode: { validBleuSamples: 0 } } });
    expect(fromTeacher.config.model.dropout).toBe(0.1);
    expect(fromTeacher.config.model.tieOutput).toBe(false);
  });

  it('refuses: an architecture flag with --init-from, --out inside the source, an existing --out, a wrong checkpoint, a rank scale out of range', async () => {
    const cli = async (argv: string[]) => {
      const io = captureIo();
      const code = await runCli(argv, io);
      expect(code).not.toBe(0);
      expect(io.err.trim().split('\n')).toHaveLength(1);
      return io.err;
    };
    const train = ['train', 'translation', '--data', DATA, '--max-steps', '1', '--progress', 'none'];
    expect(await cli([...train, '--out', join(root, 'x1'), '--init-from', join(root, 'half'), '--rank-scale', '0.25'])).toMatch(/cannot set 'model.attentionRankScale' in a run started from a checkpoint/);
    expect(await cli([...train, '--out', join(root, 'x2'), '--init-from', join(root, 'half'), '--tokenizer', join(DATA, 'spm.model')])).toMatch(/--tokenizer: cannot be combined with --init-from/);
    // The source inside --out: the run's checkpoints could replace it.
    expect(await cli([...train, '--out', root, '--init-from', join(root, 'half')])).toMatch(/lies in --out/);
    expect(await cli([...train, '--out', join(root, 'x3'), '--init-from', join(root, 'nowhere')])).toMatch(/--init-from: .*nowhere' does not exist/);
    expect(existsSync(join(root, 'x1'))).toBe(false);

    const compress = (out: string, ...more: string[]) => ['compress', '--checkpoint', teacher, '--out', join(root, out), ...more];
    mkdirSync(join(root, 'taken'));
    writeFileSync(join(root, 'taken', 'notes.txt'), 'mine');
    expect(await cli(compress('taken', '--rank-scale', '0.5'))).toMatch(/--out .*taken: already exists and is not empty/);
    expect(readFileSync(join(root, 'taken', 'notes.txt'), 'utf8')).toBe('mine');
    expect(await cli(['compress', '--checkpoint', join(root, 'nowhere'), '--rank-scale', '0.5', '--out', join(root, 'c1')])).toMatch(/--checkpoint: .*nowhere' does not exist/);
    expect(await cli(['compress', '--checkpoint', DATA, '--rank-scale', '0.5', '--out', join(root, 'c1')])).toMatch(/holds no model.json/);
    for (const bad of ['0', '1.5', '-1']) expect(await cli(compress('c1', '--rank-scale', bad))).toMatch(/--rank-scale: must be a number in \(0, 1\]/);
    // Compress only lowers the rank: the rank-0.5 model cannot be "compressed" to 1.
    expect(await cli(['compress', '--checkpoint', join(root, 'half'), '--rank-scale', '1', '--out', join(root, 'c1')])).toMatch(/rank 16, above the checkpoint's 8/);
    expect(existsSync(join(root, 'c1'))).toBe(false);
  });

  it('CLI: prints parameters, errors by layer type and the validation loss before and after', async () => {
    const io = captureIo();
    expect(await runCli(['compress', '--checkpoint', teacher, '--rank-scale', '0.25', '--out', join(root, 'quarter'), '--data', DATA], io), io.err).toBe(0);
    expect(io.out).toMatch(/attention rank per head 16 → 4/);
    expect(io.out).toMatch(/parameters [\d,]+ → [\d,]+ \(\d+\.\d %\)/);
    expect(io.out).toMatch(/relative Frobenius error, attention QK: mean 0\.\d{4}, max 0\.\d{4} over 3 layers/);
    expect(io.out).toMatch(/valid loss \d+\.\d{4} → \d+\.\d{4}/);
    expect(io.out).not.toMatch(/FFN/);
  });
});
