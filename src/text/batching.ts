/**
 * Token-based batching in the manner of fairseq's `--max-tokens`: sentences of similar length
 * are grouped (sorted by length, ties broken by a seeded shuffle), each batch holds at most
 * `maxTokens` positions including padding, and the order of batches is shuffled per epoch.
 * Everything is a pure function of (sizes, seed, epoch), so `{ epoch, batchIndex }` names a batch
 * exactly and a run restarted at that position sees the same batches as one that never stopped.
 */
import { UserError } from '../errors.ts';
import { SeededRandom } from '../random.ts';

export interface BatchPosition {
  epoch: number;
  /** 0-based index of the next batch within the epoch. */
  batchIndex: number;
}

export interface TokenBatcherOptions {
  /** Most positions (sentences × longest sentence, padding included) one batch may hold. */
  maxTokens: number;
  seed: number;
  /** Shuffle ties and batch order per epoch (default true); false gives length order, the same every epoch. */
  shuffle?: boolean;
  /** Most sentences in one batch (default: no limit). */
  maxSentences?: number;
  /** Where `next()` starts (default `{ epoch: 1, batchIndex: 0 }`). */
  position?: BatchPosition;
}

/** Positions each sentence occupies: its ids plus `extraTokens` specials (e.g. 1 for eos or bos). */
export function sentenceSizes(ids: ArrayLike<ArrayLike<number>>, extraTokens = 1): number[] {
  const sizes = new Array<number>(ids.length);
  for (let i = 0; i < ids.length; i++) sizes[i] = ids[i].length + extraTokens;
  return sizes;
}

function epochSeed(seed: number, epoch: number): number {
  // A different, well-mixed stream per epoch (mulberry32 hashes its state, so nearby seeds are fine).
  return (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0;
}

export class TokenBatcher {
  readonly maxTokens: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly maxSentences: number;
  /** Sentence indices taken part in batching (all, or those kept by `filterByMaxPositions`). */
  readonly indices: readonly number[];
  private readonly sizes: Float64Array;
  private cachedEpoch = -1;
  private cachedBatches: number[][] = [];
  private pos: BatchPosition;

  /**
   * @param sizes positions per sentence (`sentenceSizes`), or per side of a pair — a pair's size is
   *   the larger of its two sides, so neither the padded source nor target batch exceeds maxTokens
   * @param indices the sentences to batch (default all)
   */
  constructor(
    sizes: ArrayLike<number> | { source: ArrayLike<number>; target: ArrayLike<number> },
    opts: TokenBatcherOptions,
    indices?: readonly number[],
  ) {
    if (!Number.isInteger(opts.maxTokens) || opts.maxTokens < 1) {
      throw new UserError(`maxTokens must be a positive integer, got ${opts.maxTokens}`);
    }
    if (opts.maxSentences !== undefined && (!Number.isInteger(opts.maxSentences) || opts.maxSentences < 1)) {
      throw new UserError(`maxSentences must be a positive integer, got ${opts.maxSentences}`);
    }
    const n = 'source' in sizes ? sizes.source.length : sizes.length;
    if ('source' in sizes && sizes.target.length !== n) {
      throw new Error(`TokenBatcher: ${n} source sizes but ${sizes.target.length} target sizes`);
    }
    this.sizes = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const s = 'source' in sizes ? Math.max(sizes.source[i], sizes.target[i]) : sizes[i];
      this.sizes[i] = Math.max(1, s);
    }
    this.indices = indices ?? Array.from({ length: n }, (_, i) => i);
    for (const i of this.indices) {
      if (!(i >= 0 && i < n)) throw new Error(`TokenBatcher: index ${i} outside 0..${n - 1}`);
      if (this.sizes[i] > opts.maxTokens) {
        throw new UserError(
          `sentence ${i + 1} takes ${this.sizes[i]} positions, more than maxTokens ${opts.maxTokens} (raise \`maxTokens\`, or leave long lines out with filterByMaxPositions)`,
        );
      }
    }
    if (this.indices.length === 0) throw new UserError('no sentences to batch (the corpus is empty or every line was filtered out)');
    this.maxTokens = opts.maxTokens;
    this.seed = opts.seed;
    this.shuffle = opts.shuffle ?? true;
    this.maxSentences = opts.maxSentences ?? Infinity;
    this.pos = { ...(opts.position ?? { epoch: 1, batchIndex: 0 }) };
  }

  get numSentences(): number {
    return this.indices.length;
  }

  /** The batches of an epoch, as sentence indices; the same for the same (sizes, seed, epoch). */
  epochBatches(epoch: number): number[][] {
    if (epoch === this.cachedEpoch) return this.cachedBatches;
    const rng = new SeededRandom(epochSeed(this.seed, epoch));
    const order = [...this.indices];
    if (this.shuffle) rng.shuffle(order);
    // Stable sort: equal lengths keep the shuffled (or index) order.
    order.sort((a, b) => this.sizes[a] - this.sizes[b]);
    const batches: number[][] = [];
    let batch: number[] = [];
    let longest = 0;
    for (const i of order) {
      const size = this.sizes[i];
      const newLongest = Math.max(longest, size);
      if (batch.length > 0 && ((batch.length + 1) * newLongest > this.maxTokens || batch.length >= this.maxSentences)) {
        batches.push(batch);
        batch = [];
        longest = 0;
      }
      batch.push(i);
      longest = Math.max(longest, size);
    }
    if (batch.length > 0) batches.push(batch);
    if (this.shuffle) rng.shuffle(batches);
    this.cachedEpoch = epoch;
    this.cachedBatches = batches;
    return batches;
  }

  numBatches(epoch: number): number {
    return this.epochBatches(epoch).length;
  }

  /** The position of the next batch `next()` returns (save it in a checkpoint). */
  get position(): BatchPosition {
    return { ...this.pos };
  }

  set position(p: BatchPosition) {
    if (!Number.isInteger(p.epoch) || !Number.isInteger(p.batchIndex) || p.batchIndex < 0 || p.batchIndex > this.numBatches(p.epoch)) {
      throw new UserError(`data position epoch ${p.epoch}, batch ${p.batchIndex} does not exist for this corpus and batch size`);
    }
    this.pos = { ...p };
  }

  /** Returns the batch at `position` and advances, moving to the next epoch after its last batch. */
  next(): { indices: number[]; position: BatchPosition; lastOfEpoch: boolean } {
    let batches = this.epochBatches(this.pos.epoch);
    if (this.pos.batchIndex >= batches.length) {
      this.pos = { epoch: this.pos.epoch + 1, batchIndex: 0 };
      batches = this.epochBatches(this.pos.epoch);
    }
    const position = { ...this.pos };
    const indices = batches[position.batchIndex];
    this.pos = { epoch: position.epoch, batchIndex: position.batchIndex + 1 };
    return { indices, position, lastOfEpoch: position.batchIndex === batches.length - 1 };
  }
}

export interface MaxPositionsOptions {
  maxPositions: number;
  /** 'skip' drops long lines and counts them; 'error' throws naming the first one's file and line. */
  policy: 'skip' | 'error';
  /** Specials added to each sentence before it enters the model (default 1: eos, or bos for decoder input). */
  extraTokens?: number;
  /**
   * For the 'error' message: the setting `maxPositions` comes from (e.g. 'data.maxLength'; default
   * 'maxPositions') and the one that chooses `policy` (e.g. 'data.longLines'), named in backticks in
   * its hint so that a CLI can show the flags that set them.
   */
  keys?: { maxPositions: string; policy?: string };
}

export interface CorpusSide {
  path: string;
  ids: ArrayLike<ArrayLike<number>>;
}

/**
 * Keeps the sentences whose every side fits in `maxPositions` (ids + extraTokens).
 * Returns the kept indices (for TokenBatcher) and how many were skipped.
 */
export function filterByMaxPositions(sides: CorpusSide[], opts: MaxPositionsOptions): { kept: number[]; skipped: number } {
  if (!Number.isInteger(opts.maxPositions) || opts.maxPositions < 1) {
    throw new UserError(`maxPositions must be a positive integer, got ${opts.maxPositions}`);
  }
  const extra = opts.extraTokens ?? 1;
  const n = sides[0]?.ids.length ?? 0;
  const kept: number[] = [];
  let skipped = 0;
  for (let i = 0; i < n; i++) {
    let fits = true;
    for (const side of sides) {
      const size = side.ids[i].length + extra;
      if (size > opts.maxPositions) {
        if (opts.policy === 'error') {
          const key = opts.keys?.maxPositions ?? 'maxPositions';
          const skip = opts.keys?.policy ? `set \`${opts.keys.policy}\` to skip to drop such lines` : 'skip long lines';
          throw new UserError(
            `${side.path}:${i + 1}: ${size} tokens${extra > 0 ? ` (with ${extra} special)` : ''}, longer than ${key} ${opts.maxPositions} (shorten it, raise \`${key}\`, or ${skip})`,
          );
        }
        fits = false;
      }
    }
    if (fits) kept.push(i);
    else skipped++;
  }
  return { kept, skipped };
}

export interface SpecialTokenIds {
  padId: number;
  bosId: number;
  eosId: number;
}

export interface PaddedBatch {
  /** Row-major [B, L]. */
  ids: Int32Array;
  shape: [number, number];
  /** [B, L], 1 at padding positions, 0 at tokens (the `keyPaddingMask` convention). */
  paddingMask: Float32Array;
  /** Real tokens per row. */
  lengths: number[];
}

/** Right-pads sequences into one [B, L] block, optionally adding a token before and/or after each. */
export function padSequences(
  seqs: ArrayLike<ArrayLike<number>>,
  padId: number,
  add: { prepend?: number; append?: number } = {},
): PaddedBatch {
  const extra = (add.prepend !== undefined ? 1 : 0) + (add.append !== undefined ? 1 : 0);
  let width = 0;
  for (let b = 0; b < seqs.length; b++) width = Math.max(width, seqs[b].length + extra);
  const ids = new Int32Array(seqs.length * width).fill(padId);
  const paddingMask = new Float32Array(seqs.length * width).fill(1);
  const lengths: number[] = [];
  for (let b = 0; b < seqs.length; b++) {
    const row = b * width;
    let k = 0;
    if (add.prepend !== undefined) ids[row + k++] = add.prepend;
    const s = seqs[b];
    for (let j = 0; j < s.length; j++) ids[row + k++] = s[j];
    if (add.append !== undefined) ids[row + k++] = add.append;
    paddingMask.fill(0, row, row + k);
    lengths.push(k);
  }
  return { ids, shape: [seqs.length, width], paddingMask, lengths };
}

export interface TranslationBatch {
  /** Source ids + eos, right-padded: [B, S]. */
  source: Int32Array;
  sourceShape: [number, number];
  sourcePaddingMask: Float32Array;
  /** Decoder input: bos + target ids, right-padded: [B, T]. */
  targetIn: Int32Array;
  /** Decoder output (what the loss predicts): target ids + eos, right-padded: [B, T]. */
  targetOut: Int32Array;
  targetShape: [number, number];
  targetPaddingMask: Float32Array;
  /** Non-padding target tokens (the loss is averaged over these). */
  numTokens: number;
  numSentences: number;
}

/** Builds the padded arrays of one translation batch (teacher forcing: targetIn is targetOut shifted right). */
export function makeTranslationBatch(
  source: ArrayLike<ArrayLike<number>>,
  target: ArrayLike<ArrayLike<number>>,
  specials: SpecialTokenIds,
): TranslationBatch {
  if (source.length !== target.length) throw new Error(`makeTranslationBatch: ${source.length} sources but ${target.length} targets`);
  const src = padSequences(source, specials.padId, { append: specials.eosId });
  const tin = padSequences(target, specials.padId, { prepend: specials.bosId });
  const tout = padSequences(target, specials.padId, { append: specials.eosId });
  return {
    source: src.ids,
    sourceShape: src.shape,
    sourcePaddingMask: src.paddingMask,
    targetIn: tin.ids,
    targetOut: tout.ids,
    targetShape: tout.shape,
    targetPaddingMask: tout.paddingMask,
    numTokens: tout.lengths.reduce((a, b) => a + b, 0),
    numSentences: source.length,
  };
}
