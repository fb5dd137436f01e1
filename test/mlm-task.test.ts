import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIo } from '../src/cli/io.ts';
import { buildProgram, runCli } from '../src/cli/main.ts';
import { mlmOverridesFromFlags } from '../src/cli/commands/mlm.ts';
import { configKeysOfFlags, flagNames, withFlagNames } from '../src/cli/flag-names.ts';
import { SeededRandom } from '../src/random.ts';
import { maskingRandom } from '../src/text/masking.ts';
import { loadTokenizer } from '../src/text/tokenizer.ts';
import { MOBY_TOKENIZER } from '../src/text/defaults.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';
import { parseStoredMlmConfig, resolveMlmConfig } from '../src/tasks/mlm-config.ts';
import { evaluationMasker, loadPackedSplit, maskerFor, resolveMlmData } from '../src/tasks/mlm-data.ts';
import { evaluateMlm, trainMlm, type MlmTrainOptions, type MlmTrainSummary } from '../src/tasks/mlm.ts';

// A tiny WordPiece vocabulary (the text fixtures): whole words plus letters and ## pieces.
const WORDPIECE = join(import.meta.dirname, 'fixtures/text/wordpiece');
const WORDS = 'the and of to in he god lord said light earth heaven was there let be beginning created'.split(' ');

const root = mkdtempSync(join(tmpdir(), 'mlm-task-'));
const dataDir = join(root, 'data');
const outDir = join(root, 'run');
afterAll(() => rmSync(root, { recursive: true, force: true }));

/**
 * Sentences of one word repeated four times: without context a masked word is one of 18 (unigram
 * perplexity ≈ 18); with context it is the word next to it. A model that uses context wins big.
 */
function writeCorpus(): void {
  const rng = new SeededRandom(1);
  const make = (n: number) =>
    Array.from({ length: n }, () => Array(4).fill(WORDS[rng.nextInt(WORDS.length)]).join(' ')).join('\n') + '\n';
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, 'train.txt'), make(400));
  writeFileSync(join(dataDir, 'valid.txt'), make(80));
  writeFileSync(join(dataDir, 'test.txt'), make(80));
}

const TRAIN_FLAGS = { train: { maxSteps: 70, validEvery: 35, maxTokens: 256, lr: 1e-2, warmupUpdates: 5, logEvery: 10 }, data: { maxLength: 16 } };

let summary: MlmTrainSummary;

beforeAll(async () => {
  writeCorpus();
  summary = await trainMlm({ data: dataDir, tokenizer: WORDPIECE, out: outDir, preset: 'bert_tiny', overrides: TRAIN_FLAGS, progress: 'none' });
});

describe('trainMlm', () => {
  it('learns from context: validation perplexity drops well below the unigram perplexity in a short run', () => {
    const v = summary.validation!;
    expect(summary.steps).toBe(70);
    expect(v.unigramPerplexity).toBeGreaterThan(12);
    expect(v.perplexity).toBeLessThan(0.3 * v.unigramPerplexity);
    expect(v.accuracy).toBeGreaterThan(0.5);
    const records = readFileSync(join(outDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const valid = records.filter((r) => r.type === 'valid');
    expect(valid.map((r) => r.step)).toEqual([35, 70]);
    expect(valid[1].perplexity).toBeLessThan(valid[0].perplexity);
    expect(records.some((r) => r.type === 'train')).toBe(true);
  });

  it('writes a checkpoint with its config and the tokenizer, loadable with tf.loadLayersModel', async () => {
    const dir = join(outDir, 'checkpoint_last');
    const ckpt = await loadCheckpoint(dir);
    const config = parseStoredMlmConfig(ckpt.config, 'config.json');
    expect(config.preset).toBe('bert_tiny');
    expect(config.data.maxLength).toBe(16);
    expect(existsSync(join(dir, 'tokenizer.json'))).toBe(true);
    const model = await ckpt.loadModel();
    expect(model.inputs.length).toBe(2);
    model.dispose();
  });
});

describe('evaluateMlm', () => {
  it('reproduces the last validation from the checkpoint (same masks, same weights)', async () => {
    const e = await evaluateMlm({ checkpoint: join(outDir, 'checkpoint_last'), data: dataDir, split: 'valid' });
    expect(e.perplexity).toBeCloseTo(summary.validation!.perplexity, 4);
    expect(e.unigramPerplexity).toBeCloseTo(summary.validation!.unigramPerplexity, 6);
    expect(e.accuracy).toBeCloseTo(summary.validation!.accuracy, 6);
  });

  it('reports exp(mean NLL over the masked positions) and the unigram perplexity, as computed independently here', async () => {
    const checkpoint = join(outDir, 'checkpoint_last');
    const e = await evaluateMlm({ checkpoint, data: dataDir, split: 'test', seed: 7 });
    // Independently: mask every test sequence with the same seed, take logits at EVERY position
    // (no gather inside the model doing the work), log-softmax in float64 here.
    const tokenizer = await loadTokenizer(WORDPIECE);
    const config = parseStoredMlmConfig((await loadCheckpoint(checkpoint)).config, 'config.json');
    const masker = evaluationMasker(tokenizer);
    expect(config.data.maskProbability).toBe(0.15);
    const sequences = await loadPackedSplit(dataDir, 'test', tokenizer, 16);
    const model = await (await loadCheckpoint(checkpoint)).loadModel();
    let nll = 0;
    let count = 0;
    let unigramNll = 0;
    // Unigram: relative frequencies of the train split's non-special tokens, add-0.01 smoothed.
    const counts = new Map<number, number>();
    let total = 0;
    for (const line of readFileSync(join(dataDir, 'train.txt'), 'utf8').trim().split('\n')) {
      for (const id of tokenizer.encode(line)) {
        counts.set(id, (counts.get(id) ?? 0) + 1);
        total++;
      }
    }
    const specials = 5; // [PAD] [UNK] [CLS] [SEP] [MASK] are ids 0–4
    const denominator = total + 0.01 * (tokenizer.vocabSize - specials);
    sequences.forEach((ids, i) => {
      const masked = masker.mask(ids, maskingRandom(7, 0, i));
      const all = Int32Array.from(ids, (_, t) => t);
      const logits = tf.tidy(() =>
        model.predict([tf.tensor2d(masked.input, [1, ids.length], 'int32'), tf.tensor2d(all, [1, ids.length], 'int32')]),
      ) as tf.Tensor;
      const rows = (logits.arraySync() as number[][][])[0];
      logits.dispose();
      masked.positions.forEach((t, k) => {
        const row = rows[t];
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
        nll += lse - row[masked.labels[k]];
        unigramNll -= Math.log(((counts.get(masked.labels[k]) ?? 0) + 0.01) / denominator);
        count++;
      });
    });
    model.dispose();
    expect(e.maskedTokens).toBe(count);
    expect(e.perplexity).toBeCloseTo(Math.exp(nll / count), 3);
    expect(e.unigramPerplexity).toBeCloseTo(Math.exp(unigramNll / count), 6);
    expect(e.ratioToUnigram).toBeCloseTo(e.perplexity / e.unigramPerplexity, 10);
  });

  it('uses a fixed masking seed: two evaluations agree, another seed masks other tokens; no tensor leaks', async () => {
    const checkpoint = join(outDir, 'checkpoint_last');
    const a = await evaluateMlm({ checkpoint, data: dataDir, split: 'test' });
    const tensorsBefore = tf.memory().numTensors;
    const b = await evaluateMlm({ checkpoint, data: dataDir, split: 'test' });
    const c = await evaluateMlm({ checkpoint, data: dataDir, split: 'test', seed: 99 });
    expect(tf.memory().numTensors).toBe(tensorsBefore);
    expect(a.perplexity).toBe(b.perplexity);
    expect(c.unigramPerplexity).not.toBe(a.unigramPerplexity);
  });
});

describe('MLM configuration and input errors', () => {
  it('names the file and key of a bad config, and cross-key mistakes', () => {
    const file = join(root, 'bad.json');
    writeFileSync(file, JSON.stringify({ model: { numLayer: 2 } }));
    expect(() => resolveMlmConfig({ configFile: file })).toThrow(new RegExp(`${file}.*unknown key 'model.numLayer'`));
    expect(() => resolveMlmConfig({ flags: { data: { maxLength: 1000 } } })).toThrow(/data.maxLength.*maxPositions/);
    expect(() => resolveMlmConfig({ preset: 'bert_giant' })).toThrow(/unknown preset 'bert_giant'/);
    const ok = resolveMlmConfig({ preset: 'bert_small', set: ['model.normFirst=true', 'train.lr=0.0005'] });
    expect(ok.model.normFirst).toBe(true);
    expect(ok.train.lr).toBe(0.0005);
    expect(ok.train.optimizer).toBe('adamw');
    expect(ok.train.schedule).toBe('linear');
  });

  it('takes the tokenizer from --tokenizer, else the data folder, else the shipped English SentencePiece model', async () => {
    expect((await resolveMlmData(dataDir, WORDPIECE)).tokenizerPath).toBe(WORDPIECE);
    expect((await resolveMlmData(WORDPIECE)).tokenizerPath).toBe(WORDPIECE); // a folder holding tokenizer.json
    const lines: string[] = [];
    expect((await resolveMlmData(dataDir, undefined, (l) => lines.push(l))).tokenizerPath).toBe(MOBY_TOKENIZER);
    expect(lines.join()).toMatch(/shipped English SentencePiece/);
    await expect(resolveMlmData(join(root, 'missing'))).rejects.toThrow(/`data`: folder .*missing does not exist/);
  });

  it('refuses a run without a stopping rule, a missing split and a tokenizer without a mask token', async () => {
    await expect(trainMlm({ data: dataDir, tokenizer: WORDPIECE, out: join(root, 'x') })).rejects.toThrow(/stopping rule/);
    const empty = join(root, 'empty');
    mkdirSync(empty, { recursive: true });
    await expect(
      trainMlm({ data: empty, tokenizer: WORDPIECE, out: join(root, 'y'), overrides: { train: { maxSteps: 1 } } }),
    ).rejects.toThrow(/train\.txt not found/);
    const tokenizer = await loadTokenizer(WORDPIECE);
    const noMask = Object.assign(Object.create(Object.getPrototypeOf(tokenizer)), tokenizer, { maskId: undefined });
    expect(() => maskerFor(noMask, resolveMlmConfig({}).data)).toThrow(/no mask token/);
  });
});

describe('CLI: evaluate mlm / train mlm', () => {
  /** The whole CLI in-process: config keys in messages are shown as the running command's flags. */
  async function run(argv: string[]) {
    const io = captureIo();
    const code = await runCli(argv, io);
    return { code, out: io.out, err: io.err };
  }

  it('prints the evaluation as JSON with perplexity, accuracy and unigramPerplexity', async () => {
    const r = await run(['evaluate', 'mlm', '--checkpoint', outDir, '--data', dataDir, '--split', 'test', '--json']);
    expect(r.code).toBe(0);
    const json = JSON.parse(r.out);
    expect(json.perplexity).toBeGreaterThan(1);
    expect(json.perplexity).toBeLessThan(json.unigramPerplexity);
    expect(json.accuracy).toBeGreaterThan(0);
    expect(json.checkpoint).toBe(join(outDir, 'checkpoint_best'));
  });

  it('resumes a run and extends its step budget', async () => {
    const r = await run(['train', 'mlm', '--data', dataDir, '--tokenizer', WORDPIECE, '--out', outDir, '--resume', '--max-steps', '75', '--progress', 'none']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/trained 75 steps/);
    expect(r.out).toMatch(/unigram baseline/);
  });

  it('reports user mistakes in one line with exit code 1', async () => {
    const r = await run(['evaluate', 'mlm', '--checkpoint', join(root, 'nope')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: --checkpoint: '.*nope' does not exist\n$/);
    const bad = await run(['train', 'mlm', '--data', dataDir, '--tokenizer', WORDPIECE, '--out', join(root, 'z'), '--max-steps', '0']);
    expect(bad.code).not.toBe(0);
  });

  it('--rank sets model.attentionRank, as in train translation; its errors name the key, and the flag where a message backticks it', async () => {
    const flags = ['train', 'mlm', '--data', dataDir, '--tokenizer', WORDPIECE, '--preset', 'bert_tiny', '--max-steps', '1', '--progress', 'none'];
    const out = join(root, 'rank');
    const r = await run([...flags, '--out', out, '--rank', '3']);
    expect(r.code, r.err).toBe(0);
    const stored = parseStoredMlmConfig(JSON.parse(readFileSync(join(out, 'checkpoint_last', 'config.json'), 'utf8')), 'config.json');
    expect(stored.model.attentionRank).toBe(3);
    // The layers were built with it: every encoder block's config (model.json) says attention rank 3.
    const ranks = [...readFileSync(join(out, 'checkpoint_last', 'model.json'), 'utf8').matchAll(/"attention_rank":\s*(\d+)/g)].map((m) => Number(m[1]));
    expect(ranks.length).toBeGreaterThan(0);
    expect(new Set(ranks)).toEqual(new Set([3]));
    // bert_tiny: d 32.
    const tooLarge = await run([...flags, '--out', join(root, 'rank-33'), '--rank', '33']);
    expect(tooLarge.code).toBe(1);
    expect(tooLarge.err).toMatch(/^error: .*'model\.attentionRank' 33 is larger than the model dimension 32\n$/);
    const negative = await run([...flags, '--out', join(root, 'rank-neg'), '--rank', '-2']);
    expect(negative.err).toMatch(/^error: .*'model\.attentionRank': Too small/);
    // A message that names the key in backticks shows the flag in `train mlm` too.
    const names = flagNames(buildProgram(captureIo()).commands.find((c) => c.name() === 'train')!.commands.find((c) => c.name() === 'mlm')!, configKeysOfFlags([mlmOverridesFromFlags]));
    expect(withFlagNames('raise `model.attentionRank`', names)).toBe('raise --rank');
  });

  it('--keep-last on --resume keeps that many checkpoint_<step> folders (keepLast may change on resume)', async () => {
    const flags = ['train', 'mlm', '--data', dataDir, '--tokenizer', WORDPIECE, '--preset', 'bert_tiny', '--progress', 'none', '--set', 'train.saveEvery=1'];
    const out = join(root, 'keep-last');
    expect((await run([...flags, '--out', out, '--max-steps', '2'])).code).toBe(0);
    const r = await run([...flags, '--out', out, '--resume', '--max-steps', '5', '--keep-last', '2']);
    expect(r.code, r.err).toBe(0);
    const kept = readdirSync(out).filter((f) => /^checkpoint_\d+$/.test(f)).sort();
    expect(kept).toEqual(['checkpoint_4', 'checkpoint_5']);
    const stored = parseStoredMlmConfig(JSON.parse(readFileSync(join(out, 'checkpoint_last', 'config.json'), 'utf8')), 'config.json');
    expect(stored.train.keepLast).toBe(2);
  });
});

describe('trainMlm resume: the one resume policy of both tasks (src/tasks/run.ts)', () => {
  const resumeWith = (overrides: MlmTrainOptions['overrides'], set?: string[]) =>
    trainMlm({ data: dataDir, tokenizer: WORDPIECE, out: outDir, resume: true, overrides, set, progress: 'none' });

  it('refuses a changed architecture key, naming it', async () => {
    await expect(resumeWith({ model: { numLayers: 2 }, train: { maxSteps: 80 } })).rejects.toThrow(/cannot change 'model\.numLayers' of an existing run/);
    await expect(resumeWith({ train: { maxSteps: 80 } }, ['model.attentionBias=false'])).rejects.toThrow(/cannot change 'model\.attentionBias'/);
    await expect(resumeWith({ data: { maskProbability: 0.3 }, train: { maxSteps: 80 } })).rejects.toThrow(/cannot change 'data\.maskProbability'/);
  });

  it('accepts a changed keepLast and stores it with the next checkpoint', async () => {
    const resumed = await resumeWith({ train: { keepLast: 2, maxSteps: 80 } });
    expect(resumed.steps).toBe(80);
    expect(resumed.config.train.keepLast).toBe(2);
    const stored = parseStoredMlmConfig(JSON.parse(readFileSync(join(outDir, 'checkpoint_last', 'config.json'), 'utf8')), 'config.json');
    expect(stored.train.keepLast).toBe(2);
    expect(stored.model).toEqual(summary.config.model);
  });

  it('reads a config.json written before model.attentionRank existed', () => {
    const stored = JSON.parse(readFileSync(join(outDir, 'checkpoint_last', 'config.json'), 'utf8'));
    delete stored.model.attentionRank;
    expect(parseStoredMlmConfig(stored, 'config.json').model.attentionRank).toBeNull();
  });

  it('a damaged config.json is a one-line error naming the file', async () => {
    const damaged = join(root, 'damaged');
    mkdirSync(join(damaged, 'checkpoint_last'), { recursive: true });
    const file = join(damaged, 'checkpoint_last', 'config.json');
    writeFileSync(file, '{"task": "mlm", ');
    const err = await trainMlm({ data: dataDir, out: damaged, resume: true, progress: 'none' }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON \\(`));
    expect((err as Error).message).not.toContain('\n');
  });

  it('returns the config, the cumulative training time and the full-rank parameter count', () => {
    expect(summary.config.preset).toBe('bert_tiny');
    expect(summary.wallSeconds).toBeGreaterThan(0);
    // bert_tiny is dense: full rank is itself.
    expect(summary.fullRankParameters).toBe(summary.numParameters);
  });
});
