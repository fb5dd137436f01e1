import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import { ensureDefaultMlmCorpus } from '../src/text/defaults.ts';
import { loadTokenizer } from '../src/text/tokenizer.ts';
import { hasSentencePieceTrainer, sentencePieceTrainArgs, trainSentencePiece } from '../src/text/train-sentencepiece.ts';

const haveTrainer = await hasSentencePieceTrainer();
if (!haveTrainer) console.log('text-train-spm: spm_train not found on PATH, skipping training tests (apt install sentencepiece)');

describe('trainSentencePiece', () => {
  it('passes the fixed special ids and deterministic settings to spm_train', () => {
    const dir = mkdtempSync(join(tmpdir(), 'spm-args-'));
    writeFileSync(join(dir, 'a.txt'), 'x\n');
    const args = sentencePieceTrainArgs({ input: join(dir, 'a.txt'), modelPrefix: join(dir, 'm'), vocabSize: 100 }, 'm', dir);
    expect(args).toEqual(
      expect.arrayContaining([
        '--input=a.txt',
        '--pad_id=0',
        '--unk_id=1',
        '--bos_id=2',
        '--eos_id=3',
        '--user_defined_symbols=<mask>',
        '--normalization_rule_name=nmt_nfkc',
        '--num_threads=1',
        '--shuffle_input_sentence=false',
        '--model_type=unigram',
      ]),
    );
    expect(() => sentencePieceTrainArgs({ input: join(dir, 'missing.txt'), modelPrefix: 'm', vocabSize: 100 })).toThrow(/input file not found/);
    expect(() => sentencePieceTrainArgs({ input: join(dir, 'a.txt'), modelPrefix: 'm', vocabSize: 2 })).toThrow(/vocabSize must be an integer ≥ 6/);
  });

  it('says how to install the trainer when it is missing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spm-missing-'));
    writeFileSync(join(dir, 'a.txt'), 'hello world\n');
    const err = await trainSentencePiece({ input: join(dir, 'a.txt'), modelPrefix: join(dir, 'm'), vocabSize: 10, trainer: '/nonexistent/spm_train' }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/^\/nonexistent\/spm_train not found on PATH; install .*apt install sentencepiece.*brew install sentencepiece.*pip/);
    expect(err.message).not.toContain('\n');
  });

  it.skipIf(!haveTrainer)('trains a model with the fixed special ids, byte-identical on retraining, that round-trips its text', async () => {
    const { dir: corpus } = await ensureDefaultMlmCorpus();
    const dir = mkdtempSync(join(tmpdir(), 'spm-train-'));
    const input = join(dir, 'valid.txt');
    writeFileSync(input, readFileSync(join(corpus, 'valid.txt'), 'utf8').split('\n').slice(0, 250).join('\n') + '\n');
    const first = await trainSentencePiece({ input, modelPrefix: join(dir, 'a'), vocabSize: 300 });
    expect(first).toBe(join(dir, 'a.model'));
    const bytes = readFileSync(first);
    await trainSentencePiece({ input, modelPrefix: join(dir, 'a'), vocabSize: 300 });
    expect(readFileSync(first).equals(bytes)).toBe(true);
    const t = await loadTokenizer(first);
    expect([t.vocabSize, t.padId, t.unkId, t.bosId, t.eosId, t.maskId]).toEqual([300, 0, 1, 2, 3, 4]);
    const lines = readFileSync(input, 'utf8').split('\n').slice(0, 100);
    expect(lines.filter((l) => t.decode(t.encode(l)) !== l)).toEqual([]);
  });

  it.skipIf(!haveTrainer)('gives a model without a pad piece an extra id for padding, which decodes to nothing', async () => {
    const { dir: corpus } = await ensureDefaultMlmCorpus();
    const dir = mkdtempSync(join(tmpdir(), 'spm-nopad-'));
    const input = join(dir, 'in.txt');
    writeFileSync(input, readFileSync(join(corpus, 'valid.txt'), 'utf8').split('\n').slice(0, 100).join('\n') + '\n');
    const model = await trainSentencePiece({ input, modelPrefix: join(dir, 'nopad'), vocabSize: 150, extraArgs: ['--pad_id=-1', '--unk_id=0', '--bos_id=1', '--eos_id=2'] });
    const t = await loadTokenizer(model);
    expect([t.unkId, t.bosId, t.eosId, t.padId, t.vocabSize]).toEqual([0, 1, 2, 150, 151]);
    expect(t.idToPiece(150)).toBe('<pad>');
    const ids = t.encode('Call me Ishmael.');
    expect(t.decode([...ids, t.eosId, t.padId, t.padId])).toBe('Call me Ishmael.');
  });

  it.skipIf(!haveTrainer)('turns a trainer failure into a one-line UserError', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spm-fail-'));
    writeFileSync(join(dir, 'tiny.txt'), 'a b\n');
    const err = await trainSentencePiece({ input: join(dir, 'tiny.txt'), modelPrefix: join(dir, 'm'), vocabSize: 5000 }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/^spm_train failed for .*\/m: Vocabulary size too high \(5000\)\. Please set it to a value <= \d+\. \(a smaller `data\.vocabSize`\)$/);
    expect(err.message).not.toContain('\n');
  });
});
