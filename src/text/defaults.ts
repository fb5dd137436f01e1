/**
 * The corpora shipped in `data/` (gzip-compressed) and their split into the fairseq folder layout:
 * - English–Spanish Bible verses (World English Bible / Reina-Valera 1909), split by book;
 * - Moby-Dick sentences for masked-LM, with contiguous chunks for valid and test.
 * See data/PROVENANCE.md for sources and licences. The split is defined here, once, and used by
 * both `ensureDefault*Corpus` and `data-scripts/prepare-default.ts`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { UserError } from '../errors.ts';
import { packagePath } from '../package-root.ts';
import { cacheDir } from './cache-dir.ts';

/** The package's own `data/` folder (read only: nothing is written there). */
export const DATA_DIR = packagePath('data');

export const BIBLE_TSV_GZ = join(DATA_DIR, 'web-rv1909.en-es.tsv.gz');
export const BIBLE_TOKENIZER = join(DATA_DIR, 'web-rv1909.en-es.spm.model');
export const MOBY_TXT_GZ = join(DATA_DIR, 'moby-dick.en.txt.gz');
export const MOBY_TOKENIZER = join(DATA_DIR, 'moby-dick.en.spm.model');

/** Whole books held out; narrative prose from both testaments, ~1,300 verses each. */
export const BIBLE_VALID_BOOKS = ['Joshua', 'Mark'] as const;
export const BIBLE_TEST_BOOKS = ['Ruth', 'Esther', 'Acts'] as const;

/** Moby-Dick held-out chunks, 0-based half-open line ranges. */
export const MOBY_VALID_LINES: readonly [number, number] = [4000, 4400];
export const MOBY_TEST_LINES_FROM_END = 400;

export type Split = 'train' | 'valid' | 'test';
export const SPLITS: readonly Split[] = ['train', 'valid', 'test'];

/** Where decompressed default corpora go: `<cacheDir()>/corpora` (see cache-dir.ts). */
export function dataCacheDir(): string {
  return join(cacheDir(), 'corpora');
}

/** The book of a reference like `II Kings 3:14` or `Revelation of John 1:1`. */
export function bookOf(reference: string): string {
  return reference.replace(/ \d+:\d+$/, '');
}

/** Splits the `reference<TAB>en<TAB>es` lines by book. */
export function splitBibleTsv(text: string, file: string): Record<Split, { en: string[]; es: string[]; references: string[] }> {
  const out = {
    train: { en: [] as string[], es: [] as string[], references: [] as string[] },
    valid: { en: [] as string[], es: [] as string[], references: [] as string[] },
    test: { en: [] as string[], es: [] as string[], references: [] as string[] },
  };
  const valid = new Set<string>(BIBLE_VALID_BOOKS);
  const test = new Set<string>(BIBLE_TEST_BOOKS);
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((line, i) => {
    const fields = line.split('\t');
    if (fields.length !== 3 || !/ \d+:\d+$/.test(fields[0])) {
      throw new UserError(`${file}:${i + 1}: expected "Book chapter:verse<TAB>English<TAB>Spanish", got ${fields.length} fields`);
    }
    const [ref, en, es] = fields;
    const book = bookOf(ref);
    const part = valid.has(book) ? out.valid : test.has(book) ? out.test : out.train;
    part.references.push(ref);
    part.en.push(en);
    part.es.push(es);
  });
  return out;
}

/** Splits Moby-Dick sentences into train / valid / test (contiguous held-out chunks). */
export function splitMoby(text: string): Record<Split, string[]> {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const [v0, v1] = MOBY_VALID_LINES;
  const t0 = lines.length - MOBY_TEST_LINES_FROM_END;
  return {
    train: [...lines.slice(0, v0), ...lines.slice(v1, t0)],
    valid: lines.slice(v0, v1),
    test: lines.slice(t0),
  };
}

function writeLines(path: string, lines: string[]): void {
  writeFileSync(path, lines.length ? lines.join('\n') + '\n' : '');
}

/** Writes the fairseq layout of the Bible corpus: DIR/{train,valid,test}.{en,es} (+ .ref with verse references). */
export function writeBibleLayout(gzPath: string, outDir: string): void {
  const parts = splitBibleTsv(gunzipSync(readFileSync(gzPath)).toString('utf8'), gzPath);
  mkdirSync(outDir, { recursive: true });
  for (const split of SPLITS) {
    writeLines(join(outDir, `${split}.en`), parts[split].en);
    writeLines(join(outDir, `${split}.es`), parts[split].es);
    writeLines(join(outDir, `${split}.ref`), parts[split].references);
  }
}

/** Writes the MLM layout of Moby-Dick: DIR/{train,valid,test}.txt. */
export function writeMobyLayout(gzPath: string, outDir: string): void {
  const parts = splitMoby(gunzipSync(readFileSync(gzPath)).toString('utf8'));
  mkdirSync(outDir, { recursive: true });
  for (const split of SPLITS) writeLines(join(outDir, `${split}.txt`), parts[split]);
}

/**
 * Decompresses once into `<cache>/<name>-<hash of the archive>/`, built in a temporary folder and
 * renamed into place, so concurrent or interrupted runs never see a half-written corpus.
 */
function ensureLayout(gzPath: string, name: string, write: (gz: string, dir: string) => void): string {
  if (!existsSync(gzPath)) {
    throw new UserError(`default corpus missing: ${gzPath} (run \`npx tsx data-scripts/prepare-default.ts\`)`);
  }
  const hash = createHash('sha256').update(readFileSync(gzPath)).digest('hex').slice(0, 12);
  const dir = join(dataCacheDir(), `${name}-${hash}`);
  if (existsSync(join(dir, 'COMPLETE'))) return dir;
  const tmp = `${dir}.tmp-${randomUUID()}`;
  rmSync(tmp, { recursive: true, force: true });
  write(gzPath, tmp);
  writeFileSync(join(tmp, 'COMPLETE'), `${gzPath}\n`);
  try {
    renameSync(tmp, dir);
  } catch (e) {
    // Another process finished first: its copy is identical (same archive hash).
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(join(dir, 'COMPLETE'))) throw e;
  }
  return dir;
}

export interface DefaultTranslationCorpus {
  dir: string;
  sourceLang: 'en';
  targetLang: 'es';
  tokenizerPath: string;
}

export interface DefaultMlmCorpus {
  dir: string;
  tokenizerPath: string;
}

/** The shipped en→es corpus in fairseq layout (`dir/{train,valid,test}.{en,es}`) with its joint SentencePiece model. */
export async function ensureDefaultTranslationCorpus(): Promise<DefaultTranslationCorpus> {
  const dir = ensureLayout(BIBLE_TSV_GZ, 'web-rv1909', writeBibleLayout);
  return { dir, sourceLang: 'en', targetLang: 'es', tokenizerPath: BIBLE_TOKENIZER };
}

/** The shipped Moby-Dick corpus (`dir/{train,valid,test}.txt`) with its SentencePiece model. */
export async function ensureDefaultMlmCorpus(): Promise<DefaultMlmCorpus> {
  const dir = ensureLayout(MOBY_TXT_GZ, 'moby-dick', writeMobyLayout);
  return { dir, tokenizerPath: MOBY_TOKENIZER };
}
