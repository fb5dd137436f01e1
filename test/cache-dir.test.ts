import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cacheDir } from '../src/text/cache-dir.ts';
import { encodeTextFile } from '../src/text/corpus.ts';
import { dataCacheDir, DATA_DIR, ensureDefaultMlmCorpus, MOBY_TOKENIZER } from '../src/text/defaults.ts';
import { idCachePath } from '../src/text/id-cache.ts';
import { loadTokenizer, type Tokenizer } from '../src/text/tokenizer.ts';

const KEYS = ['FT_CACHE_DIR', 'FT_DATA_CACHE', 'XDG_CACHE_HOME'] as const;
const saved = Object.fromEntries(KEYS.map((k) => [k, process.env[k]]));

function setEnv(values: Partial<Record<(typeof KEYS)[number], string>>): void {
  for (const k of KEYS) {
    if (values[k] === undefined) delete process.env[k];
    else process.env[k] = values[k];
  }
}

afterEach(() => {
  for (const k of KEYS) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

describe('cacheDir', () => {
  it('is $FT_CACHE_DIR, then $FT_DATA_CACHE (alias), then $XDG_CACHE_HOME/factorized-transformer, then ~/.cache/factorized-transformer', () => {
    expect(cacheDir({ FT_CACHE_DIR: '/a', FT_DATA_CACHE: '/b', XDG_CACHE_HOME: '/c' })).toBe('/a');
    expect(cacheDir({ FT_DATA_CACHE: '/b', XDG_CACHE_HOME: '/c' })).toBe('/b');
    expect(cacheDir({ XDG_CACHE_HOME: '/c' })).toBe('/c/factorized-transformer');
    expect(cacheDir({ XDG_CACHE_HOME: 'relative/ignored' })).toBe(join(homedir(), '.cache', 'factorized-transformer'));
    expect(cacheDir({})).toBe(join(homedir(), '.cache', 'factorized-transformer'));
  });
});

describe('caches go to the user cache folder', () => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = await loadTokenizer(MOBY_TOKENIZER);
  });

  it('writes token-id caches under $XDG_CACHE_HOME and leaves the data folder untouched', async () => {
    const xdg = mkdtempSync(join(tmpdir(), 'ft-xdg-'));
    setEnv({ XDG_CACHE_HOME: xdg });
    const data = mkdtempSync(join(tmpdir(), 'ft-data-'));
    writeFileSync(join(data, 'train.txt'), 'Call me Ishmael.\nSome years ago.\n');
    const first = await encodeTextFile(join(data, 'train.txt'), tokenizer);
    expect(first.cachePath?.startsWith(join(xdg, 'factorized-transformer', 'ids') + '/')).toBe(true);
    expect(existsSync(first.cachePath!)).toBe(true);
    expect(readdirSync(data)).toEqual(['train.txt']);
    expect((await encodeTextFile(join(data, 'train.txt'), tokenizer)).fromCache).toBe(true);
  });

  it('keeps the caches of two data folders with the same file names apart', async () => {
    setEnv({ FT_CACHE_DIR: mkdtempSync(join(tmpdir(), 'ft-cache-')) });
    const a = mkdtempSync(join(tmpdir(), 'ft-data-a-'));
    const b = mkdtempSync(join(tmpdir(), 'ft-data-b-'));
    writeFileSync(join(a, 'train.txt'), 'Call me Ishmael.\n');
    writeFileSync(join(b, 'train.txt'), 'Call me Ishmael.\n');
    expect(idCachePath(join(a, 'train.txt'), tokenizer.fingerprint)).not.toBe(idCachePath(join(b, 'train.txt'), tokenizer.fingerprint));
  });

  it('unpacks the default corpus under the cache folder, never into the package', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ft-cache-'));
    setEnv({ FT_CACHE_DIR: dir });
    const before = readdirSync(DATA_DIR).sort();
    const corpus = await ensureDefaultMlmCorpus();
    expect(corpus.dir.startsWith(join(dir, 'corpora') + '/')).toBe(true);
    expect(dataCacheDir()).toBe(join(dir, 'corpora'));
    expect(existsSync(join(corpus.dir, 'train.txt'))).toBe(true);
    expect(readdirSync(DATA_DIR).sort()).toEqual(before);
  });

  it('keeps FT_DATA_CACHE working as an alias of FT_CACHE_DIR', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ft-cache-'));
    setEnv({ FT_DATA_CACHE: dir });
    expect((await ensureDefaultMlmCorpus()).dir.startsWith(join(dir, 'corpora') + '/')).toBe(true);
  });
});
