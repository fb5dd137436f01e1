import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import {
  BIBLE_TOKENIZER,
  MOBY_TOKENIZER,
  ensureDefaultMlmCorpus,
  ensureDefaultTranslationCorpus,
} from '../src/text/defaults.ts';
import { SentencePieceTokenizer } from '../src/text/sentencepiece.ts';
import { loadTokenizer, type Tokenizer } from '../src/text/tokenizer.ts';

const fixtures = join(import.meta.dirname, 'fixtures/text');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'text-tok-'));
}

function readLinesSync(path: string): string[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.pop();
  return lines;
}

/** Every line of valid/test and every 16th line of train (all of train would take ~15 s on 2 cores; it was checked once: 0 failures). */
function roundTripLines(dir: string, files: string[]): { file: string; lines: string[] }[] {
  return files.map((file) => {
    const lines = readLinesSync(join(dir, file));
    return { file, lines: file.startsWith('train') ? lines.filter((_, i) => i % 16 === 0) : lines };
  });
}

describe('SentencePiece tokenizers shipped in data/', () => {
  let bible: Tokenizer;
  let moby: Tokenizer;
  beforeAll(async () => {
    bible = await loadTokenizer(BIBLE_TOKENIZER);
    moby = await loadTokenizer(MOBY_TOKENIZER);
  });

  it('have the fixed special ids, 4000 (Bible) / 8000 (Moby-Dick) pieces and nmt_nfkc normalization', () => {
    for (const t of [bible, moby]) {
      expect(t.kind).toBe('sentencepiece');
      expect([t.vocabSize, t.padId, t.unkId, t.bosId, t.eosId, t.maskId]).toEqual([t === bible ? 4000 : 8000, 0, 1, 2, 3, 4]);
      expect([0, 1, 2, 3, 4].map((i) => t.idToPiece(i))).toEqual(['<pad>', '<unk>', '<s>', '</s>', '<mask>']);
      expect((t as SentencePieceTokenizer).normalization).toBe('nmt_nfkc');
      expect(t.files().map((f) => f.split('/').pop())).toEqual(
        t === bible ? ['web-rv1909.en-es.spm.model', 'web-rv1909.en-es.spm.vocab'] : ['moby-dick.en.spm.model', 'moby-dick.en.spm.vocab'],
      );
    }
  });

  it('round-trip the default translation corpus exactly (en and es), with no unknown pieces', async () => {
    const { dir } = await ensureDefaultTranslationCorpus();
    for (const { file, lines } of roundTripLines(dir, ['train.en', 'train.es', 'valid.en', 'valid.es', 'test.en', 'test.es'])) {
      const failures: string[] = [];
      for (const line of lines) {
        const ids = bible.encode(line);
        if (ids.includes(bible.unkId) || bible.decode(ids) !== line) failures.push(line);
      }
      expect(failures, file).toEqual([]);
    }
  });

  it('round-trip the default MLM corpus exactly', async () => {
    const { dir } = await ensureDefaultMlmCorpus();
    for (const { file, lines } of roundTripLines(dir, ['train.txt', 'valid.txt', 'test.txt'])) {
      expect(lines.filter((line) => moby.decode(moby.encode(line)) !== line), file).toEqual([]);
    }
  });

  it('drop pad/bos/eos when decoding and share pieces across languages (joint vocabulary)', () => {
    const ids = bible.encode('Jesus said to Peter');
    expect(bible.decode([bible.bosId, ...ids, bible.eosId, bible.padId, bible.padId])).toBe('Jesus said to Peter');
    // A name spelled alike in both languages gets the same pieces on both sides.
    const en = bible.encode('and went to Jerusalem');
    const es = bible.encode('y fué á Jerusalem');
    const name = bible.encode('Jerusalem');
    expect(en.slice(-name.length)).toEqual(name);
    expect(es.slice(-name.length)).toEqual(name);
  });

  it('fold tabs and no-break spaces into spaces, and keep the text after a lone surrogate', () => {
    expect(bible.decode(bible.encode('In\tthe\u00a0beginning'))).toBe('In the beginning');
    expect(bible.decode(bible.encode('a\ud800b'))).toBe('a b'); // nmt_nfkc turns U+FFFD into a space
  });

  it('map characters outside the vocabulary to unk without crashing', () => {
    const ids = bible.encode('Peace 日本語 ☃ peace');
    expect(ids.filter((id) => id === bible.unkId).length).toBeGreaterThan(0);
    expect(ids.every((id) => id >= 0 && id < bible.vocabSize)).toBe(true);
    expect(bible.decode(ids)).toContain('Peace');
    expect(bible.encode('')).toEqual([]);
    expect(bible.decode([])).toBe('');
  });

  it('leave no process-wide handlers behind (the wasm runtime installs some on every load)', async () => {
    const count = () => process.listenerCount('uncaughtException') + process.listenerCount('unhandledRejection');
    const before = count();
    await loadTokenizer(MOBY_TOKENIZER);
    await loadTokenizer(MOBY_TOKENIZER);
    expect(count()).toBe(before);
  });

  it('reject ids outside the vocabulary', () => {
    expect(() => bible.decode([5, bible.vocabSize])).toThrow(RangeError);
  });
});

describe('loadTokenizer errors', () => {
  it('a missing path names it and says what was expected', async () => {
    await expect(loadTokenizer('/nonexistent/spm.model')).rejects.toThrow(
      /^tokenizer not found: \/nonexistent\/spm\.model \(expected a SentencePiece \.model file or a folder with tokenizer\.json\)$/,
    );
  });

  it('a file that is not a SentencePiece model gives a one-line UserError', async () => {
    const dir = tempDir();
    const text = join(dir, 'notes.model');
    writeFileSync(text, 'this is just some text\nnot a model\n');
    const random = join(dir, 'random.model');
    writeFileSync(random, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256)));
    const truncated = join(dir, 'truncated.model');
    writeFileSync(truncated, readFileSync(MOBY_TOKENIZER).subarray(0, 1000));
    for (const path of [text, random, truncated]) {
      const err = await loadTokenizer(path).catch((e) => e);
      expect(err).toBeInstanceOf(UserError);
      expect(err.message).toMatch(new RegExp(`^${path.replace(/\//g, '\\/')} is not a SentencePiece model \\(`));
      expect(err.message).not.toContain('\n');
    }
  });

  it('a tokenizer.json that is not JSON, or not a tokenizer, gives a one-line UserError', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'a'));
    writeFileSync(join(dir, 'a/tokenizer.json'), '{"model": ');
    await expect(loadTokenizer(join(dir, 'a'))).rejects.toThrow(/a\/tokenizer\.json is not a Hugging Face tokenizer\.json \(/);
    mkdirSync(join(dir, 'b'));
    writeFileSync(join(dir, 'b/tokenizer.json'), '{"name": "package"}');
    await expect(loadTokenizer(join(dir, 'b/tokenizer.json'))).rejects.toThrow(/no "model" object/);
    mkdirSync(join(dir, 'c'));
    writeFileSync(join(dir, 'c/tokenizer.json'), JSON.stringify({ model: { type: 'NoSuchModel' } }));
    await expect(loadTokenizer(join(dir, 'c'))).rejects.toThrow(UserError);
  });

  it('a folder with no tokenizer says what it expected', async () => {
    await expect(loadTokenizer(tempDir())).rejects.toThrow(/no tokenizer\.json and no \*\.model files/);
  });

  it('a folder with one .model file loads it (checkpoint folders)', async () => {
    const dir = tempDir();
    copyFileSync(MOBY_TOKENIZER, join(dir, 'spm.model'));
    const t = await loadTokenizer(dir);
    expect(t.kind).toBe('sentencepiece');
    expect(t.fingerprint).toBe((await loadTokenizer(MOBY_TOKENIZER)).fingerprint);
  });
});

describe('Hugging Face tokenizer.json', () => {
  it('WordPiece (BERT): [PAD]/[UNK]/[CLS]/[SEP]/[MASK] ids from tokenizer_config.json; unknown words → [UNK]', async () => {
    const t = await loadTokenizer(join(fixtures, 'wordpiece'));
    expect(t.kind).toBe('huggingface');
    expect([t.padId, t.unkId, t.bosId, t.eosId, t.maskId]).toEqual([0, 1, 2, 3, 4]);
    expect(t.vocabSize).toBe(111);
    const ids = t.encode('In the beginning God created the heaven, and the earth.');
    expect(ids.map((i) => t.idToPiece(i))).toEqual(
      ['in', 'the', 'beginning', 'god', 'created', 'the', 'heaven', ',', 'and', 'the', 'earth', '.'],
    );
    // WordPiece lowercases and splits punctuation; decoding joins words and re-attaches punctuation.
    expect(t.decode([t.bosId, ...ids, t.eosId])).toBe('in the beginning god created the heaven, and the earth.');
    expect(t.encode('lord 日本').map((i) => t.idToPiece(i))).toEqual(['lord', '[UNK]', '[UNK]']);
    expect(t.files().map((f) => f.split('/').pop())).toEqual(['tokenizer.json', 'tokenizer_config.json']);
  });

  it('byte-level BPE (RoBERTa): specials found by spelling, exact round trip of any text, no cleanup damage', async () => {
    const t = await loadTokenizer(join(fixtures, 'bpe/tokenizer.json'));
    expect([t.bosId, t.padId, t.eosId, t.unkId]).toEqual([0, 1, 2, 3]);
    expect(t.maskId).toBe(t.vocabSize - 1);
    const texts = [
      'In the beginning God created the heaven, and the earth.',
      'Señor ¿ qué? — “x” 日本 ☃',
      "He said : do n't stop . It 's here !", // clean_up_tokenization_spaces would rewrite this
      '  two  spaces ',
    ];
    for (const s of texts) {
      const ids = t.encode(s);
      expect(ids.every((id) => id >= 0 && id < t.vocabSize)).toBe(true);
      expect(t.decode([t.bosId, ...ids, t.eosId, t.padId])).toBe(s);
    }
    expect(t.encode(' the').map((i) => t.idToPiece(i))).toEqual(['Ġthe']);
  });
});
