import { describe, expect, it } from 'vitest';
import { SeededRandom } from '../src/random.ts';
import {
  TokenMasker,
  UnigramModel,
  makeMaskedLmBatch,
  maskingRandom,
  packSentences,
  wordStartTable,
} from '../src/text/masking.ts';

// A SentencePiece-like vocabulary: pad 0, unk 1, bos 2, eos 3, <mask> 4, then pieces.
const PAD = 0;
const UNK = 1;
const BOS = 2;
const EOS = 3;
const MASK = 4;
const VOCAB = 200;
const SPECIALS = [PAD, UNK, BOS, EOS, MASK];

function randomSequence(rng: SeededRandom, length: number): Int32Array {
  const ids = new Int32Array(length);
  ids[0] = BOS;
  for (let t = 1; t < length - 1; t++) ids[t] = 5 + rng.nextInt(VOCAB - 5);
  ids[length - 1] = EOS;
  return ids;
}

describe('TokenMasker (BERT 15 % with 80/10/10)', () => {
  it('selects 15 % ± 1 % of non-special tokens and splits them 80/10/10 ± 2 % on a large sample', () => {
    const masker = new TokenMasker({ maskId: MASK, vocabSize: VOCAB, specialIds: SPECIALS });
    const data = new SeededRandom(7);
    let candidates = 0;
    let selected = 0;
    let masked = 0;
    let randomised = 0;
    let unchanged = 0;
    let violations = 0;
    for (let i = 0; i < 2000; i++) {
      const ids = randomSequence(data, 40 + data.nextInt(60));
      // Add padding and specials in the middle to check that they are never chosen.
      const padded = new Int32Array(ids.length + 5);
      padded.set(ids);
      padded[Math.floor(ids.length / 2)] = UNK;
      const out = masker.mask(padded, maskingRandom(3, 0, i));
      for (const id of padded) if (!SPECIALS.includes(id)) candidates++;
      selected += out.positions.length;
      for (let k = 0; k < out.positions.length; k++) {
        const t = out.positions[k];
        if (SPECIALS.includes(padded[t]) || out.labels[k] !== padded[t]) violations++;
        if (out.input[t] === MASK) masked++;
        else if (out.input[t] === padded[t]) unchanged++;
        else randomised++;
      }
      // Positions not selected are untouched; specials and padding are untouched everywhere.
      const chosen = new Set(out.positions);
      for (let t = 0; t < padded.length; t++) if (!chosen.has(t) && out.input[t] !== padded[t]) violations++;
    }
    expect(violations).toBe(0);
    expect(Math.abs(selected / candidates - 0.15)).toBeLessThan(0.01);
    // A random replacement can draw the original token (1/195 of the time): it then counts as unchanged.
    expect(Math.abs(masked / selected - 0.8)).toBeLessThan(0.02);
    expect(Math.abs(randomised / selected - 0.1)).toBeLessThan(0.02);
    expect(Math.abs(unchanged / selected - 0.1)).toBeLessThan(0.02);
  });

  it('never draws a special token as the random replacement', () => {
    const masker = new TokenMasker({
      maskId: MASK,
      vocabSize: VOCAB,
      specialIds: SPECIALS,
      maskTokenProbability: 0,
      randomTokenProbability: 1,
    });
    const data = new SeededRandom(11);
    for (let i = 0; i < 300; i++) {
      const out = masker.mask(randomSequence(data, 64), maskingRandom(1, 0, i));
      for (const t of out.positions) expect(SPECIALS).not.toContain(out.input[t]);
    }
  });

  it('masks nothing in a sequence of only specials, and at least one token otherwise', () => {
    const masker = new TokenMasker({ maskId: MASK, vocabSize: VOCAB, specialIds: SPECIALS });
    const onlySpecials = Int32Array.from([BOS, PAD, EOS, PAD]);
    expect(masker.mask(onlySpecials, new SeededRandom(1)).positions.length).toBe(0);
    const short = Int32Array.from([BOS, 17, EOS]);
    const out = masker.mask(short, new SeededRandom(1));
    expect(Array.from(out.positions)).toEqual([1]);
    expect(Array.from(out.labels)).toEqual([17]);
  });

  it('is deterministic per (seed, epoch, sequence) and re-draws across epochs (dynamic masking)', () => {
    const masker = new TokenMasker({ maskId: MASK, vocabSize: VOCAB, specialIds: SPECIALS });
    const ids = randomSequence(new SeededRandom(5), 120);
    const a = masker.mask(ids, maskingRandom(42, 0, 9));
    const b = masker.mask(ids, maskingRandom(42, 0, 9));
    expect(Array.from(a.input)).toEqual(Array.from(b.input));
    expect(Array.from(a.positions)).toEqual(Array.from(b.positions));
    const otherEpoch = masker.mask(ids, maskingRandom(42, 1, 9));
    const otherSeed = masker.mask(ids, maskingRandom(43, 0, 9));
    expect(Array.from(otherEpoch.positions)).not.toEqual(Array.from(a.positions));
    expect(Array.from(otherSeed.positions)).not.toEqual(Array.from(a.positions));
  });

  it('rejects bad options with a clear message', () => {
    expect(() => new TokenMasker({ maskId: MASK, vocabSize: VOCAB, specialIds: SPECIALS, selectProbability: 1.5 })).toThrow(
      /selectProbability/,
    );
    expect(
      () => new TokenMasker({ maskId: MASK, vocabSize: VOCAB, specialIds: SPECIALS, maskTokenProbability: 0.8, randomTokenProbability: 0.5 }),
    ).toThrow(/≤ 1/);
    expect(() => new TokenMasker({ maskId: -1, vocabSize: VOCAB, specialIds: SPECIALS })).toThrow(/mask token/);
    const masker = new TokenMasker({ maskId: MASK, vocabSize: VOCAB, specialIds: SPECIALS });
    expect(() => masker.mask(Int32Array.from([BOS, 999, EOS]), new SeededRandom(1))).toThrow(/position 1/);
  });
});

describe('whole-word masking', () => {
  // Pieces: ids 5.. alternate word starts and continuations in both tokenizer conventions.
  const pieces = ['<pad>', '<unk>', '<s>', '</s>', '<mask>'];
  for (let id = 5; id < 60; id++) pieces.push(id % 3 === 2 ? `\u2581w${id}` : `p${id}`);
  const sentencePieceVocab = { vocabSize: pieces.length, kind: 'sentencepiece', idToPiece: (id: number) => pieces[id] };
  const wordPieces = pieces.map((p, id) => (id < 5 ? p : p.startsWith('\u2581') ? p.slice(1) : `##${p}`));
  const wordPieceVocab = { vocabSize: wordPieces.length, kind: 'huggingface', idToPiece: (id: number) => wordPieces[id] };

  it('reads word starts from ▁ (SentencePiece) and ## (WordPiece) and agrees between both', () => {
    const sp = wordStartTable(sentencePieceVocab);
    const wp = wordStartTable(wordPieceVocab);
    for (let id = 5; id < pieces.length; id++) expect(sp[id]).toBe(id % 3 === 2 ? 1 : 0);
    expect(Array.from(wp.subarray(5))).toEqual(Array.from(sp.subarray(5)));
  });

  it('masks all pieces of a word or none of them', () => {
    const wordStarts = wordStartTable(sentencePieceVocab);
    const masker = new TokenMasker({ maskId: MASK, vocabSize: pieces.length, specialIds: SPECIALS, wordStarts });
    const data = new SeededRandom(3);
    let selected = 0;
    let candidates = 0;
    let splitWords = 0;
    for (let i = 0; i < 500; i++) {
      // Words of 1–3 pieces, between BOS and EOS.
      const ids: number[] = [BOS];
      const wordOf: number[] = [-1];
      for (let w = 0; w < 30; w++) {
        const n = 1 + data.nextInt(3);
        ids.push(5 + 3 * data.nextInt(18)); // a start piece (id % 3 === 2)
        wordOf.push(w);
        for (let k = 1; k < n; k++) {
          ids.push(6 + 3 * data.nextInt(18)); // a continuation piece
          wordOf.push(w);
        }
      }
      ids.push(EOS);
      wordOf.push(-1);
      const out = masker.mask(Int32Array.from(ids), maskingRandom(8, 0, i));
      const chosen = new Set(out.positions);
      for (let t = 0; t < ids.length; t++) {
        if (wordOf[t] < 0) continue;
        candidates++;
        // Every piece of the same word shares the decision.
        for (let s = 0; s < ids.length; s++) if (wordOf[s] === wordOf[t] && chosen.has(s) !== chosen.has(t)) splitWords++;
      }
      selected += out.positions.length;
    }
    expect(splitWords).toBe(0);
    expect(Math.abs(selected / candidates - 0.15)).toBeLessThan(0.01);
  });
});

describe('packSentences', () => {
  it('packs consecutive sentences as [CLS] s1 [SEP] s2 [SEP] up to maxLength, in order', () => {
    const s = (...ids: number[]) => Int32Array.from(ids);
    const packed = packSentences([s(10, 11, 12), s(13, 14), s(), s(15, 16, 17, 18), s(19)], { maxLength: 8, clsId: BOS, sepId: EOS });
    expect(packed.map((p) => Array.from(p))).toEqual([
      [BOS, 10, 11, 12, EOS, 13, 14, EOS],
      [BOS, 15, 16, 17, 18, EOS, 19, EOS],
    ]);
  });

  it('cuts a sentence longer than a sequence into consecutive chunks, never exceeding maxLength', () => {
    const long = Int32Array.from({ length: 13 }, (_, i) => 100 + i);
    const packed = packSentences([Int32Array.from([7]), long, Int32Array.from([8])], { maxLength: 6, clsId: BOS, sepId: EOS });
    for (const p of packed) expect(p.length).toBeLessThanOrEqual(6);
    const content = packed.flatMap((p) => Array.from(p).filter((id) => id !== BOS && id !== EOS));
    expect(content).toEqual([7, ...Array.from(long), 8]);
    expect(() => packSentences([], { maxLength: 2, clsId: BOS, sepId: EOS })).toThrow(/maxLength/);
  });
});

describe('makeMaskedLmBatch', () => {
  it('pads tokens and prediction lists and weights only the real predictions', () => {
    const batch = makeMaskedLmBatch(
      [
        { input: Int32Array.from([2, 4, 9, 3]), positions: Int32Array.from([1]), labels: Int32Array.from([8]) },
        { input: Int32Array.from([2, 4, 4, 7, 9, 3]), positions: Int32Array.from([1, 2, 4]), labels: Int32Array.from([5, 6, 9]) },
      ],
      PAD,
    );
    expect(batch.tokensShape).toEqual([2, 6]);
    expect(Array.from(batch.tokens)).toEqual([2, 4, 9, 3, 0, 0, 2, 4, 4, 7, 9, 3]);
    expect(batch.positionsShape).toEqual([2, 3]);
    expect(Array.from(batch.positions)).toEqual([1, 0, 0, 1, 2, 4]);
    expect(Array.from(batch.labels)).toEqual([8, PAD, PAD, 5, 6, 9]);
    expect(Array.from(batch.labelWeights)).toEqual([1, 0, 0, 1, 1, 1]);
    expect(batch.numPredictions).toBe(4);
    expect(batch.numTokens).toBe(10);
  });
});

describe('UnigramModel', () => {
  it('gives add-k smoothed frequencies over non-special tokens', () => {
    const isSpecial = (id: number) => id < 5;
    const model = UnigramModel.fromSequences([Int32Array.from([2, 5, 5, 6, 3]), Int32Array.from([5, 0])], 8, isSpecial, 1);
    // Counts over {5, 6, 7}: 3, 1, 0 → smoothed 4, 2, 1 of 7.
    expect(model.logProbs[5]).toBeCloseTo(Math.log(4 / 7), 12);
    expect(model.logProbs[6]).toBeCloseTo(Math.log(2 / 7), 12);
    expect(model.logProbs[7]).toBeCloseTo(Math.log(1 / 7), 12);
    expect(model.logProbs[0]).toBe(-Infinity);
    expect(model.negativeLogLikelihood([5, 7])).toBeCloseTo(-Math.log(4 / 7) - Math.log(1 / 7), 12);
    // The default k = 0.01 stays close to the relative frequencies 3/4, 1/4.
    const plain = UnigramModel.fromSequences([Int32Array.from([2, 5, 5, 6, 3]), Int32Array.from([5, 0])], 8, isSpecial);
    expect(plain.logProbs[5]).toBeCloseTo(Math.log(3.01 / 4.03), 12);
  });
});
