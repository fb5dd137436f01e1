import { describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import { SeededRandom } from '../src/random.ts';
import {
  TokenBatcher,
  filterByMaxPositions,
  makeTranslationBatch,
  padSequences,
  sentenceSizes,
} from '../src/text/batching.ts';

function randomSizes(n: number, seed: number, max = 60): { source: number[]; target: number[] } {
  const rng = new SeededRandom(seed);
  const source = Array.from({ length: n }, () => 1 + rng.nextInt(max));
  // Targets loosely track sources, like translations do.
  const target = source.map((s) => Math.max(1, s + rng.nextInt(11) - 5));
  return { source, target };
}

describe('TokenBatcher', () => {
  it('never exceeds maxTokens (padding included) on either side and covers every sentence exactly once per epoch', () => {
    for (const [n, maxTokens, seed] of [
      [500, 256, 1],
      [1000, 70, 2],
      [37, 4096, 3],
      [2000, 100, 4],
    ]) {
      const sizes = randomSizes(n, seed);
      const batcher = new TokenBatcher(sizes, { maxTokens, seed });
      for (const epoch of [1, 2, 3]) {
        const seen = new Array(n).fill(0);
        for (const batch of batcher.epochBatches(epoch)) {
          expect(batch.length).toBeGreaterThan(0);
          const longestSrc = Math.max(...batch.map((i) => sizes.source[i]));
          const longestTgt = Math.max(...batch.map((i) => sizes.target[i]));
          expect(batch.length * longestSrc).toBeLessThanOrEqual(maxTokens);
          expect(batch.length * longestTgt).toBeLessThanOrEqual(maxTokens);
          for (const i of batch) seen[i]++;
        }
        expect(seen.every((c) => c === 1)).toBe(true);
      }
    }
  });

  it('groups sentences of similar length (bucketing) so padding stays small', () => {
    const sizes = randomSizes(3000, 7);
    const batcher = new TokenBatcher(sizes, { maxTokens: 512, seed: 1 });
    let padded = 0;
    let real = 0;
    for (const batch of batcher.epochBatches(1)) {
      const longest = Math.max(...batch.map((i) => Math.max(sizes.source[i], sizes.target[i])));
      padded += batch.length * longest;
      real += batch.reduce((s, i) => s + Math.max(sizes.source[i], sizes.target[i]), 0);
    }
    // Random batches of these sizes would waste about half the positions; sorted ones waste a few percent.
    expect(real / padded).toBeGreaterThan(0.9);
  });

  it('is deterministic for a seed, reshuffles between epochs, and differs between seeds', () => {
    const sizes = randomSizes(800, 11);
    const a = new TokenBatcher(sizes, { maxTokens: 300, seed: 42 });
    const b = new TokenBatcher(sizes, { maxTokens: 300, seed: 42 });
    const c = new TokenBatcher(sizes, { maxTokens: 300, seed: 43 });
    expect(b.epochBatches(1)).toEqual(a.epochBatches(1));
    expect(b.epochBatches(5)).toEqual(a.epochBatches(5));
    expect(a.epochBatches(2)).not.toEqual(a.epochBatches(1));
    expect(c.epochBatches(1)).not.toEqual(a.epochBatches(1));
  });

  it('without shuffling gives batches in length order, the same every epoch', () => {
    const sizes = sentenceSizes([[1, 2, 3], [1], [1, 2], [5, 5, 5, 5], [9]], 1);
    const batcher = new TokenBatcher(sizes, { maxTokens: 6, seed: 0, shuffle: false });
    expect(batcher.epochBatches(1)).toEqual([[1, 4], [2], [0], [3]]);
    expect(batcher.epochBatches(2)).toEqual(batcher.epochBatches(1));
  });

  it('respects maxSentences', () => {
    const batcher = new TokenBatcher(new Array(100).fill(3), { maxTokens: 1000, seed: 1, maxSentences: 8 });
    const batches = batcher.epochBatches(1);
    expect(Math.max(...batches.map((b) => b.length))).toBe(8);
    expect(batches.reduce((s, b) => s + b.length, 0)).toBe(100);
  });

  it('resumes at the exact position: a restarted run sees the same batches as an uninterrupted one', () => {
    const sizes = randomSizes(400, 5);
    const opts = { maxTokens: 200, seed: 9 };
    const straight = new TokenBatcher(sizes, opts);
    const reference = Array.from({ length: 3 * straight.numBatches(1) }, () => straight.next());
    // Stop somewhere in epoch 2, save the position, restart in a fresh batcher.
    const first = new TokenBatcher(sizes, opts);
    const stopAt = first.numBatches(1) + 7;
    for (let i = 0; i < stopAt; i++) first.next();
    const saved = JSON.parse(JSON.stringify(first.position));
    expect(saved).toEqual({ epoch: 2, batchIndex: 7 });
    const resumed = new TokenBatcher(sizes, { ...opts, position: saved });
    for (let i = stopAt; i < reference.length; i++) {
      const got = resumed.next();
      expect(got.position).toEqual(reference[i].position);
      expect(got.indices).toEqual(reference[i].indices);
    }
  });

  it('moves to the next epoch after the last batch, and flags it', () => {
    const batcher = new TokenBatcher([2, 2, 2, 2], { maxTokens: 4, seed: 1 });
    const got = Array.from({ length: 3 }, () => batcher.next());
    expect(got.map((g) => g.position)).toEqual([
      { epoch: 1, batchIndex: 0 },
      { epoch: 1, batchIndex: 1 },
      { epoch: 2, batchIndex: 0 },
    ]);
    expect(got.map((g) => g.lastOfEpoch)).toEqual([false, true, false]);
  });

  it('batches only the given indices', () => {
    const batcher = new TokenBatcher([1, 2, 3, 4, 5, 6], { maxTokens: 100, seed: 1 }, [0, 2, 4]);
    expect(batcher.epochBatches(1).flat().sort()).toEqual([0, 2, 4]);
  });

  it('rejects a sentence longer than maxTokens, a bad maxTokens, a position that does not exist, and an empty corpus', () => {
    expect(() => new TokenBatcher([3, 50], { maxTokens: 10, seed: 1 })).toThrow(/sentence 2 takes 50 positions, more than maxTokens 10/);
    expect(() => new TokenBatcher([3], { maxTokens: 0, seed: 1 })).toThrow(UserError);
    expect(() => new TokenBatcher([], { maxTokens: 10, seed: 1 })).toThrow(/no sentences/);
    const b = new TokenBatcher([3, 3, 3], { maxTokens: 3, seed: 1 });
    expect(() => (b.position = { epoch: 1, batchIndex: 4 })).toThrow(/does not exist/);
  });
});

describe('filterByMaxPositions', () => {
  const source = [[1, 2], [1, 2, 3, 4, 5], [1], [1, 2, 3]].map((a) => Int32Array.from(a));
  const target = [[1], [1], [1, 2, 3, 4, 5, 6], [1, 2]].map((a) => Int32Array.from(a));
  const sides = [
    { path: 'dir/train.en', ids: source },
    { path: 'dir/train.es', ids: target },
  ];

  it('skips lines too long on either side and counts them', () => {
    expect(filterByMaxPositions(sides, { maxPositions: 4, policy: 'skip' })).toEqual({ kept: [0, 3], skipped: 2 });
    expect(filterByMaxPositions(sides, { maxPositions: 7, policy: 'skip' })).toEqual({ kept: [0, 1, 2, 3], skipped: 0 });
  });

  it("with policy 'error' names the file and line", () => {
    expect(() => filterByMaxPositions(sides, { maxPositions: 4, policy: 'error' })).toThrow(
      /^dir\/train\.en:2: 6 tokens \(with 1 special\), longer than maxPositions 4 \(shorten it, raise `maxPositions`, or skip long lines\)$/,
    );
    expect(() => filterByMaxPositions(sides, { maxPositions: 6, policy: 'error' })).toThrow(/^dir\/train\.es:3: 7 tokens \(with 1 special\), longer than maxPositions 6/);
  });

  it("names the caller's config keys in the 'error' message, in backticks for a CLI to map", () => {
    const keys = { maxPositions: 'data.maxLength', policy: 'data.longLines' };
    expect(() => filterByMaxPositions(sides, { maxPositions: 4, policy: 'error', extraTokens: 0, keys })).toThrow(
      /^dir\/train\.en:2: 5 tokens, longer than data\.maxLength 4 \(shorten it, raise `data\.maxLength`, or set `data\.longLines` to skip to drop such lines\)$/,
    );
    // The same rule whatever the keys: 'skip' keeps what 'error' accepts.
    expect(filterByMaxPositions(sides, { maxPositions: 6, policy: 'skip', extraTokens: 0, keys })).toEqual({ kept: [0, 1, 2, 3], skipped: 0 });
    expect(() => filterByMaxPositions(sides, { maxPositions: 6, policy: 'error', extraTokens: 0, keys })).not.toThrow();
  });
});

describe('makeTranslationBatch', () => {
  it('appends eos to sources, shifts targets right with bos, pads on the right and marks padding', () => {
    const specials = { padId: 0, bosId: 2, eosId: 3 };
    const batch = makeTranslationBatch([Int32Array.from([10, 11, 12]), Int32Array.from([20])], [Int32Array.from([30]), Int32Array.from([40, 41])], specials);
    expect(batch.sourceShape).toEqual([2, 4]);
    expect([...batch.source]).toEqual([10, 11, 12, 3, 20, 3, 0, 0]);
    expect([...batch.sourcePaddingMask]).toEqual([0, 0, 0, 0, 0, 0, 1, 1]);
    expect(batch.targetShape).toEqual([2, 3]);
    expect([...batch.targetIn]).toEqual([2, 30, 0, 2, 40, 41]);
    expect([...batch.targetOut]).toEqual([30, 3, 0, 40, 41, 3]);
    expect([...batch.targetPaddingMask]).toEqual([0, 0, 1, 0, 0, 0]);
    expect(batch.numTokens).toBe(5);
    expect(batch.numSentences).toBe(2);
  });

  it('padSequences handles empty sequences and optional specials', () => {
    const p = padSequences([[], [7, 8]], 0, { prepend: 2 });
    expect(p.shape).toEqual([2, 3]);
    expect([...p.ids]).toEqual([2, 0, 0, 2, 7, 8]);
    expect(p.lengths).toEqual([1, 3]);
  });
});
