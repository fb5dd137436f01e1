import { appendFileSync, existsSync, mkdtempSync, readdirSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  encodeMonolingualCorpus,
  encodeParallelCorpus,
  encodeTextFile,
  readLinePairs,
  readParallelCorpus,
} from '../src/text/corpus.ts';
import { MOBY_TOKENIZER } from '../src/text/defaults.ts';
import { idCacheFolder } from '../src/text/id-cache.ts';
import { readLines } from '../src/text/lines.ts';
import { loadTokenizer, type Tokenizer } from '../src/text/tokenizer.ts';

const fixtures = join(import.meta.dirname, 'fixtures/text');
let tokenizer: Tokenizer;

beforeAll(async () => {
  tokenizer = await loadTokenizer(MOBY_TOKENIZER);
});

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'text-corpus-'));
}

async function collect(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const { text } of readLines(path)) out.push(text);
  return out;
}

describe('readLines', () => {
  it('strips \\n and \\r\\n, drops a BOM, keeps empty lines, and reads a last line without newline', async () => {
    const dir = tempDir();
    const path = join(dir, 'a.txt');
    writeFileSync(path, '\ufeffCall me Ishmael.\r\n\nSeñor ¿qué?\nlast');
    expect(await collect(path)).toEqual(['Call me Ishmael.', '', 'Señor ¿qué?', 'last']);
  });

  it('reassembles lines and multi-byte characters split across read chunks', async () => {
    const dir = tempDir();
    const path = join(dir, 'big.txt');
    // ~3 MB of lines with 2-, 3- and 4-byte characters, so chunk edges fall inside characters and lines.
    const lines = Array.from({ length: 30000 }, (_, i) => `${i} ñandú “quote” 𝔘 ${'x'.repeat(i % 97)}`);
    writeFileSync(path, lines.join('\n') + '\n');
    expect(await collect(path)).toEqual(lines);
  });

  it('streams: stopping early never reads the rest of a large file', async () => {
    const dir = tempDir();
    const path = join(dir, 'large.txt');
    // 7 MB of good lines, then a bad byte: only a reader that loads the whole file would see it.
    const block = Buffer.from('a line of ordinary text\n'.repeat(30_000));
    writeFileSync(path, Buffer.concat([...Array(10).fill(block), Buffer.from([0xff, 0x0a])]));
    const first: string[] = [];
    for await (const { text, lineNumber } of readLines(path)) {
      first.push(text);
      if (lineNumber === 3) break;
    }
    expect(first).toEqual(Array(3).fill('a line of ordinary text'));
    let count = 0;
    await expect(
      (async () => {
        for await (const _ of readLines(path)) count++;
      })(),
    ).rejects.toThrow(`${path}:300001: invalid UTF-8`);
    expect(count).toBe(300_000);
  });

  it('names file and line of invalid UTF-8', async () => {
    const dir = tempDir();
    const path = join(dir, 'bad.en');
    writeFileSync(path, Buffer.concat([Buffer.from('fine\nalso fine\nbroken '), Buffer.from([0xc3, 0x28]), Buffer.from('\nok\n')]));
    await expect(collect(path)).rejects.toThrow(`${path}:3: invalid UTF-8`);
  });

  it("with invalid: 'replace' turns bad bytes into U+FFFD (raw downloads), and pairs files line for line", async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'a.de'), Buffer.concat([Buffer.from('gut\nkaputt '), Buffer.from([0xff]), Buffer.from('\n')]));
    writeFileSync(join(dir, 'a.en'), 'good\nbroken\n');
    const pairs = [];
    for await (const p of readLinePairs(join(dir, 'a.de'), join(dir, 'a.en'), { invalid: 'replace' })) pairs.push(p);
    expect(pairs.map((p) => p.source)).toEqual(['gut', 'kaputt \ufffd']);
    expect(pairs.map((p) => p.target)).toEqual(['good', 'broken']);
  });

  it('rejects an empty or missing file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'empty.txt'), '');
    await expect(collect(join(dir, 'empty.txt'))).rejects.toThrow(/empty\.txt is empty/);
    await expect(collect(join(dir, 'nope.txt'))).rejects.toThrow(/nope\.txt not found/);
  });
});

describe('encodeParallelCorpus (fairseq layout)', () => {
  function makeCorpus(): string {
    const dir = tempDir();
    writeFileSync(join(dir, 'train.en'), 'Call me Ishmael.\nSome years ago.\n\nThe whale!\n');
    writeFileSync(join(dir, 'train.es'), 'Llamadme Ismael.\nHace algunos años.\nvacío\n¡La ballena!\n');
    return dir;
  }

  it('encodes each line as the tokenizer does, caches the ids in the user cache folder, and re-uses them', async () => {
    const dir = makeCorpus();
    const first = await encodeParallelCorpus(dir, 'train', 'en', 'es', tokenizer);
    expect(first.fromCache).toBe(false);
    expect(first.source.map((a) => [...a])).toEqual(['Call me Ishmael.', 'Some years ago.', '', 'The whale!'].map((s) => tokenizer.encode(s)));
    expect(first.target.length).toBe(4);
    const caches = readdirSync(idCacheFolder(join(dir, 'train.en'))).filter((f) => f.endsWith('.ids.bin'));
    expect(readdirSync(dir).sort()).toEqual(['train.en', 'train.es']); // the data folder is left as it was
    expect(caches.sort().map((f) => f.replace(/\.[0-9a-f]{16}\./, '.HASH.'))).toEqual(['train.en.HASH.ids.bin', 'train.es.HASH.ids.bin']);
    const second = await encodeParallelCorpus(dir, 'train', 'en', 'es', tokenizer);
    expect(second.fromCache).toBe(true);
    expect(second.source).toEqual(first.source);
    expect(second.target).toEqual(first.target);
  });

  it('rebuilds the cache when the text changes, and drops the stale one', async () => {
    const dir = makeCorpus();
    await encodeParallelCorpus(dir, 'train', 'en', 'es', tokenizer);
    appendFileSync(join(dir, 'train.en'), 'More.\n');
    appendFileSync(join(dir, 'train.es'), 'Más.\n');
    utimesSync(join(dir, 'train.en'), new Date(), new Date(Date.now() + 2000));
    utimesSync(join(dir, 'train.es'), new Date(), new Date(Date.now() + 2000));
    const again = await encodeParallelCorpus(dir, 'train', 'en', 'es', tokenizer);
    expect(again.fromCache).toBe(false);
    expect(again.source.length).toBe(5);
    expect([...again.source[4]]).toEqual(tokenizer.encode('More.'));
    expect(readdirSync(idCacheFolder(join(dir, 'train.en'))).filter((f) => f.endsWith('.ids.bin')).length).toBe(2);
  });

  it('rebuilds the cache when only the mtime changes to a same-size edit', async () => {
    const dir = makeCorpus();
    const path = join(dir, 'train.en');
    await encodeTextFile(path, tokenizer);
    writeFileSync(path, 'Call me Ishmaez.\nSome years ago.\n\nThe whale!\n'); // same size, different text
    utimesSync(path, new Date(), new Date(Date.now() + 5000));
    const again = await encodeTextFile(path, tokenizer);
    expect(again.fromCache).toBe(false);
    expect([...again.ids[0]]).toEqual(tokenizer.encode('Call me Ishmaez.'));
  });

  it('keeps separate caches per tokenizer', async () => {
    const dir = makeCorpus();
    const bpe = await loadTokenizer(join(fixtures, 'bpe'));
    const a = await encodeTextFile(join(dir, 'train.en'), tokenizer);
    const b = await encodeTextFile(join(dir, 'train.en'), bpe);
    expect(b.fromCache).toBe(false);
    expect(b.cachePath).not.toBe(a.cachePath);
    expect([...b.ids[0]]).toEqual(bpe.encode('Call me Ishmael.'));
    // Both stay: switching between two tokenizers does not re-encode each time.
    expect((await encodeTextFile(join(dir, 'train.en'), tokenizer)).fromCache).toBe(true);
    expect((await encodeTextFile(join(dir, 'train.en'), bpe)).fromCache).toBe(true);
  });

  it('re-encodes when the cache file is corrupt', async () => {
    const dir = makeCorpus();
    const first = await encodeTextFile(join(dir, 'train.en'), tokenizer);
    truncateSync(first.cachePath!, 30);
    const again = await encodeTextFile(join(dir, 'train.en'), tokenizer);
    expect(again.fromCache).toBe(false);
    expect(again.ids).toEqual(first.ids);
  });

  it('reports parallel files with different line counts, naming the file and line', async () => {
    const dir = makeCorpus();
    appendFileSync(join(dir, 'train.es'), 'Una línea de más.\n');
    await expect(encodeParallelCorpus(dir, 'train', 'en', 'es', tokenizer)).rejects.toThrow(
      `${join(dir, 'train.en')} ends at line 4 but ${join(dir, 'train.es')} has more lines`,
    );
    const pairs = async () => {
      for await (const _ of readParallelCorpus(dir, 'train', 'en', 'es'));
    };
    await expect(pairs()).rejects.toThrow(/train\.en ends at line 4/);
  });

  it('names the missing file and the language options', async () => {
    const dir = makeCorpus();
    await expect(encodeParallelCorpus(dir, 'train', 'en', 'de', tokenizer)).rejects.toThrow(/train\.de not found .*`sourceLang`\/`targetLang`/);
    await expect(encodeParallelCorpus(dir, 'valid', 'en', 'es', tokenizer)).rejects.toThrow(/valid\.en not found/);
  });

  it('reports invalid UTF-8 and empty files', async () => {
    const dir = makeCorpus();
    writeFileSync(join(dir, 'valid.en'), '');
    writeFileSync(join(dir, 'valid.es'), 'x\n');
    await expect(encodeParallelCorpus(dir, 'valid', 'en', 'es', tokenizer)).rejects.toThrow(/valid\.en is empty/);
    writeFileSync(join(dir, 'test.en'), 'ok\n');
    writeFileSync(join(dir, 'test.es'), Buffer.from([0x6f, 0x6b, 0x0a, 0xff, 0x0a]));
    await expect(encodeParallelCorpus(dir, 'test', 'en', 'es', tokenizer)).rejects.toThrow(/test\.es:2: invalid UTF-8/);
  });

  it('streams text pairs in order', async () => {
    const dir = makeCorpus();
    const pairs = [];
    for await (const p of readParallelCorpus(dir, 'train', 'en', 'es')) pairs.push(p);
    expect(pairs[1]).toEqual({ lineNumber: 2, source: 'Some years ago.', target: 'Hace algunos años.' });
    expect(pairs.length).toBe(4);
  });
});

describe('encodeMonolingualCorpus', () => {
  it('reads DIR/split.txt', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'valid.txt'), 'It was the whale.\nCall me Ishmael.\n');
    const enc = await encodeMonolingualCorpus(dir, 'valid', tokenizer, { cache: false });
    expect(enc.ids.map((a) => [...a])).toEqual([tokenizer.encode('It was the whale.'), tokenizer.encode('Call me Ishmael.')]);
    expect(enc.cachePath).toBeNull();
    expect(existsSync(join(dir, 'valid.txt'))).toBe(true);
    await expect(encodeMonolingualCorpus(dir, 'train', tokenizer)).rejects.toThrow(/train\.txt not found/);
  });
});
