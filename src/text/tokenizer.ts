/**
 * The one tokenizer interface the rest of the package sees, and `loadTokenizer`, which picks the
 * implementation from what is on disk: a SentencePiece `.model` file, or a Hugging Face
 * `tokenizer.json` (the file itself or a folder holding it).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';

export type TokenizerKind = 'sentencepiece' | 'huggingface';

export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** Number of embedding rows the model needs: every id `encode` or the specials can produce is below it. */
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  /** The `<mask>` / `[MASK]` id for masked-LM, when the vocabulary has one. */
  readonly maskId?: number;
  /** sha256 of the tokenizer's files: two tokenizers with equal fingerprints encode identically. */
  readonly fingerprint: string;
  /** Text → ids, without bos/eos (callers add those where the task needs them). */
  encode(text: string): number[];
  /** Ids → text; pad/bos/eos are dropped, so decode(encode(s)) is s wherever the vocabulary covers s. */
  decode(ids: ArrayLike<number>): string;
  idToPiece(id: number): string;
  /** The files to copy next to a checkpoint so `loadTokenizer` can restore this tokenizer. */
  files(): string[];
}

/** The special ids every tokenizer needs, resolved so that none is missing. */
export interface SpecialIds {
  padId: number;
  unkId: number;
  bosId: number;
  eosId: number;
}

/**
 * Gives each special the vocabulary lacks (found = -1) a fresh id after the vocabulary, in the
 * order pad, unk, bos, eos, so the model still has distinct rows for them. Returns the ids and the
 * grown vocabulary size.
 */
export function completeSpecialIds(found: SpecialIds, baseVocabSize: number): SpecialIds & { vocabSize: number } {
  let next = baseVocabSize;
  const take = (id: number) => (id >= 0 ? id : next++);
  const padId = take(found.padId);
  const unkId = take(found.unkId);
  const bosId = take(found.bosId);
  const eosId = take(found.eosId);
  return { padId, unkId, bosId, eosId, vocabSize: next };
}

/**
 * Loads a tokenizer from `pathOrDir`:
 * - a `.model` file → SentencePiece;
 * - a `tokenizer.json` file, or a folder with one (plus an optional `tokenizer_config.json`) → Hugging Face;
 * - a folder with exactly one `*.model` and no tokenizer.json → that SentencePiece model.
 */
export async function loadTokenizer(pathOrDir: string): Promise<Tokenizer> {
  if (!existsSync(pathOrDir)) {
    throw new UserError(`tokenizer not found: ${pathOrDir} (expected a SentencePiece .model file or a folder with tokenizer.json)`);
  }
  if (statSync(pathOrDir).isDirectory()) {
    const json = join(pathOrDir, 'tokenizer.json');
    if (existsSync(json)) {
      const { HuggingFaceTokenizer } = await import('./huggingface.ts');
      return HuggingFaceTokenizer.load(json);
    }
    const { readdirSync } = await import('node:fs');
    const models = readdirSync(pathOrDir).filter((f) => f.endsWith('.model'));
    if (models.length === 1) {
      const { SentencePieceTokenizer } = await import('./sentencepiece.ts');
      return SentencePieceTokenizer.load(join(pathOrDir, models[0]));
    }
    throw new UserError(
      `${pathOrDir}: no tokenizer.json and ${models.length === 0 ? 'no' : 'several'} *.model files (expected a folder with tokenizer.json or exactly one SentencePiece .model)`,
    );
  }
  if (pathOrDir.endsWith('.json')) {
    const { HuggingFaceTokenizer } = await import('./huggingface.ts');
    return HuggingFaceTokenizer.load(pathOrDir);
  }
  const { SentencePieceTokenizer } = await import('./sentencepiece.ts');
  return SentencePieceTokenizer.load(pathOrDir);
}
