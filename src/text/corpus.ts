/**
 * Corpora in fairseq's folder layout:
 * - translation: `DIR/{train,valid,test}.{SRC,TGT}` (e.g. train.en / train.es), line i of one file
 *   translating line i of the other;
 * - masked-LM: `DIR/{train,valid,test}.txt`.
 * Plain UTF-8, one sentence per line. Files are streamed (readLines) and their token ids cached in
 * a binary file in the user cache folder (id-cache.ts), so memory holds ids, never the whole text.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { idCachePath, readIdCache, writeIdCache } from './id-cache.ts';
import { checkTextFile, readLines } from './lines.ts';
import type { Tokenizer } from './tokenizer-types.ts';

export interface EncodedText {
  path: string;
  /** Token ids of each line (no bos/eos), in file order: ids[i] is line i + 1. */
  ids: Int32Array[];
  numTokens: number;
  /** The cache file used or written; null when caching was off or the folder not writable. */
  cachePath: string | null;
  fromCache: boolean;
}

export interface EncodeOptions {
  /** Read/write the `.ids.bin` cache (in the user cache folder, id-cache.ts) (default true). */
  cache?: boolean;
  /** Progress messages (e.g. console.log); silent by default. */
  log?: (message: string) => void;
}

/** Int32 storage that grows by doubling, so encoding a large file does not keep one JS array per line. */
class GrowableInt32 {
  data = new Int32Array(1 << 16);
  length = 0;
  push(values: ArrayLike<number>): void {
    if (this.length + values.length > this.data.length) {
      let cap = this.data.length * 2;
      while (cap < this.length + values.length) cap *= 2;
      const next = new Int32Array(cap);
      next.set(this.data.subarray(0, this.length));
      this.data = next;
    }
    for (let i = 0; i < values.length; i++) this.data[this.length + i] = values[i];
    this.length += values.length;
  }
  view(): Int32Array {
    return this.data.subarray(0, this.length);
  }
}

/** Encodes every line of a text file, using (or writing) the id cache. */
export async function encodeTextFile(path: string, tokenizer: Tokenizer, opts: EncodeOptions = {}): Promise<EncodedText> {
  checkTextFile(path);
  const useCache = opts.cache ?? true;
  const cachePath = useCache ? idCachePath(path, tokenizer.fingerprint) : null;
  if (cachePath) {
    const cached = readIdCache(cachePath, tokenizer.vocabSize);
    if (cached && (await matchesSource(path, tokenizer, cached))) {
      opts.log?.(`${path}: ${cached.length} lines from cache ${cachePath}`);
      return { path, ids: cached, numTokens: cached.reduce((n, l) => n + l.length, 0), cachePath, fromCache: true };
    }
    if (cached || existsSync(cachePath)) opts.log?.(`${path}: the id cache ${cachePath} is damaged or stale; encoding the text again`);
  }
  const ids = new GrowableInt32();
  const lengths: number[] = [];
  for await (const { text, lineNumber } of readLines(path)) {
    const encoded = tokenizer.encode(text);
    ids.push(encoded);
    lengths.push(encoded.length);
    if (lineNumber % 100_000 === 0) opts.log?.(`${path}: encoded ${lineNumber} lines`);
  }
  const all = ids.view();
  const lengthArray = Uint32Array.from(lengths);
  const written = cachePath ? writeIdCache(cachePath, lengthArray, all, path) : false;
  opts.log?.(`${path}: encoded ${lengths.length} lines, ${all.length} tokens${written ? ` (cached in ${cachePath})` : ''}`);
  const lines: Int32Array[] = new Array(lengths.length);
  let start = 0;
  for (let i = 0; i < lengths.length; i++) {
    lines[i] = all.subarray(start, start + lengths[i]);
    start += lengths[i];
  }
  return { path, ids: lines, numTokens: all.length, cachePath: written ? cachePath : null, fromCache: false };
}

/** Lines re-encoded to check a cache against its text (cheap: the first few lines only). */
const SPOT_CHECK_LINES = 8;

/** Whether the cache's first lines are what the tokenizer makes of the text's first lines. */
async function matchesSource(path: string, tokenizer: Tokenizer, cached: Int32Array[]): Promise<boolean> {
  let n = 0;
  for await (const { text } of readLines(path)) {
    if (n >= cached.length) return false;
    const ids = tokenizer.encode(text);
    const got = cached[n];
    if (ids.length !== got.length || ids.some((id, k) => id !== got[k])) return false;
    if (++n >= SPOT_CHECK_LINES) return true;
  }
  return n === cached.length;
}

export type SplitName = 'train' | 'valid' | 'test' | (string & {});

/** `DIR/split.lang`, checked to exist and be non-empty. */
export function parallelCorpusPath(dir: string, split: SplitName, lang: string): string {
  const path = join(dir, `${split}.${lang}`);
  checkTextFile(path, `fairseq layout DIR/${split}.{SRC,TGT}: UTF-8 text, one sentence per line; check \`sourceLang\`/\`targetLang\``);
  return path;
}

/** `DIR/split.txt`, checked to exist and be non-empty. */
export function monolingualCorpusPath(dir: string, split: SplitName): string {
  const path = join(dir, `${split}.txt`);
  checkTextFile(path, `DIR/${split}.txt: UTF-8 text, one sentence per line`);
  return path;
}

export interface ParallelLine {
  lineNumber: number;
  source: string;
  target: string;
}

function lineCountError(shortPath: string, shortCount: number, longPath: string): UserError {
  return new UserError(
    `${shortPath} ends at line ${shortCount} but ${longPath} has more lines (parallel files must match line for line)`,
  );
}

/** Streams two line-aligned files in lockstep; UserError when one ends before the other. */
export async function* readLinePairs(
  sourcePath: string,
  targetPath: string,
  opts: { invalid?: 'error' | 'replace' } = {},
): AsyncGenerator<ParallelLine> {
  const src = readLines(sourcePath, opts);
  const tgt = readLines(targetPath, opts);
  for (let n = 0; ; n++) {
    const [s, t] = await Promise.all([src.next(), tgt.next()]);
    if (s.done && t.done) return;
    if (s.done) throw lineCountError(sourcePath, n, targetPath);
    if (t.done) throw lineCountError(targetPath, n, sourcePath);
    yield { lineNumber: s.value.lineNumber, source: s.value.text, target: t.value.text };
  }
}

/** Streams the text pairs of `DIR/split.{src,tgt}` in lockstep (e.g. references for BLEU). */
export async function* readParallelCorpus(
  dir: string,
  split: SplitName,
  sourceLang: string,
  targetLang: string,
): AsyncGenerator<ParallelLine> {
  yield* readLinePairs(parallelCorpusPath(dir, split, sourceLang), parallelCorpusPath(dir, split, targetLang));
}

export interface EncodedParallelCorpus {
  sourcePath: string;
  targetPath: string;
  source: Int32Array[];
  target: Int32Array[];
  fromCache: boolean;
}

/**
 * Encodes `DIR/split.{src,tgt}`; one tokenizer for both sides (joint vocabulary) or one per side.
 * Throws UserError when the two files differ in line count.
 */
export async function encodeParallelCorpus(
  dir: string,
  split: SplitName,
  sourceLang: string,
  targetLang: string,
  tokenizer: Tokenizer | { source: Tokenizer; target: Tokenizer },
  opts: EncodeOptions = {},
): Promise<EncodedParallelCorpus> {
  if (sourceLang === targetLang) throw new UserError(`source and target language are both "${sourceLang}" (check \`sourceLang\`/\`targetLang\`)`);
  const sourcePath = parallelCorpusPath(dir, split, sourceLang);
  const targetPath = parallelCorpusPath(dir, split, targetLang);
  const [srcTok, tgtTok] = 'source' in tokenizer ? [tokenizer.source, tokenizer.target] : [tokenizer, tokenizer];
  const source = await encodeTextFile(sourcePath, srcTok, opts);
  const target = await encodeTextFile(targetPath, tgtTok, opts);
  if (source.ids.length < target.ids.length) throw lineCountError(sourcePath, source.ids.length, targetPath);
  if (target.ids.length < source.ids.length) throw lineCountError(targetPath, target.ids.length, sourcePath);
  return { sourcePath, targetPath, source: source.ids, target: target.ids, fromCache: source.fromCache && target.fromCache };
}

/** Encodes `DIR/split.txt` for masked-LM. */
export async function encodeMonolingualCorpus(
  dir: string,
  split: SplitName,
  tokenizer: Tokenizer,
  opts: EncodeOptions = {},
): Promise<EncodedText> {
  return encodeTextFile(monolingualCorpusPath(dir, split), tokenizer, opts);
}
