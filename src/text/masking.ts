/**
 * BERT-style masked-LM data: packing consecutive sentences into fixed-length sequences, choosing
 * which tokens to predict (15 %, of which 80 % become the mask token, 10 % a random token and 10 %
 * stay unchanged), whole-word masking, dynamic (per-epoch, seeded) re-masking, padded batches, and
 * the unigram no-context baseline.
 *
 * Why by hand: no npm library implements BERT's masking policy; it is a few loops over Int32Arrays.
 * The selection follows Google's `create_pretraining_data.py` (an exact count of
 * `round(15 % · candidates)` predictions per sequence, drawn word by word), which keeps the number
 * of predictions per sequence bounded and the statistics tight; the 80/10/10 decision is per token.
 */
import { SeededRandom } from '../random.ts';
import { UserError } from '../errors.ts';

/** What masking needs to know about a tokenizer (a structural subset of src/text's Tokenizer). */
export interface MaskingVocabulary {
  vocabSize: number;
  idToPiece(id: number): string;
  kind: 'sentencepiece' | 'huggingface' | string;
}

export interface MaskingOptions {
  /** The id that replaces 80 % of the selected tokens (`<mask>` / `[MASK]`). */
  maskId: number;
  vocabSize: number;
  /** Ids never selected and never drawn as random replacements (pad, unk, bos/eos, cls/sep, mask). */
  specialIds: readonly number[];
  /** Fraction of non-special tokens chosen for prediction. Default 0.15. */
  selectProbability?: number;
  /** Of the chosen tokens, the fraction replaced by the mask id. Default 0.8. */
  maskTokenProbability?: number;
  /** Of the chosen tokens, the fraction replaced by a random (non-special) token. Default 0.1. */
  randomTokenProbability?: number;
  /** Per vocabulary id, 1 when the piece begins a word: turns on whole-word masking. */
  wordStarts?: Uint8Array;
}

/** One sequence after masking: the model input and what to predict where. */
export interface MaskedSequence {
  /** The token ids fed to the model (with mask/random/unchanged replacements). */
  input: Int32Array;
  /** Positions (0-based, ascending) whose original token is to be predicted. */
  positions: Int32Array;
  /** The original token at each of `positions`. */
  labels: Int32Array;
}

function checkProbability(name: string, p: number): void {
  if (!(p >= 0 && p <= 1)) throw new UserError(`masking option ${name}: expected a probability in [0, 1], got ${p}`);
}

/** Validates options once, so that the per-sequence loop stays lean. */
function resolveOptions(opts: MaskingOptions) {
  const selectProbability = opts.selectProbability ?? 0.15;
  const maskTokenProbability = opts.maskTokenProbability ?? 0.8;
  const randomTokenProbability = opts.randomTokenProbability ?? 0.1;
  checkProbability('selectProbability', selectProbability);
  checkProbability('maskTokenProbability', maskTokenProbability);
  checkProbability('randomTokenProbability', randomTokenProbability);
  if (maskTokenProbability + randomTokenProbability > 1 + 1e-9) {
    throw new UserError(
      `masking options maskTokenProbability + randomTokenProbability must be ≤ 1, got ${maskTokenProbability} + ${randomTokenProbability}`,
    );
  }
  if (!Number.isInteger(opts.maskId) || opts.maskId < 0 || opts.maskId >= opts.vocabSize) {
    throw new UserError(`masking: the tokenizer has no usable mask token (maskId ${opts.maskId}, vocabulary ${opts.vocabSize})`);
  }
  const isSpecial = new Uint8Array(opts.vocabSize);
  for (const id of opts.specialIds) if (id >= 0 && id < opts.vocabSize) isSpecial[id] = 1;
  isSpecial[opts.maskId] = 1;
  // Random replacements are drawn from the non-special ids.
  const replacements: number[] = [];
  for (let id = 0; id < opts.vocabSize; id++) if (!isSpecial[id]) replacements.push(id);
  if (replacements.length === 0) throw new UserError('masking: the vocabulary has no non-special tokens');
  if (opts.wordStarts && opts.wordStarts.length < opts.vocabSize) {
    throw new UserError(`masking: wordStarts covers ${opts.wordStarts.length} ids, expected ${opts.vocabSize}`);
  }
  return { selectProbability, maskTokenProbability, randomTokenProbability, isSpecial, replacements: Int32Array.from(replacements) };
}

export type ResolvedMasking = ReturnType<typeof resolveOptions>;

/**
 * A masker bound to one vocabulary: `mask(ids, rng)` returns the masked sequence. The caller owns
 * the random stream, so masks are reproducible (see `maskingRandom` for dynamic masking).
 */
export class TokenMasker {
  private readonly resolved: ResolvedMasking;

  constructor(private readonly opts: MaskingOptions) {
    this.resolved = resolveOptions(opts);
  }

  /** True for ids that are never selected (pad, specials, mask). */
  isSpecial(id: number): boolean {
    return this.resolved.isSpecial[id] === 1;
  }

  mask(ids: Int32Array, rng: SeededRandom): MaskedSequence {
    const { selectProbability, maskTokenProbability, randomTokenProbability, isSpecial, replacements } = this.resolved;
    const wordStarts = this.opts.wordStarts;
    // Group the candidate positions into units: single tokens, or whole words when wordStarts is given.
    const units: number[][] = [];
    let candidates = 0;
    let previousWasCandidate = false;
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t];
      if (id < 0 || id >= this.opts.vocabSize) {
        throw new UserError(`masking: token id ${id} at position ${t} is outside the vocabulary (size ${this.opts.vocabSize})`);
      }
      if (isSpecial[id]) {
        previousWasCandidate = false;
        continue;
      }
      candidates++;
      const continuesWord = wordStarts !== undefined && previousWasCandidate && wordStarts[id] === 0;
      if (continuesWord) units[units.length - 1].push(t);
      else units.push([t]);
      previousWasCandidate = true;
    }
    const input = Int32Array.from(ids);
    if (candidates === 0) return { input, positions: new Int32Array(0), labels: new Int32Array(0) };
    const target = Math.max(1, Math.round(candidates * selectProbability));
    rng.shuffle(units);
    const chosen: number[] = [];
    for (const unit of units) {
      if (chosen.length >= target) break;
      // A whole word that would overshoot the budget is skipped (as in Google's BERT), so the count stays exact-ish.
      if (chosen.length + unit.length > target) continue;
      for (const t of unit) chosen.push(t);
    }
    chosen.sort((a, b) => a - b);
    const positions = Int32Array.from(chosen);
    const labels = new Int32Array(positions.length);
    for (let i = 0; i < positions.length; i++) {
      const t = positions[i];
      labels[i] = ids[t];
      const u = rng.next();
      if (u < maskTokenProbability) input[t] = this.opts.maskId;
      else if (u < maskTokenProbability + randomTokenProbability) input[t] = replacements[rng.nextInt(replacements.length)];
      // else: left unchanged, but still predicted.
    }
    return { input, positions, labels };
  }
}

/**
 * Which vocabulary pieces begin a word: SentencePiece marks word starts with `▁`, WordPiece marks
 * continuations with `##`. Special ids are treated as word starts (they are never masked anyway).
 */
export function wordStartTable(vocab: MaskingVocabulary): Uint8Array {
  const starts = new Uint8Array(vocab.vocabSize);
  const sentencePiece = vocab.kind === 'sentencepiece';
  for (let id = 0; id < vocab.vocabSize; id++) {
    const piece = vocab.idToPiece(id) ?? '';
    starts[id] = sentencePiece ? (piece.startsWith('\u2581') ? 1 : 0) : piece.startsWith('##') ? 0 : 1;
  }
  return starts;
}

/**
 * A random stream for one (seed, epoch, sequence) triple. Dynamic masking draws a fresh mask for
 * every sequence each epoch; deriving the stream from the triple (instead of one running stream)
 * makes a mask independent of batch order, so resumed and evaluation runs see the same masks.
 */
export function maskingRandom(seed: number, epoch: number, sequenceIndex: number): SeededRandom {
  // Mix with odd multipliers (murmur-style) so nearby triples get unrelated states.
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ Math.imul(epoch + 1, 0xc2b2ae35), 0x27d4eb2f);
  h = Math.imul(h ^ (h >>> 16) ^ Math.imul(sequenceIndex + 1, 0x165667b1), 0x85ebca6b);
  h ^= h >>> 15;
  return new SeededRandom(h >>> 0);
}

export interface PackingOptions {
  /** Total length of a packed sequence, including the leading and closing special tokens. */
  maxLength: number;
  /** Opens each sequence (`[CLS]` / `<s>`). */
  clsId: number;
  /** Closes each sentence (`[SEP]` / `</s>`). */
  sepId: number;
}

/**
 * Packs consecutive sentences into sequences of at most `maxLength` tokens:
 * `[CLS] s1 [SEP] s2 [SEP] …` (RoBERTa's FULL-SENTENCES packing, with BERT's special tokens).
 * A sentence longer than a sequence on its own is cut into consecutive chunks. Empty sentences
 * are skipped. The order of tokens is kept, so the context the model sees is real running text.
 */
export function packSentences(sentences: readonly Int32Array[], opts: PackingOptions): Int32Array[] {
  if (!Number.isInteger(opts.maxLength) || opts.maxLength < 3) {
    throw new UserError(`maxLength: expected an integer ≥ 3, got ${opts.maxLength}`);
  }
  const room = opts.maxLength - 2;
  const packed: Int32Array[] = [];
  let current: number[] = [opts.clsId];
  const flush = () => {
    if (current.length > 1) packed.push(Int32Array.from(current));
    current = [opts.clsId];
  };
  for (const sentence of sentences) {
    if (sentence.length === 0) continue;
    if (sentence.length > room) {
      flush();
      for (let start = 0; start < sentence.length; start += room) {
        current.push(...sentence.subarray(start, Math.min(sentence.length, start + room)), opts.sepId);
        flush();
      }
      continue;
    }
    if (current.length + sentence.length + 1 > opts.maxLength) flush();
    for (const id of sentence) current.push(id);
    current.push(opts.sepId);
  }
  flush();
  return packed;
}

/** A padded batch of masked sequences, as flat row-major typed arrays. */
export interface MaskedLmBatch {
  /** Model input ids, `[batch, length]`, padded with padId. */
  tokens: Int32Array;
  tokensShape: [number, number];
  /** Positions to predict per row, `[batch, predictions]`; padding entries point at position 0. */
  positions: Int32Array;
  /** The original tokens at `positions`; padding entries hold padId (ignored by the loss). */
  labels: Int32Array;
  /** 1 for real predictions, 0 for padding entries; `[batch, predictions]`. */
  labelWeights: Float32Array;
  positionsShape: [number, number];
  /** Number of real predictions (the loss is a mean over these). */
  numPredictions: number;
  /** Number of non-pad input tokens. */
  numTokens: number;
}

/** Pads masked sequences into one batch. `padId` must be a special id, so it is never a label. */
export function makeMaskedLmBatch(sequences: readonly MaskedSequence[], padId: number): MaskedLmBatch {
  if (sequences.length === 0) throw new Error('makeMaskedLmBatch: empty batch');
  const batch = sequences.length;
  const length = Math.max(...sequences.map((s) => s.input.length));
  // At least one prediction column keeps tensor shapes non-empty.
  const predictions = Math.max(1, ...sequences.map((s) => s.positions.length));
  const tokens = new Int32Array(batch * length).fill(padId);
  const positions = new Int32Array(batch * predictions);
  const labels = new Int32Array(batch * predictions).fill(padId);
  const labelWeights = new Float32Array(batch * predictions);
  let numPredictions = 0;
  let numTokens = 0;
  sequences.forEach((s, b) => {
    tokens.set(s.input, b * length);
    numTokens += s.input.length;
    positions.set(s.positions, b * predictions);
    labels.set(s.labels, b * predictions);
    labelWeights.fill(1, b * predictions, b * predictions + s.positions.length);
    numPredictions += s.positions.length;
  });
  return {
    tokens,
    tokensShape: [batch, length],
    positions,
    labels,
    labelWeights,
    positionsShape: [batch, predictions],
    numPredictions,
    numTokens,
  };
}

/**
 * Token frequencies of a corpus (the train split) over the non-special vocabulary: the best
 * context-free predictor of a masked token. Add-k smoothed (k = 0.01 by default) only so that a
 * token unseen in training keeps a finite probability; k is small so that the baseline stays close
 * to the plain relative frequencies even for small corpora and large vocabularies.
 */
export class UnigramModel {
  readonly logProbs: Float64Array;

  constructor(counts: Float64Array, isSpecial: (id: number) => boolean, smoothing = 0.01) {
    if (!(smoothing > 0)) throw new Error(`UnigramModel: smoothing must be > 0, got ${smoothing}`);
    let total = 0;
    let support = 0;
    for (let id = 0; id < counts.length; id++) {
      if (isSpecial(id)) continue;
      total += counts[id] + smoothing;
      support++;
    }
    if (support === 0) throw new UserError('unigram baseline: the vocabulary has no non-special tokens');
    this.logProbs = new Float64Array(counts.length).fill(-Infinity);
    for (let id = 0; id < counts.length; id++) {
      if (!isSpecial(id)) this.logProbs[id] = Math.log((counts[id] + smoothing) / total);
    }
  }

  /** Counts the tokens of `sequences` (ids outside [0, vocabSize) are a caller bug). */
  static fromSequences(sequences: Iterable<Int32Array>, vocabSize: number, isSpecial: (id: number) => boolean, smoothing?: number): UnigramModel {
    const counts = new Float64Array(vocabSize);
    for (const seq of sequences) for (const id of seq) if (id >= 0 && id < vocabSize) counts[id]++;
    return new UnigramModel(counts, isSpecial, smoothing);
  }

  /** Sum of −log p(token) over `labels` (the masked tokens). */
  negativeLogLikelihood(labels: Iterable<number>): number {
    let nll = 0;
    for (const id of labels) nll -= this.logProbs[id];
    return nll;
  }
}
