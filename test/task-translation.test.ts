// End to end on the tiny copy-task fixture: train, reload, resume, decode, CLI translate/evaluate.
import * as tf from '@tensorflow/tfjs';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIo } from '../src/cli/io.ts';
import { runCli } from '../src/cli/main.ts';
import { beamSearch } from '../src/decode/beam-search.ts';
import { greedyDecode } from '../src/decode/greedy.ts';
import { hasSentencePieceTrainer } from '../src/text/train-sentencepiece.ts';
import { fileIOHandler, loadCheckpoint } from '../src/train/checkpoint.ts';
import {
  evaluateTranslation,
  loadTranslator,
  sourceForModel,
  teacherForcedLoss,
  trainTranslation,
  translateLines,
  type TranslationTrainOptions,
} from '../src/tasks/translation.ts';
import { encodeSplit, TranslationBatches } from '../src/tasks/translation-data.ts';
import { resolveCheckpointDir } from '../src/tasks/run.ts';
import { checkSameRunData, readRunData } from '../src/tasks/run-data.ts';

const DATA = 'test/fixtures/tasks/copy';
const root = mkdtempSync(join(tmpdir(), 'ft-task-translation-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function tinyRun(out: string, train: Record<string, unknown>, extra: Partial<TranslationTrainOptions> = {}): TranslationTrainOptions {
  return {
    data: DATA,
    out: join(root, out),
    sourceLang: 'xx',
    targetLang: 'yy',
    preset: 'transformer_tiny',
    progress: 'none',
    overrides: { train: { logEvery: 5, ...train }, decode: { validBleuSamples: 8 } },
    ...extra,
  };
}

/** The train records of metrics.jsonl, without the wall-clock fields. */
function trainRecords(out: string): { step: number; loss: number; lr: number; gradNorm: number }[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
    .filter((r) => r.type === 'train')
    .map((r) => ({ step: r.step, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm }));
}

describe('translation task on the copy fixture', () => {
  let out: string;
  beforeAll(async () => {
    out = join(root, 'base');
    await trainTranslation(tinyRun('base', { maxSteps: 40, validEvery: 40, saveEvery: 20 }));
  });

  it('trains: the training loss decreases and checkpoints are written', () => {
    const records = trainRecords(out);
    expect(records.map((r) => r.step)).toEqual([5, 10, 15, 20, 25, 30, 35, 40]);
    expect(records[records.length - 1].loss).toBeLessThan(0.8 * records[0].loss);
    for (const name of ['checkpoint_last', 'checkpoint_best']) {
      for (const file of ['model.json', 'weights.bin', 'config.json', 'spm.model', 'trainer-state.json']) {
        expect(existsSync(join(out, name, file)), `${name}/${file}`).toBe(true);
      }
    }
    const config = JSON.parse(readFileSync(join(out, 'checkpoint_last', 'config.json'), 'utf8'));
    expect(config).toMatchObject({ task: 'translation', preset: 'transformer_tiny', sourceLang: 'xx', targetLang: 'yy', train: { maxSteps: 40 } });
  });

  it('reloads from the checkpoint with identical outputs', async () => {
    const dir = join(out, 'checkpoint_last');
    const state = JSON.parse(readFileSync(join(dir, 'trainer-state.json'), 'utf8'));
    const translator = await loadTranslator(dir);
    try {
      const valid = await encodeSplit(DATA, 'valid', translator.config, translator.tokenizer, () => undefined);
      const batches = new TranslationBatches(valid, translator.tokenizer, { maxTokens: 512, shuffle: false, seed: 0 });
      // The trainer validated the in-memory model at step 40; the reloaded one scores the same.
      const reloaded = await teacherForcedLoss(translator.model, batches, translator.tokenizer.padId);
      expect(reloaded.loss).toBeCloseTo(state.lastValidation.loss, 5);

      // tfjs' own loader reads the same model.json + weights.bin and computes the same logits.
      const viaTfjs = await tf.loadLayersModel(fileIOHandler(dir));
      const source = tf.tensor2d([[5, 6, 7, 3]], [1, 4], 'int32');
      const targetIn = tf.tensor2d([[2, 5, 6]], [1, 3], 'int32');
      const a = translator.model.forward(source, targetIn, false);
      const b = viaTfjs.predict([source, targetIn]) as tf.Tensor;
      expect(Array.from(await a.data())).toEqual(Array.from(await b.data()));
      tf.dispose([source, targetIn, a, b]);
      viaTfjs.dispose();
    } finally {
      translator.dispose();
    }
  });

  it('decoding and scoring leave no tensors behind', async () => {
    const translator = await loadTranslator(join(out, 'checkpoint_last'));
    try {
      const lines = ['ka lo mi', 'vu we ba de'];
      await translateLines(translator, lines, { beam: 2 }); // first use builds the model's constant tables
      const before = tf.memory().numTensors;
      await translateLines(translator, lines, { beam: 2 });
      await translateLines(translator, lines, { beam: 1 });
      const valid = await encodeSplit(DATA, 'valid', translator.config, translator.tokenizer, () => undefined);
      await teacherForcedLoss(translator.model, new TranslationBatches(valid, translator.tokenizer, { maxTokens: 512, shuffle: false, seed: 0 }), translator.tokenizer.padId);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      translator.dispose();
    }
  });

  it('beam search with beam 1 equals greedy decoding', async () => {
    const translator = await loadTranslator(join(out, 'checkpoint_last'));
    try {
      const sources = ['ka lo mi nu', 'vu we', 'ba de fo gu hi'].map((s) =>
        sourceForModel(translator.tokenizer.encode(s), translator.tokenizer.eosId, translator.model.config.maxPositions),
      );
      const greedy = await greedyDecode(translator.model, sources, { maxLenB: 10 });
      const beam = await beamSearch(translator.model, sources, { beamSize: 1, maxLenB: 10 });
      expect(beam.map((h) => h[0].tokens)).toEqual(greedy.map((h) => h.tokens));
    } finally {
      translator.dispose();
    }
  });

  it('translate reads stdin and writes one detokenized line per input line', async () => {
    const io = captureIo('ka lo mi\n\nvu fo ka ☃ ñ\n');
    const code = await runCli(['translate', '--checkpoint', out, '--beam', '2'], io);
    expect(io.err).toBe('');
    expect(code).toBe(0);
    const lines = io.out.split('\n');
    expect(lines).toHaveLength(4); // three translations and the final newline
    expect(lines[1]).toBe(''); // an empty line translates to an empty line
  });

  it('translate --input FILE gives what stdin gives; evaluate --output writes the translations', async () => {
    const input = join(root, 'input.txt');
    writeFileSync(input, 'ka lo mi\nvu fo\n');
    const fromFile = captureIo();
    expect(await runCli(['translate', '--checkpoint', out, '--input', input], fromFile)).toBe(0);
    const fromStdin = captureIo('ka lo mi\nvu fo\n');
    expect(await runCli(['translate', '--checkpoint', out], fromStdin)).toBe(0);
    expect(fromFile.out).toBe(fromStdin.out);
    const hyps = join(root, 'hyps.txt');
    const io = captureIo();
    const args = ['evaluate', 'translation', '--checkpoint', out, '--data', DATA, '--split', 'valid', '--beam', '1', '--decode-engine', 'tfjs'];
    expect(await runCli([...args, '--output', hyps], io), io.err).toBe(0);
    expect(readFileSync(hyps, 'utf8').split('\n')).toHaveLength(25);
    expect(io.out).toMatch(/^BLEU\|nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:\S+ = \d+\.\d\d /);
    expect(io.out).toMatch(/\nchrF2\|nrefs:1\|.* = \d+\.\d\d\nperplexity = \d+\.\d\d \(token-level, valid split, 24 sentences, beam 1, decoded by tfjs\)/);
    // --json carries the engine too: the one that decoded, not the one asked for.
    const asJson = captureIo();
    expect(await runCli([...args, '--json'], asJson), asJson.err).toBe(0);
    expect(JSON.parse(asJson.out)).toMatchObject({ engine: 'tfjs', beam: 1, numSentences: 24 });
  });

  it('evaluate translation prints BLEU with its signature, chrF and perplexity', async () => {
    const io = captureIo();
    const code = await runCli(['evaluate', 'translation', '--checkpoint', out, '--data', DATA, '--split', 'test', '--beam', '2', '--json'], io);
    expect(io.err).toBe('');
    expect(code).toBe(0);
    const result = JSON.parse(io.out);
    expect(result).toMatchObject({ split: 'test', numSentences: 24, beam: 2 });
    expect(result.signature).toMatch(/^nrefs:1\|case:mixed\|eff:no\|tok:13a\|smooth:exp\|version:/);
    expect(result.perplexity).toBeGreaterThan(1);
    expect(Number.isFinite(result.bleu) && Number.isFinite(result.chrf)).toBe(true);
  });

  it('resuming equals training without interruption (same weights, same loss)', async () => {
    const common = { validEvery: 10, saveEvery: 5 };
    await trainTranslation(tinyRun('straight', { ...common, maxSteps: 20 }, { overrides: { model: { dropout: 0.1 }, train: { ...common, maxSteps: 20, logEvery: 5 }, decode: { validBleuSamples: 4 } } }));
    const halves = tinyRun('halves', { ...common, maxSteps: 10 }, { overrides: { model: { dropout: 0.1 }, train: { ...common, maxSteps: 10, logEvery: 5 }, decode: { validBleuSamples: 4 } } });
    await trainTranslation(halves);
    await trainTranslation({ ...halves, preset: undefined, resume: true, overrides: { train: { maxSteps: 20 } } });
    const straight = join(root, 'straight');
    const resumed = join(root, 'halves');
    expect(readFileSync(join(resumed, 'checkpoint_last', 'weights.bin')).equals(readFileSync(join(straight, 'checkpoint_last', 'weights.bin')))).toBe(true);
    expect(trainRecords(resumed)).toEqual(trainRecords(straight));
  });

  it('resume refuses a changed architecture key by name and accepts a changed keepLast (one policy: src/tasks/run.ts)', async () => {
    const halves = join(root, 'halves');
    const resumeWith = (overrides: TranslationTrainOptions['overrides']) =>
      trainTranslation({ data: DATA, out: halves, resume: true, progress: 'none', overrides });
    // The library names the option by its config key (the CLI shows --resume; test/cli.test.ts).
    await expect(resumeWith({ model: { numHeads: 4 }, train: { maxSteps: 20 } })).rejects.toThrow(/^`resume`: cannot change 'model\.numHeads' of an existing run/);
    await expect(resumeWith({ model: { attentionBias: false } })).rejects.toThrow(/cannot change 'model\.attentionBias'/);
    await expect(resumeWith({ train: { lr: 1 } })).rejects.toThrow(/cannot change 'train\.lr'/);
    // Budget already spent (20 steps): nothing trains, the changed keys are accepted.
    const summary = await resumeWith({ train: { keepLast: 3, maxSteps: 20 } });
    expect(summary.steps).toBe(20);
    expect(summary.config.train.keepLast).toBe(3);
  });

  it('names options by their config keys in backticks, for a CLI to show as flags (test/cli.test.ts, test/robust-cli.test.ts, test/bad-input.test.ts)', async () => {
    const halves = join(root, 'halves');
    await expect(trainTranslation({ ...tinyRun('halves', { maxSteps: 30 }) })).rejects.toThrow(/^`out` .*halves: already holds checkpoint_last; pass `resume` to continue it/);
    await expect(trainTranslation(tinyRun('no-data', { maxSteps: 1 }, { data: join(root, 'nope') }))).rejects.toThrow(/^`data`: folder '.*nope' does not exist$/);
    await expect(trainTranslation(tinyRun('no-tok', { maxSteps: 1 }, { tokenizer: join(root, 'missing.model') }))).rejects.toThrow(/^`tokenizer`: '.*missing\.model' does not exist$/);
    expect(() => resolveCheckpointDir(join(root, 'absent'))).toThrow(/^`checkpoint`: '.*absent' does not exist$/);
    await expect(trainTranslation({ data: DATA, out: halves, resume: true, progress: 'none', tokenizer: 'test/fixtures/text/bpe' })).rejects.toThrow(
      /^`resume`: `tokenizer` test\/fixtures\/text\/bpe is not the tokenizer the run in .*halves was trained with \(kept in its checkpoint\); leave `tokenizer` out to resume$/,
    );
    const stored = readRunData(halves)!;
    const other = { ...stored, data: '/elsewhere', files: stored.files.map((f) => ({ ...f, sha256: '0'.repeat(64) })) };
    expect(() => checkSameRunData(halves, stored, other, 'data')).toThrow(/^`resume`: `data` \/elsewhere: train\.xx has other content compared with the data the run in .*halves was started on/);
  });

  it('a damaged config.json is a one-line error naming the file', async () => {
    const damaged = join(root, 'damaged');
    cpSync(join(root, 'halves'), damaged, { recursive: true });
    const file = join(damaged, 'checkpoint_last', 'config.json');
    writeFileSync(file, '{"task": "translation", ');
    const err = await trainTranslation({ data: DATA, out: damaged, resume: true, progress: 'none' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toContain(`${file}: not valid JSON`);
    expect((err as Error).message).not.toContain('\n');
  });

  it('returns the config, the cumulative training time and the full-rank parameter count', async () => {
    const summary = await trainTranslation(
      tinyRun('factorized', { maxSteps: 2, validEvery: 2 }, { overrides: { model: { attentionRank: 3, linearRankScale: 0.25 }, train: { maxSteps: 2, validEvery: 2 } } }),
    );
    expect(summary.config.model.attentionRank).toBe(3);
    expect(summary.wallSeconds).toBeGreaterThan(0);
    expect(summary.numParameters).toBeLessThan(summary.fullRankParameters);
    const dense = await trainTranslation(tinyRun('dense', { maxSteps: 1, validEvery: 1 }));
    expect(dense.fullRankParameters).toBe(dense.numParameters);
    expect(summary.fullRankParameters).toBe(dense.numParameters);
  });
});

describe('copy task', () => {
  // The proof that the whole loop learns: d 64 (the tiny preset's 32 learns too, only slower),
  // 300 updates of ~1000 tokens; BLEU passes 90 after about 150-250 updates, depending on the engine's numerics.
  it('a tiny model learns to copy: near-perfect BLEU on the test split', { timeout: 400_000 }, async () => {
    const out = join(root, 'copy');
    const train = { maxSteps: 300, validEvery: 300, saveEvery: 300, lr: 0.005, warmupUpdates: 50, maxTokens: 1024, logEvery: 50 };
    await trainTranslation({
      ...tinyRun('copy', train),
      overrides: { model: { modelDim: 64, ffnDim: 128 }, train, decode: { validBleuSamples: 0 } },
    });
    const result = await evaluateTranslation({ checkpoint: out, data: DATA, split: 'test', beam: 2 });
    expect(result.bleu).toBeGreaterThan(90);
    expect(result.chrf).toBeGreaterThan(90);
  });
});

describe('tokenizer training', () => {
  it('trains and stores a SentencePiece model when the data folder has none', async (ctx) => {
    if (!(await hasSentencePieceTrainer())) {
      console.log('skipped: spm_train is not installed (apt install sentencepiece)');
      ctx.skip();
    }
    const data = join(root, 'no-tokenizer');
    cpSync(DATA, data, { recursive: true, filter: (f) => !f.endsWith('.model') && !f.endsWith('.ids.bin') });
    const out = join(root, 'trained-tokenizer');
    await trainTranslation({ ...tinyRun('trained-tokenizer', { maxSteps: 2, validEvery: 2 }), data, overrides: { train: { maxSteps: 2, validEvery: 2 }, data: { vocabSize: 40 }, decode: { validBleuSamples: 2 } } });
    const ckpt = await loadCheckpoint(join(out, 'checkpoint_last'));
    expect(ckpt.tokenizerFiles.map((f) => f.split('/').pop())).toContain('spm.model');
    expect(existsSync(join(out, `.tokenizer-${process.pid}`))).toBe(false);
    const translator = await loadTranslator(out);
    expect(translator.tokenizer.vocabSize).toBe(40);
    translator.dispose();
  });
});
