/**
 * The tokenizer contract (`Tokenizer`) and what its implementations share. Its own module so that
 * the implementations (`sentencepiece.ts`, `huggingface.ts`) and `tokenizer.ts`, which loads them,
 * do not import each other.
 */
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
