import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  BIBLE_TEST_BOOKS,
  BIBLE_TSV_GZ,
  BIBLE_VALID_BOOKS,
  MOBY_TXT_GZ,
  bookOf,
  ensureDefaultMlmCorpus,
  ensureDefaultTranslationCorpus,
  splitBibleTsv,
} from '../src/text/defaults.ts';

function lines(path: string): string[] {
  const l = readFileSync(path, 'utf8').split('\n');
  expect(l.pop()).toBe('');
  return l;
}

describe('default translation corpus (Bible en–es)', () => {
  it('is split by whole book into the fairseq layout, every verse exactly once', async () => {
    const corpus = await ensureDefaultTranslationCorpus();
    expect(corpus.sourceLang).toBe('en');
    expect(corpus.targetLang).toBe('es');
    expect(corpus.tokenizerPath).toMatch(/data\/web-rv1909\.en-es\.spm\.model$/);
    const counts: Record<string, number> = {};
    const booksBySplit: Record<string, Set<string>> = {};
    for (const split of ['train', 'valid', 'test']) {
      const en = lines(join(corpus.dir, `${split}.en`));
      const es = lines(join(corpus.dir, `${split}.es`));
      const refs = lines(join(corpus.dir, `${split}.ref`));
      expect(es.length).toBe(en.length);
      expect(refs.length).toBe(en.length);
      counts[split] = en.length;
      booksBySplit[split] = new Set(refs.map(bookOf));
    }
    expect(counts).toEqual({ train: 27556, valid: 1336, test: 1110 });
    expect([...booksBySplit.valid].sort()).toEqual([...BIBLE_VALID_BOOKS].sort());
    expect([...booksBySplit.test].sort()).toEqual([...BIBLE_TEST_BOOKS].sort());
    for (const b of [...BIBLE_VALID_BOOKS, ...BIBLE_TEST_BOOKS]) expect(booksBySplit.train.has(b)).toBe(false);
    expect(booksBySplit.train.size).toBe(66 - 5); // all 66 books are in the TSV; 5 are held out
  });

  it('matches the shipped TSV line for line', async () => {
    const corpus = await ensureDefaultTranslationCorpus();
    const tsv = gunzipSync(readFileSync(BIBLE_TSV_GZ)).toString('utf8').split('\n').filter(Boolean);
    const mark = tsv.filter((l) => l.startsWith('Mark ')).map((l) => l.split('\t'));
    const valid = { en: lines(join(corpus.dir, 'valid.en')), es: lines(join(corpus.dir, 'valid.es')), ref: lines(join(corpus.dir, 'valid.ref')) };
    const at = valid.ref.indexOf(mark[0][0]);
    expect(at).toBeGreaterThanOrEqual(0);
    mark.forEach(([ref, en, es], k) => {
      expect([valid.ref[at + k], valid.en[at + k], valid.es[at + k]]).toEqual([ref, en, es]);
    });
  });

  it('is decompressed once: a second call returns the same folder', async () => {
    const a = await ensureDefaultTranslationCorpus();
    const b = await ensureDefaultTranslationCorpus();
    expect(b.dir).toBe(a.dir);
  });

  it('rejects a malformed TSV line naming file and line', () => {
    expect(() => splitBibleTsv('Genesis 1:1\tIn the beginning\tEn el principio\nGenesis 1:2\tonly two\n', 'x.tsv')).toThrow(
      /^x\.tsv:2: expected "Book chapter:verse<TAB>English<TAB>Spanish", got 2 fields$/,
    );
  });
});

describe('default MLM corpus (Moby-Dick)', () => {
  it('holds out contiguous chunks: valid = lines 4001–4400, test = the last 400', async () => {
    const corpus = await ensureDefaultMlmCorpus();
    expect(corpus.tokenizerPath).toMatch(/data\/moby-dick\.en\.spm\.model$/);
    const all = gunzipSync(readFileSync(MOBY_TXT_GZ)).toString('utf8').split('\n');
    all.pop();
    expect(all.length).toBe(8291);
    expect(lines(join(corpus.dir, 'valid.txt'))).toEqual(all.slice(4000, 4400));
    expect(lines(join(corpus.dir, 'test.txt'))).toEqual(all.slice(7891));
    expect(lines(join(corpus.dir, 'train.txt'))).toEqual([...all.slice(0, 4000), ...all.slice(4400, 7891)]);
  });
});
