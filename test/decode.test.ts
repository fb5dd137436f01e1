/**
 * Beam search and greedy decoding against toy step models whose scores are known exactly: a
 * Markov chain over the last token, so every hypothesis' score can be recomputed by hand and the
 * whole hypothesis space enumerated.
 */
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { beamSearch, greedyDecode } from '../src/decode/index.ts';
import type { DecoderStepModel, Hypothesis } from '../src/decode/index.ts';
import { UserError } from '../src/errors.ts';
import { SeededRandom } from '../src/random.ts';

const PAD = 0;
const BOS = 1;
const EOS = 2;

interface ToyState {
  last: number[];
  source: number[];
  disposed: boolean;
}

/** log p(next | last) = table[last][next]; the source only sets how many rows there are. */
class MarkovModel implements DecoderStepModel<ToyState> {
  bosId = BOS;
  readonly eosId = EOS;
  readonly padId = PAD;
  readonly maxTargetPositions: number;
  live = 0;
  constructor(readonly table: number[][], maxTargetPositions = 64) {
    this.maxTargetPositions = maxTargetPositions;
  }
  startDecoding(sourceIds: number[][], copies: number): ToyState {
    this.live++;
    return { last: [], source: sourceIds.flatMap((_, i) => Array(copies).fill(i)), disposed: false };
  }
  decodeStep(state: ToyState, tokens: Int32Array): tf.Tensor2D {
    expect(tokens.length).toBe(state.source.length);
    state.last = Array.from(tokens);
    return tf.tensor2d(state.last.map((t) => this.table[t]));
  }
  reorderDecoderState(state: ToyState, rows: Int32Array, sameSource: boolean): void {
    const newSource = Array.from(rows, (r) => state.source[r]);
    if (sameSource) expect(newSource).toEqual(state.source); // the promise the search makes
    state.source = newSource;
  }
  disposeDecoderState(state: ToyState): void {
    expect(state.disposed).toBe(false);
    state.disposed = true;
    this.live--;
  }
}

function logNormalize(probs: number[]): number[] {
  const z = probs.reduce((a, b) => a + b, 0);
  return probs.map((p) => (p > 0 ? Math.log(p / z) : -Infinity));
}

/** A random chain over V tokens (PAD/BOS get probability too: the search must ban them). */
function randomTable(V: number, seed: number): number[][] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: V }, () => logNormalize(Array.from({ length: V }, () => 0.05 + rng.next())));
}

function scoreOf(table: number[][], tokens: number[], lenPenalty: number): { score: number; positional: number[] } {
  const seq = [BOS, ...tokens, EOS];
  const positional = seq.slice(1).map((t, i) => table[seq[i]][t]);
  return { score: positional.reduce((a, b) => a + b, 0) / Math.pow(positional.length, lenPenalty), positional };
}

/** Every hypothesis of 1..maxLen content tokens (tokens ≥ 3), scored. */
function enumerate(table: number[][], maxLen: number, lenPenalty: number): { tokens: number[]; score: number }[] {
  const V = table.length;
  const out: { tokens: number[]; score: number }[] = [];
  const grow = (prefix: number[]) => {
    if (prefix.length >= 1) out.push({ tokens: prefix, score: scoreOf(table, prefix, lenPenalty).score });
    if (prefix.length === maxLen) return;
    for (let t = 3; t < V; t++) grow([...prefix, t]);
  };
  grow([]);
  return out.sort((a, b) => b.score - a.score);
}

function expectHypothesis(table: number[][], h: Hypothesis, lenPenalty: number): void {
  const { score, positional } = scoreOf(table, h.tokens, lenPenalty);
  expect(h.score).toBeCloseTo(score, 5);
  expect(h.positionalScores.length).toBe(h.tokens.length + 1);
  h.positionalScores.forEach((s, i) => expect(s).toBeCloseTo(positional[i], 5));
  expect(h.tokens).not.toContain(EOS);
  expect(h.tokens).not.toContain(PAD);
  expect(h.tokens).not.toContain(BOS);
}

// Greedy is misled: A (0.55) then only mediocre continuations; B (0.45) ends at once with 0.9.
const A = 3;
const B = 4;
const C = 5;
const tiny = 1e-6;
const GARDEN_PATH = [
  logNormalize([tiny, tiny, tiny, tiny, tiny, tiny]), // after PAD (never fed)
  logNormalize([tiny, tiny, tiny, 0.55, 0.45, tiny]), // after BOS
  logNormalize([tiny, tiny, 1, tiny, tiny, tiny]), // after EOS (never fed)
  logNormalize([tiny, tiny, tiny, 0.33, 0.33, 0.34]), // after A
  logNormalize([tiny, tiny, 0.9, tiny, tiny, 0.1]), // after B
  logNormalize([tiny, tiny, 1, tiny, tiny, tiny]), // after C
];

describe('beamSearch on a garden-path chain', () => {
  it('finds the better short hypothesis that greedy misses', async () => {
    const model = new MarkovModel(GARDEN_PATH);
    const [greedy] = await greedyDecode(model, [[7]], { maxLenB: 10 });
    expect(greedy.tokens).toEqual([A, C]);
    expectHypothesis(GARDEN_PATH, greedy, 1);
    const [beam] = await beamSearch(model, [[7]], { beamSize: 2, maxLenB: 10 });
    expect(beam).toHaveLength(1);
    expect(beam[0].tokens).toEqual([B]);
    expect(beam[0].score).toBeCloseTo((Math.log(0.45) + Math.log(0.9)) / 2, 4);
    expect(model.live).toBe(0);
  });

  it('returns n-best sorted by score', async () => {
    const model = new MarkovModel(GARDEN_PATH);
    const [nbest] = await beamSearch(model, [[7]], { beamSize: 3, nBest: 3, maxLenB: 10 });
    expect(nbest).toHaveLength(3);
    for (let i = 1; i < nbest.length; i++) expect(nbest[i - 1].score).toBeGreaterThanOrEqual(nbest[i].score);
    for (const h of nbest) expectHypothesis(GARDEN_PATH, h, 1);
    expect(nbest[0].tokens).toEqual([B]);
  });

  it('a length penalty of 0 ranks by total log-probability', async () => {
    const model = new MarkovModel(GARDEN_PATH);
    const [[best]] = await beamSearch(model, [[7]], { beamSize: 4, lenPenalty: 0, maxLenB: 10 });
    expect(best.tokens).toEqual([B]);
    expect(best.score).toBeCloseTo(Math.log(0.45) + Math.log(0.9), 4);
  });
});

describe('beamSearch against exhaustive enumeration', () => {
  for (const [seed, lenPenalty] of [[1, 1], [2, 0.5], [3, 2]] as const) {
    it(`with a beam wider than the search space it returns every hypothesis, in order (seed ${seed}, lenPenalty ${lenPenalty})`, async () => {
      const V = 6; // 3 content tokens
      const maxLen = 3;
      const table = randomTable(V, seed);
      const model = new MarkovModel(table);
      const all = enumerate(table, maxLen, lenPenalty); // 3 + 9 + 27 = 39 hypotheses
      // Every finite candidate (≤ 27 live prefixes × 4 tokens) fits in the top beamSize.
      const beamSize = 27 * 4;
      const [hyps] = await beamSearch(model, [[9, 9]], { beamSize, nBest: all.length, lenPenalty, maxLenB: maxLen });
      expect(hyps.map((h) => h.tokens)).toEqual(all.map((h) => h.tokens));
      hyps.forEach((h, i) => {
        expect(h.score).toBeCloseTo(all[i].score, 4);
        expectHypothesis(table, h, lenPenalty);
      });
    });
  }
});

describe('beamSearch rules', () => {
  const table = randomTable(8, 11);

  it('beam size 1 equals greedy, batched over sentences of different lengths', async () => {
    const model = new MarkovModel(table);
    const sources = [[5], [5, 6, 7], [3, 3]];
    const opts = { maxLenA: 1, maxLenB: 2 };
    const greedy = await greedyDecode(model, sources, opts);
    const beam = await beamSearch(model, sources, { ...opts, beamSize: 1 });
    beam.forEach(([h], i) => {
      expect(h.tokens).toEqual(greedy[i].tokens);
      expect(h.score).toBeCloseTo(greedy[i].score, 5);
    });
    expect(model.live).toBe(0);
  });

  it('stops at the length limit a·srcLen + b with EOS forced, and respects minLen', async () => {
    // A chain that never wants to stop: EOS has tiny probability everywhere.
    const sticky = Array.from({ length: 6 }, () => logNormalize([0.1, 0.1, 1e-9, 0.3, 0.3, 0.3]));
    const model = new MarkovModel(sticky);
    const sources = [[9], [9, 9, 9, 9]];
    const results = await beamSearch(model, sources, { beamSize: 3, nBest: 3, maxLenA: 0.5, maxLenB: 1 });
    // limits: floor(0.5·1 + 1) = 1 and floor(0.5·4 + 1) = 3
    results[0].forEach((h) => expect(h.tokens).toHaveLength(1));
    results[1].forEach((h) => expect(h.tokens).toHaveLength(3));
    results.flat().forEach((h) => expectHypothesis(sticky, h, 1));
    // An eager chain (EOS first) still yields minLen tokens.
    const eager = Array.from({ length: 6 }, () => logNormalize([0.01, 0.01, 0.9, 0.03, 0.03, 0.03]));
    const [[h]] = await beamSearch(new MarkovModel(eager), [[9]], { beamSize: 2, minLen: 2 });
    expect(h.tokens).toHaveLength(2);
    const [g] = await greedyDecode(new MarkovModel(eager), [[9]], { minLen: 2 });
    expect(g.tokens).toHaveLength(2);
  });

  it('works with EOS doubling as BOS (fairseq\'s convention) and never emits PAD', async () => {
    // PAD is the likeliest token everywhere; EOS is fed as the first token.
    const table = Array.from({ length: 6 }, (_, last) => logNormalize([0.5, 0.1, last === EOS ? 0.05 : 0.2, 0.15, 0.1, 0.1]));
    const model = new MarkovModel(table);
    model.bosId = EOS;
    const [[h]] = await beamSearch(model, [[9]], { beamSize: 3, maxLenB: 5 });
    const [g] = await greedyDecode(model, [[9]], { maxLenB: 5 });
    for (const hyp of [h, g]) {
      expect(hyp.tokens).not.toContain(PAD);
      // BOS (id 1) is an ordinary token here; the first step is scored from the EOS row.
      expect(hyp.positionalScores[0]).toBeCloseTo(table[EOS][hyp.tokens[0]], 5);
    }
    expect(g.tokens[0]).toBe(3); // after EOS: PAD banned, EOS 0.05 < token 3's 0.15
  });

  it('caps the output at the decoder positions', async () => {
    const sticky = Array.from({ length: 6 }, () => logNormalize([0.1, 0.1, 1e-9, 0.3, 0.3, 0.3]));
    const [[h]] = await beamSearch(new MarkovModel(sticky, 5), [[9]], { beamSize: 2, maxLenB: 200 });
    expect(h.tokens).toHaveLength(4); // positions 0..4: BOS + 4 tokens, EOS predicted at position 4
  });

  it('batched results equal one-sentence-at-a-time results', async () => {
    const model = new MarkovModel(table);
    const sources = [[3], [4, 5, 6, 7], [3, 4]];
    const opts = { beamSize: 4, nBest: 4, maxLenA: 1, maxLenB: 1, lenPenalty: 0.7 };
    const batched = await beamSearch(model, sources, opts);
    for (let i = 0; i < sources.length; i++) {
      const [alone] = await beamSearch(model, [sources[i]], opts);
      expect(batched[i].map((h) => h.tokens)).toEqual(alone.map((h) => h.tokens));
    }
  });

  it('rejects bad options with a UserError naming the option', async () => {
    const model = new MarkovModel(table);
    await expect(beamSearch(model, [[3]], { beamSize: 0 })).rejects.toThrow(/beamSize/);
    await expect(beamSearch(model, [[3]], { beamSize: 2, nBest: 3 })).rejects.toThrow(/nBest/);
    await expect(beamSearch(model, [[3]], { maxLenA: -1 })).rejects.toThrow(UserError);
    await expect(greedyDecode(model, [[3]], { maxLenB: 1.5 })).rejects.toThrow(/maxLenB/);
  });

  it('leaves no tensors behind', async () => {
    const model = new MarkovModel(table);
    await beamSearch(model, [[3, 4]], { beamSize: 3 });
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      await beamSearch(model, [[3, 4], [5]], { beamSize: 3, nBest: 2 });
      await greedyDecode(model, [[3, 4], [5]]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});
