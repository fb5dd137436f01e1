// sacreBLEU compatibility of src/metrics: every case of the reference vectors (computed with
// sacreBLEU 2.6.0, see test/fixtures/bleu-vectors/expected.json), plus hand-computed edge cases.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import {
  bleuSegmentStats,
  closestRefLength,
  computeBleu,
  computeChrf,
  corpusBleu,
  corpusChrf,
  formatScoreJson,
  formatScoreText,
  perplexity,
  sentenceBleu,
  sentenceChrf,
  splitWordsForChrf,
  tokenize13a,
  tokenizeChar,
  tokenizeIntl,
  type BleuOptions,
} from '../src/metrics/index.ts';
import { pyFloatRepr, pyFormatFixed, pySplit } from '../src/metrics/python-text.ts';

const VECTORS = new URL('./fixtures/bleu-vectors/', import.meta.url);
const readLines = (name: string): string[] => {
  const lines = readFileSync(new URL(name, VECTORS), 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
};

interface CorpusCase {
  name: string;
  hyp: string;
  refs: string[];
  options: { tokenize?: BleuOptions['tokenize']; lowercase?: boolean };
  bleu: number;
  precisions: number[];
  bp: number;
  sys_len: number;
  ref_len: number;
  counts: number[];
  totals: number[];
  signature: string;
  chrf: number;
}
const expected = JSON.parse(readFileSync(new URL('expected.json', VECTORS), 'utf8')) as {
  sacrebleu_version: string;
  corpus: CorpusCase[];
  sentence_effective_order: { line: number; bleu: number }[];
};

const TOL = 1e-4;

describe('sacreBLEU 2.6.0 reference vectors', () => {
  it('covers the expected cases', () => {
    expect(expected.sacrebleu_version).toBe('2.6.0');
    expect(expected.corpus.length).toBeGreaterThanOrEqual(10);
    expect(expected.sentence_effective_order.length).toBeGreaterThanOrEqual(20);
  });

  for (const c of expected.corpus) {
    it(`corpus BLEU ${c.name}`, () => {
      const hyps = readLines(c.hyp);
      const refStreams = c.refs.map(readLines);
      const r = corpusBleu(hyps, refStreams, c.options);
      expect(Math.abs(r.score - c.bleu)).toBeLessThan(TOL);
      expect(Math.abs(r.bp - c.bp)).toBeLessThan(TOL);
      r.precisions.forEach((p, i) => expect(Math.abs(p - c.precisions[i]!)).toBeLessThan(TOL));
      expect(r.counts).toEqual(c.counts);
      expect(r.totals).toEqual(c.totals);
      expect(r.sysLen).toBe(c.sys_len);
      expect(r.refLen).toBe(c.ref_len);
      expect(r.signature).toBe(c.signature);
    });

    it(`corpus chrF ${c.name}`, () => {
      const r = corpusChrf(readLines(c.hyp), c.refs.map(readLines));
      expect(Math.abs(r.score - c.chrf)).toBeLessThan(TOL);
      expect(r.name).toBe('chrF2');
      expect(r.signature).toBe(`nrefs:${c.refs.length}|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0`);
    });
  }

  it('sentence BLEU with effective order (hyp.mixed.txt against ref.txt)', () => {
    const hyps = readLines('hyp.mixed.txt');
    const refs = readLines('ref.txt');
    for (const { line, bleu } of expected.sentence_effective_order) {
      const r = sentenceBleu(hyps[line]!, [refs[line]!]);
      expect(Math.abs(r.score - bleu), `line ${line}`).toBeLessThan(TOL);
      expect(r.signature).toBe('nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|version:2.6.0');
    }
  });
});

describe('BLEU smoothing on a hand-computed sentence', () => {
  // hyp "the cat sat on the mat" vs ref "the cat is on the mat" (6 tokens each, BP = 1):
  // matches/totals per order 1..4 = 5/6, 3/5, 1/4, 0/3.
  const hyp = 'the cat sat on the mat';
  const ref = 'the cat is on the mat';
  const bleu = (opts: BleuOptions) => corpusBleu([hyp], [[ref]], opts);

  it('exp: the first zero order gets 1/(2·total)', () => {
    const r = bleu({ smoothing: 'exp' });
    expect(r.counts).toEqual([5, 3, 1, 0]);
    expect(r.totals).toEqual([6, 5, 4, 3]);
    // exp((ln(500/6) + ln 60 + ln 25 + ln(100/6)) / 4)
    expect(r.score).toBeCloseTo(37.99178428257963, 10);
    expect(r.precisions[3]).toBeCloseTo(100 / 6, 10);
  });

  it('floor: a zero order gets smooth_value/total (default 0.1)', () => {
    const r = bleu({ smoothing: 'floor' });
    // exp((ln(500/6) + ln 60 + ln 25 + ln(10/3)) / 4)
    expect(r.score).toBeCloseTo(25.40663740773073, 10);
    expect(r.signature).toBe('nrefs:1|case:mixed|eff:no|tok:13a|smooth:floor[0.10]|version:2.6.0');
    expect(bleu({ smoothing: 'floor', smoothValue: 0.5 }).precisions[3]).toBeCloseTo((100 * 0.5) / 3, 10);
  });

  it('add-k: k added to matches and totals of orders > 1, and reported in counts/totals', () => {
    const r = bleu({ smoothing: 'add-k' });
    expect(r.counts).toEqual([5, 4, 2, 1]);
    expect(r.totals).toEqual([6, 6, 5, 4]);
    // exp((ln(500/6) + ln(400/6) + ln 40 + ln 25) / 4)
    expect(r.score).toBeCloseTo(48.54917717073236, 10);
    expect(r.signature).toContain('smooth:add-k[1.00]');
  });

  it('none: a zero precision makes BLEU 0', () => {
    const r = bleu({ smoothing: 'none' });
    expect(r.score).toBe(0);
    expect(r.precisions).toEqual([(500 / 6), 60, 25, 0].map((p) => expect.closeTo(p, 10)));
    expect(r.signature).toContain('smooth:none');
  });
});

describe('BLEU effective order, lengths and edge cases', () => {
  it('effective order averages only the orders the hypothesis has', () => {
    // "the cat sat" vs "the cat sat on": totals 3,2,1,0 all matched, BP = exp(1 - 4/3).
    const withEff = sentenceBleu('the cat sat', ['the cat sat on']);
    expect(withEff.score).toBeCloseTo(71.65313105737893, 10);
    expect(withEff.bp).toBeCloseTo(Math.exp(1 - 4 / 3), 12);
    // Without it the missing 4-gram order counts as log(0) -> 0.
    expect(sentenceBleu('the cat sat', ['the cat sat on'], { effectiveOrder: false }).score).toBe(0);
    expect(corpusBleu(['the cat sat'], [['the cat sat on']]).score).toBe(0);
    expect(corpusBleu(['the cat sat'], [['the cat sat on']], { effectiveOrder: true }).score).toBeCloseTo(71.65313105737893, 10);
  });

  it('closest reference length, ties go to the shorter reference', () => {
    expect(closestRefLength(4, [5, 3])).toBe(3);
    expect(closestRefLength(4, [3, 5])).toBe(3);
    expect(closestRefLength(4, [7, 5, 2])).toBe(5);
    // Through BLEU: 4-token hypothesis, references of 5 and 3 tokens.
    const r = corpusBleu(['a b c d'], [['a b c d e'], ['a b c']]);
    expect(r.refLen).toBe(3);
    expect(r.bp).toBe(1);
    expect(r.signature.startsWith('nrefs:2|')).toBe(true);
  });

  it('multiple references clip each n-gram by its maximum count over references', () => {
    // "the" occurs twice in the hypothesis, once in ref A and twice in ref B: both match.
    const one = corpusBleu(['the the cat'], [['the cat']]);
    const two = corpusBleu(['the the cat'], [['the cat'], ['the dog the']]);
    expect(one.counts[0]).toBe(2);
    expect(two.counts[0]).toBe(3);
  });

  it('an empty hypothesis scores 0 with BP 0', () => {
    const r = sentenceBleu('', ['a b c']);
    expect(r.score).toBe(0);
    expect(r.sysLen).toBe(0);
    expect(r.refLen).toBe(3);
    expect(r.bp).toBe(0);
    const corpus = corpusBleu(['', 'a b c d'], [['x y', 'a b c d']]);
    expect(corpus.sysLen).toBe(4);
    expect(corpus.refLen).toBe(6);
    expect(corpus.score).toBeCloseTo(100 * Math.exp(1 - 6 / 4), 10);
  });

  it('an empty reference is a valid reference of length 0, as in sacreBLEU 2.6.0; null means missing (nrefs:var)', () => {
    // Values from sacreBLEU 2.6.0 (BLEU().corpus_score with the same inputs; None for null).
    const r = corpusBleu(['a b c d', 'e f g h'], [['a b c d', 'e f g h'], ['a b', '']]);
    expect(r.signature.startsWith('nrefs:2|')).toBe(true);
    expect(r.score).toBeCloseTo(100, 10);
    const missing = corpusBleu(['a b c d', 'e f g h'], [['a b c d', 'e f g h'], ['a b', null as unknown as string]]);
    expect(missing.signature.startsWith('nrefs:var|')).toBe(true);
    const allEmpty = corpusBleu(['a', 'b'], [['a', ''], ['a', '']]);
    expect([allEmpty.score, allEmpty.sysLen, allEmpty.refLen, allEmpty.counts[0]]).toEqual([0, 2, 1, 1]);
    expect(allEmpty.verbose).toBe('50.0/0.0/0.0/0.0 (BP = 1.000 ratio = 2.000 hyp_len = 2 ref_len = 1)');
    expect(() => corpusBleu(['a'], [[null as unknown as string]])).toThrow(/line 1 has no reference at all/);
  });

  it('lowercase changes matching and the signature', () => {
    expect(corpusBleu(['The Cat'], [['the cat']]).counts[0]).toBe(0);
    const lc = corpusBleu(['The Cat'], [['the cat']], { lowercase: true });
    expect(lc.counts[0]).toBe(2);
    expect(lc.signature).toBe('nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0');
  });

  it('per-segment statistics sum to the corpus score', () => {
    const hyps = readLines('hyp.drop5.txt').slice(0, 50);
    const refs = readLines('ref.txt').slice(0, 50);
    const segments = bleuSegmentStats(hyps, [refs]);
    expect(segments).toHaveLength(50);
    const sum = { sysLen: 0, refLen: 0, correct: [0, 0, 0, 0], total: [0, 0, 0, 0] };
    for (const s of segments) {
      sum.sysLen += s.sysLen;
      sum.refLen += s.refLen;
      s.correct.forEach((c, i) => (sum.correct[i]! += c));
      s.total.forEach((t, i) => (sum.total[i]! += t));
    }
    expect(computeBleu(sum).score).toBe(corpusBleu(hyps, [refs]).score);
  });

  it('computeBleu does not modify the statistics it is given', () => {
    const stats = { sysLen: 6, refLen: 6, correct: [5, 3, 1, 0], total: [6, 5, 4, 3] };
    computeBleu(stats, { smoothing: 'add-k' });
    expect(stats.correct).toEqual([5, 3, 1, 0]);
  });

  it('bad input is a one-line UserError', () => {
    expect(() => corpusBleu([], [[]])).toThrow(UserError);
    expect(() => corpusBleu(['a', 'b'], [['a']])).toThrow(/reference stream 1 has 1 lines but there are 2 hypotheses/);
    expect(() => corpusBleu(['a'], [])).toThrow(UserError);
    expect(() => corpusBleu(['a'], [['a']], { tokenize: 'moses' as never })).toThrow(/unknown BLEU tokenizer 'moses'/);
    expect(() => corpusBleu(['a'], [['a']], { smoothing: 'add-one' as never })).toThrow(/unknown BLEU smoothing method/);
    expect(() => corpusBleu(['a'], [['a']], { smoothValue: -1 })).toThrow(UserError);
    expect(() => corpusBleu(['a'], [['a']], { maxNgramOrder: 0 })).toThrow(UserError);
  });
});

describe('BLEU tokenizers', () => {
  // Expected strings produced at authoring time with Python's re / regex modules on sacreBLEU's patterns.
  it('13a', () => {
    expect(tokenize13a('Hello, world. 3.14 1,000 a-b 3-4 &quot;hi&quot; <skipped> x')).toBe('Hello , world . 3.14 1,000 a-b 3 - 4 " hi " x');
    expect(tokenize13a('"(hi)" [test]{a}~`@ end.')).toBe('" ( hi ) " [ test ] { a } ~ ` @ end .');
    expect(tokenize13a('Él dijo: «¿qué?» 1.000,5 €5 x.y')).toBe('Él dijo : «¿qué ? » 1.000,5 €5 x . y');
    expect(tokenize13a('a.,b')).toBe('a . , b');
    expect(tokenize13a('x &amp; y &lt;z&gt; don\'t')).toBe("x & y < z > don't");
    expect(tokenize13a('line-\nbreak\nhere')).toBe('linebreak here');
  });

  it('intl (Unicode punctuation and symbols)', () => {
    expect(tokenizeIntl('Él dijo: «¿qué?» 1.000,5 €5 x.y')).toBe('Él dijo : « ¿ qué ? » 1.000,5 € 5 x . y');
    expect(tokenizeIntl('Year 2019. Price $3.50+tax')).toBe('Year 2019 . Price $ 3.50 + tax');
    expect(tokenizeIntl('中文。测试、😀ok')).toBe('中文 。 测试 、 😀 ok');
  });

  it('char splits code points, not UTF-16 units', () => {
    expect(pySplit(tokenizeChar('a😀 b'))).toEqual(['a', '😀', 'b']);
  });

  it("whitespace follows Python's str.split (U+0085 splits, U+FEFF does not)", () => {
    expect(pySplit(' a\u0085b\ufeffc\x1c d ')).toEqual(['a', 'b\ufeffc', 'd']);
    expect(corpusBleu(['a\u0085b'], [['a b']]).counts[1]).toBe(1);
  });
});

describe('chrF', () => {
  it('effective-order averaging (default) vs eps smoothing, by hand', () => {
    // "abc" vs "abcd": orders 1-3 match fully (precision 1, recall 3/4, 2/3, 1/2); order 4 has no
    // hypothesis n-gram; orders 5-6 have none on either side.
    const eff = sentenceChrf('abc', ['abcd']);
    const avgRec = (3 / 4 + 2 / 3 + 1 / 2) / 3;
    expect(eff.score).toBeCloseTo((100 * 5 * avgRec) / (4 + avgRec), 10); // 68.862...
    expect(eff.score).toBeCloseTo(68.86227544910179, 10);
    // eps: mean over 6 orders of F2 per order (orders 5 and 6 contribute eps = 1e-16).
    const eps = sentenceChrf('abc', ['abcd'], { epsSmoothing: true });
    expect(eps.score).toBeCloseTo(34.321915900863274, 10);
    expect(eps.signature).toBe('nrefs:1|case:mixed|eff:no|nc:6|nw:0|space:no|version:2.6.0');
  });

  it('hypothesis n-grams do not count for an order the reference lacks', () => {
    // "abcd" vs "ab": the reference has no 3-grams, so that order's hypothesis count is 0.
    expect(sentenceChrf('abcd', ['ab']).stats.slice(6, 9)).toEqual([0, 0, 0]);
  });

  it('chrF++ word n-grams, with punctuation split off word edges', () => {
    expect(splitWordsForChrf('Hello, (world) a . x!')).toEqual(['Hello', ',', '(world', ')', 'a', '.', 'x', '!']);
    // "ab c" vs "abc": characters match fully (orders 1, 2), the words do not (2 hyp, 1 ref, 0 match).
    const r = sentenceChrf('ab c', ['abc'], { charOrder: 2, wordOrder: 1 });
    expect(r.stats).toEqual([3, 3, 3, 2, 2, 2, 2, 1, 0]);
    expect(r.score).toBeCloseTo(200 / 3, 10);
    expect(r.name).toBe('chrF2+');
    expect(corpusChrf(['a'], [['a']], { wordOrder: 2 }).name).toBe('chrF2++');
  });

  it('picks the best reference per segment and sums statistics over the corpus', () => {
    const r = sentenceChrf('abc', ['xyz', 'abc']);
    expect(r.score).toBeCloseTo(100, 12);
    expect(r.nrefs).toBe(2);
    const corpus = corpusChrf(['abc', 'abc'], [['abc', 'abcd']]);
    const summed = computeChrf(corpus.stats);
    expect(corpus.score).toBe(summed);
    expect(corpus.stats.slice(0, 3)).toEqual([6, 7, 6]);
  });

  it('whitespace, lowercase and beta options', () => {
    expect(sentenceChrf('a b', ['ab']).score).toBeCloseTo(100, 12);
    expect(sentenceChrf('a b', ['ab'], { whitespace: true }).score).toBeLessThan(100);
    expect(sentenceChrf('ABC', ['abc']).score).toBe(0);
    expect(sentenceChrf('ABC', ['abc'], { lowercase: true }).score).toBeCloseTo(100, 12);
    expect(corpusChrf(['a'], [['a']], { beta: 1 }).name).toBe('chrF1');
    expect(() => corpusChrf(['a'], [['a']], { charOrder: 0, wordOrder: 0 })).toThrow(UserError);
    expect(() => corpusChrf(['a', 'b'], [['a']])).toThrow(UserError);
  });
});

describe('perplexity', () => {
  it('is exp(sumNll / numTokens)', () => {
    expect(perplexity(5 * Math.log(10), 5)).toBeCloseTo(10, 12);
    expect(perplexity(0, 3)).toBe(1);
  });
  it('rejects a non-positive token count or NaN', () => {
    expect(() => perplexity(1, 0)).toThrow(/numTokens = 0/);
    expect(() => perplexity(1, -2)).toThrow(UserError);
    expect(() => perplexity(Number.NaN, 2)).toThrow(UserError);
  });
});

describe("sacreBLEU's printed forms", () => {
  it('formats numbers as Python does (round half to even on the exact value)', () => {
    expect(pyFormatFixed(0.125, 2)).toBe('0.12');
    expect(pyFormatFixed(2.675, 2)).toBe('2.67');
    expect(pyFormatFixed(2.5, 0)).toBe('2');
    expect(pyFormatFixed(99.995, 2)).toBe('100.00');
    expect(pyFormatFixed(-0.001, 2)).toBe('-0.00');
    expect(pyFloatRepr(32.7)).toBe('32.7');
    expect(pyFloatRepr(100)).toBe('100.0');
    expect(pyFloatRepr(1e-5)).toBe('1e-05');
  });

  it('text and JSON', () => {
    const r = corpusBleu(readLines('hyp.mixed.txt'), [readLines('ref.txt')]);
    expect(formatScoreText(r, { width: 2 })).toBe(
      'BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 55.78 96.8/71.3/56.0/46.6 (BP = 0.856 ratio = 0.866 hyp_len = 22971 ref_len = 26530)',
    );
    expect(formatScoreText(r, { width: 1, short: true })).toMatch(/^BLEU\|#:1\|c:mixed\|e:no\|tok:13a\|s:exp\|v:2\.6\.0 = 55\.8 /);
    const json = JSON.parse(formatScoreJson(r, 1)) as Record<string, unknown>;
    expect(json).toEqual({
      name: 'BLEU',
      score: 55.8,
      signature: 'nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0',
      verbose_score: '96.8/71.3/56.0/46.6 (BP = 0.856 ratio = 0.866 hyp_len = 22971 ref_len = 26530)',
      nrefs: '1',
      case: 'mixed',
      eff: 'no',
      tok: '13a',
      smooth: 'exp',
      version: '2.6.0',
    });
  });
});
