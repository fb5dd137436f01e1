/**
 * chrF (Popović, 2015) and chrF++ (Popović, 2017) with sacreBLEU 2.x semantics: character
 * n-grams of orders 1..charOrder over the text without whitespace, optional word n-grams
 * (chrF++) after splitting punctuation off word edges, the best-scoring reference per segment,
 * statistics summed over the corpus, and sacreBLEU's default effective-order averaging (or the
 * eps smoothing of chrF++.py/Moses/NLTK). Written by hand: no JavaScript library matches it.
 */
import { UserError } from '../errors.ts';
import { countCharNgrams, countWordNgramsOfOrder, type NgramCounts } from './ngrams.ts';
import { pySplit } from './python-text.ts';
import { groupReferences, SACREBLEU_VERSION } from './references.ts';

export interface ChrfOptions {
  /** Character n-gram order. Default 6. */
  charOrder?: number;
  /** Word n-gram order; 2 gives chrF++. Default 0. */
  wordOrder?: number;
  /** Weight of recall relative to precision. Default 2. */
  beta?: number;
  /** Lowercase first. Default false. */
  lowercase?: boolean;
  /** Keep whitespace in character n-grams. Default false. */
  whitespace?: boolean;
  /** chrF++.py-style eps smoothing instead of sacreBLEU's effective-order averaging. Default false. */
  epsSmoothing?: boolean;
}

export interface ChrfScore {
  /** 'chrF2', or 'chrF2++' with wordOrder 2 (one '+' per word order). */
  name: string;
  /** chrF in [0, 100]. */
  score: number;
  /** Summed [hyp, ref, match] counts per order (char orders, then word orders), flattened. */
  stats: number[];
  nrefs: number | 'var';
  /** e.g. `nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0`. */
  signature: string;
  signatureFields: [string, string][];
  /** chrF has no verbose part (kept for a uniform score shape). */
  verbose: string;
}

interface ResolvedChrfOptions {
  charOrder: number;
  wordOrder: number;
  beta: number;
  lowercase: boolean;
  whitespace: boolean;
  epsSmoothing: boolean;
}

function resolveOptions(opts: ChrfOptions): ResolvedChrfOptions {
  const resolved = {
    charOrder: opts.charOrder ?? 6,
    wordOrder: opts.wordOrder ?? 0,
    beta: opts.beta ?? 2,
    lowercase: opts.lowercase ?? false,
    whitespace: opts.whitespace ?? false,
    epsSmoothing: opts.epsSmoothing ?? false,
  };
  if (!Number.isInteger(resolved.charOrder) || resolved.charOrder < 0) {
    throw new UserError(`chrF charOrder must be an integer >= 0, got ${resolved.charOrder}`);
  }
  if (!Number.isInteger(resolved.wordOrder) || resolved.wordOrder < 0) {
    throw new UserError(`chrF wordOrder must be an integer >= 0, got ${resolved.wordOrder}`);
  }
  if (resolved.charOrder + resolved.wordOrder === 0) throw new UserError('chrF needs charOrder + wordOrder >= 1');
  if (!Number.isFinite(resolved.beta) || resolved.beta < 0) throw new UserError(`chrF beta must be a finite number >= 0, got ${resolved.beta}`);
  return resolved;
}

const ASCII_PUNCTUATION = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');

/** chrF++'s word split: whitespace, then one ASCII punctuation mark split off the end (else the start) of each word. */
export function splitWordsForChrf(sentence: string): string[] {
  const words: string[] = [];
  for (const word of pySplit(sentence)) {
    const chars = Array.from(word);
    if (chars.length === 1) words.push(word);
    else if (ASCII_PUNCTUATION.has(chars[chars.length - 1]!)) words.push(chars.slice(0, -1).join(''), chars[chars.length - 1]!);
    else if (ASCII_PUNCTUATION.has(chars[0]!)) words.push(chars[0]!, chars.slice(1).join(''));
    else words.push(word);
  }
  return words;
}

/** All n-gram count maps of a sentence: char orders 1..charOrder, then word orders 1..wordOrder. */
function sentenceNgrams(sentence: string, opts: ResolvedChrfOptions): NgramCounts[] {
  const all = countCharNgrams(sentence, opts.charOrder, opts.whitespace);
  if (opts.wordOrder > 0) {
    const words = splitWordsForChrf(sentence);
    for (let n = 1; n <= opts.wordOrder; n++) all.push(countWordNgramsOfOrder(words, n));
  }
  return all;
}

function sumValues(counts: NgramCounts): number {
  let sum = 0;
  for (const c of counts.values()) sum += c;
  return sum;
}

/** [hyp, ref, match] for one order; hypothesis n-grams do not count when the reference has none of that order. */
function matchStats(hyp: NgramCounts, ref: NgramCounts): [number, number, number] {
  let matches = 0;
  let hypCount = 0;
  for (const [ngram, count] of hyp) {
    hypCount += count;
    const refCount = ref.get(ngram);
    if (refCount !== undefined) matches += Math.min(count, refCount);
  }
  return [ref.size > 0 ? hypCount : 0, sumValues(ref), matches];
}

/** The chrF value in [0, 100] from flattened [hyp, ref, match] statistics (sacreBLEU's `_compute_f_score`). */
export function computeChrf(stats: readonly number[], opts: Pick<ChrfOptions, 'beta' | 'epsSmoothing'> = {}): number {
  const beta = opts.beta ?? 2;
  const order = stats.length / 3;
  const eps = 1e-16;
  const factor = beta ** 2;
  let score = 0;
  let effectiveOrder = 0;
  let avgPrec = 0;
  let avgRec = 0;
  for (let i = 0; i < order; i++) {
    const nHyp = stats[3 * i]!;
    const nRef = stats[3 * i + 1]!;
    const nMatch = stats[3 * i + 2]!;
    const prec = nHyp > 0 ? nMatch / nHyp : eps;
    const rec = nRef > 0 ? nMatch / nRef : eps;
    const denom = factor * prec + rec;
    score += denom > 0 ? ((1 + factor) * prec * rec) / denom : eps;
    if (nHyp > 0 && nRef > 0) {
      avgPrec += prec;
      avgRec += rec;
      effectiveOrder += 1;
    }
  }
  if (opts.epsSmoothing) return (100 * score) / order;
  if (effectiveOrder === 0) {
    avgPrec = 0;
    avgRec = 0;
  } else {
    avgPrec /= effectiveOrder;
    avgRec /= effectiveOrder;
  }
  if (avgPrec + avgRec === 0) return 0;
  const f = ((1 + factor) * avgPrec * avgRec) / (factor * avgPrec + avgRec);
  return 100 * f;
}

function segmentStats(hyp: string, refs: string[], opts: ResolvedChrfOptions): number[] {
  const hypNgrams = sentenceNgrams(hyp, opts);
  let best: number[] = [];
  let bestScore = -1;
  for (const ref of refs) {
    const refNgrams = sentenceNgrams(ref, opts);
    const stats = hypNgrams.flatMap((h, i) => matchStats(h, refNgrams[i]!));
    const score = computeChrf(stats, opts);
    if (score > bestScore) {
      bestScore = score;
      best = stats;
    }
  }
  return best;
}

function makeScore(stats: number[], opts: ResolvedChrfOptions, nrefs: number | 'var'): ChrfScore {
  const fields: [string, string][] = [
    ['nrefs', String(nrefs)],
    ['case', opts.lowercase ? 'lc' : 'mixed'],
    ['eff', opts.epsSmoothing ? 'no' : 'yes'],
    ['nc', String(opts.charOrder)],
    ['nw', String(opts.wordOrder)],
    ['space', opts.whitespace ? 'yes' : 'no'],
    ['version', SACREBLEU_VERSION],
  ];
  return {
    name: `chrF${opts.beta}${'+'.repeat(opts.wordOrder)}`,
    score: computeChrf(stats, opts),
    stats,
    nrefs,
    signature: fields.map(([k, v]) => `${k}:${v}`).join('|'),
    signatureFields: fields,
    verbose: '',
  };
}

function collect(hyps: readonly string[], refStreams: readonly (readonly string[])[], opts: ResolvedChrfOptions) {
  const { perSegment, nrefs } = groupReferences(hyps, refStreams, 'chrF');
  const lower = (s: string) => (opts.lowercase ? s.toLowerCase() : s);
  const segments = hyps.map((hyp, i) => segmentStats(lower(hyp), perSegment[i]!.map(lower), opts));
  return { segments, nrefs };
}

/** Corpus chrF as sacreBLEU's `corpus_chrf(hyps, refStreams)` (statistics summed over segments). */
export function corpusChrf(hyps: readonly string[], refStreams: readonly (readonly string[])[], opts: ChrfOptions = {}): ChrfScore {
  const resolved = resolveOptions(opts);
  const { segments, nrefs } = collect(hyps, refStreams, resolved);
  const order = resolved.charOrder + resolved.wordOrder;
  const sum = new Array<number>(3 * order).fill(0);
  for (const s of segments) for (let i = 0; i < sum.length; i++) sum[i]! += s[i]!;
  return makeScore(sum, resolved, nrefs);
}

/** Sentence chrF as sacreBLEU's `sentence_chrf(hyp, refs)`. */
export function sentenceChrf(hyp: string, refs: readonly string[], opts: ChrfOptions = {}): ChrfScore {
  if (typeof hyp !== 'string') throw new UserError('sentenceChrf: the hypothesis must be a string');
  if (!Array.isArray(refs)) throw new UserError('sentenceChrf: references must be an array of strings (one per reference)');
  const resolved = resolveOptions(opts);
  const { segments, nrefs } = collect(
    [hyp],
    refs.map((r) => [r]),
    resolved,
  );
  return makeScore(segments[0]!, resolved, nrefs);
}
