/**
 * BLEU (Papineni et al., 2002) with sacreBLEU 2.x semantics: the same tokenizers, closest
 * reference length (ties go to the shorter reference), clipped n-gram counts against the
 * per-n-gram maximum over references, brevity penalty, the four smoothing methods of Chen &
 * Cherry (2014) and the reproducibility signature. Written by hand because no JavaScript
 * library reproduces sacreBLEU's numbers.
 */
import { UserError } from '../errors.ts';
import { countWordNgrams, type NgramCounts } from './ngrams.ts';
import { pyFormatFixed, pyRstrip, pySplit } from './python-text.ts';
import { groupReferences, SACREBLEU_VERSION } from './references.ts';
import { getBleuTokenizer, type BleuTokenizer, type BleuTokenizerName } from './tokenizers.ts';

export type SmoothMethod = 'exp' | 'floor' | 'add-k' | 'none';
export const SMOOTH_METHODS: readonly SmoothMethod[] = ['exp', 'floor', 'add-k', 'none'];

/** Default smoothing values (Chen & Cherry, 2014); null where the method takes none. */
export const SMOOTH_DEFAULTS: Readonly<Record<SmoothMethod, number | null>> = {
  none: null,
  floor: 0.1,
  'add-k': 1,
  exp: null,
};

export const MAX_NGRAM_ORDER = 4;

export interface BleuOptions {
  /** Default '13a' (mteval-v13a, as WMT). */
  tokenize?: BleuTokenizerName;
  /** Lowercase hypotheses and references first. Default false. */
  lowercase?: boolean;
  /** Default 'exp' (mteval's NIST smoothing). */
  smoothing?: SmoothMethod;
  /** Value for 'floor' (default 0.1) and 'add-k' (default 1); ignored by the other methods. */
  smoothValue?: number;
  /** Average only over the n-gram orders the hypothesis has. Default false for corpus, true for sentence BLEU. */
  effectiveOrder?: boolean;
  /** Default 4. */
  maxNgramOrder?: number;
}

/** BLEU's sufficient statistics, summed over segments. */
export interface BleuStats {
  sysLen: number;
  refLen: number;
  /** Clipped matches per order 1..maxNgramOrder. */
  correct: number[];
  /** Hypothesis n-grams per order 1..maxNgramOrder. */
  total: number[];
}

export interface BleuScore {
  name: 'BLEU';
  /** BLEU in [0, 100]. */
  score: number;
  /** Matches per order; with 'add-k' they include the added k for orders > 1, as sacreBLEU reports them. */
  counts: number[];
  /** Hypothesis n-grams per order (with 'add-k', plus k for orders > 1). */
  totals: number[];
  /** Smoothed precisions in [0, 100]. */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  sysLen: number;
  refLen: number;
  /** sysLen / refLen (0 when refLen is 0). */
  ratio: number;
  nrefs: number | 'var';
  /** e.g. `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`. */
  signature: string;
  /** The signature as ordered key/value pairs (for short signatures and JSON output). */
  signatureFields: [string, string][];
  /** sacreBLEU's verbose part: `63.3/39.1/25.9/17.5 (BP = 1.000 ratio = 1.012 hyp_len = … ref_len = …)`. */
  verbose: string;
}

interface ResolvedBleuOptions {
  tokenizeName: BleuTokenizerName;
  tokenizer: BleuTokenizer;
  lowercase: boolean;
  smoothing: SmoothMethod;
  smoothValue: number | null;
  effectiveOrder: boolean;
  maxNgramOrder: number;
}

function resolveOptions(opts: BleuOptions, defaultEffectiveOrder: boolean): ResolvedBleuOptions {
  const tokenizeName = opts.tokenize ?? '13a';
  const tokenizer = getBleuTokenizer(tokenizeName);
  const smoothing = opts.smoothing ?? 'exp';
  if (!SMOOTH_METHODS.includes(smoothing)) {
    throw new UserError(`unknown BLEU smoothing method '${String(smoothing)}': expected one of ${SMOOTH_METHODS.join(', ')}`);
  }
  if (opts.smoothValue !== undefined && (!Number.isFinite(opts.smoothValue) || opts.smoothValue < 0)) {
    throw new UserError(`BLEU smoothValue must be a finite number >= 0, got ${opts.smoothValue}`);
  }
  const maxNgramOrder = opts.maxNgramOrder ?? MAX_NGRAM_ORDER;
  if (!Number.isInteger(maxNgramOrder) || maxNgramOrder < 1) {
    throw new UserError(`BLEU maxNgramOrder must be a positive integer, got ${maxNgramOrder}`);
  }
  const smoothValue = opts.smoothValue ?? SMOOTH_DEFAULTS[smoothing];
  return {
    tokenizeName,
    tokenizer,
    lowercase: opts.lowercase ?? false,
    smoothing,
    smoothValue,
    effectiveOrder: opts.effectiveOrder ?? defaultEffectiveOrder,
    maxNgramOrder,
  };
}

function preprocess(sentence: string, opts: ResolvedBleuOptions): string[] {
  const text = opts.lowercase ? sentence.toLowerCase() : sentence;
  return pySplit(opts.tokenizer(pyRstrip(text)));
}

/** The reference length BLEU compares against: the closest to the hypothesis, the shorter on ties. */
export function closestRefLength(hypLen: number, refLens: readonly number[]): number {
  let closestDiff = -1;
  let closestLen = -1;
  for (const refLen of refLens) {
    const diff = Math.abs(hypLen - refLen);
    if (closestDiff === -1 || diff < closestDiff) {
      closestDiff = diff;
      closestLen = refLen;
    } else if (diff === closestDiff && refLen < closestLen) {
      closestLen = refLen;
    }
  }
  return closestLen;
}

/** Statistics of one segment: hypothesis tokens against its (already tokenized) references. */
function segmentStats(hypTokens: string[], refTokens: string[][], maxOrder: number): BleuStats {
  // Each n-gram may be matched as often as it occurs in the reference that has it most often.
  const maxRefCounts: NgramCounts = new Map();
  for (const tokens of refTokens) {
    for (const [ngram, count] of countWordNgrams(tokens, maxOrder)) {
      if (count > (maxRefCounts.get(ngram) ?? 0)) maxRefCounts.set(ngram, count);
    }
  }
  const correct = new Array<number>(maxOrder).fill(0);
  const total = new Array<number>(maxOrder).fill(0);
  for (const [ngram, count] of countWordNgrams(hypTokens, maxOrder)) {
    let order = 0;
    for (let i = 0; i < ngram.length; i++) if (ngram.charCodeAt(i) === 32) order++;
    total[order]! += count;
    const refCount = maxRefCounts.get(ngram);
    if (refCount !== undefined) correct[order]! += Math.min(count, refCount);
  }
  const refLen = closestRefLength(
    hypTokens.length,
    refTokens.map((t) => t.length),
  );
  return { sysLen: hypTokens.length, refLen, correct, total };
}

function log0(x: number): number {
  // sacreBLEU floors log(0) to this constant instead of -Infinity.
  return x === 0 ? -9999999999 : Math.log(x);
}

/**
 * BLEU from summed statistics (sacreBLEU's `compute_bleu`). The statistics are not modified;
 * the returned counts/totals include add-k's increments, as sacreBLEU reports them.
 */
export function computeBleu(
  stats: BleuStats,
  opts: Pick<BleuOptions, 'smoothing' | 'smoothValue' | 'effectiveOrder'> = {},
): Pick<BleuScore, 'score' | 'counts' | 'totals' | 'precisions' | 'bp' | 'sysLen' | 'refLen' | 'ratio'> {
  const smoothing = opts.smoothing ?? 'exp';
  const smoothValue = opts.smoothValue ?? SMOOTH_DEFAULTS[smoothing] ?? 0;
  const effectiveOrder = opts.effectiveOrder ?? false;
  const maxOrder = stats.correct.length;
  const correct = [...stats.correct];
  const total = [...stats.total];
  const { sysLen, refLen } = stats;
  const ratio = refLen ? sysLen / refLen : 0;

  let bp = 1.0;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0.0;

  const precisions = new Array<number>(maxOrder).fill(0);
  const base = { counts: correct, totals: total, precisions, bp, sysLen, refLen, ratio };
  // No match at all: BLEU is 0 whatever the smoothing (sacreBLEU #141).
  if (!correct.some((c) => c !== 0)) return { score: 0, ...base };

  let smoothMteval = 1.0;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (smoothing === 'add-k' && n > 1) {
      correct[n - 1]! += smoothValue;
      total[n - 1]! += smoothValue;
    }
    if (total[n - 1] === 0) break;
    if (effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (smoothing === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * total[n - 1]!);
      } else if (smoothing === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / total[n - 1]!;
      }
    } else {
      precisions[n - 1] = (100 * correct[n - 1]!) / total[n - 1]!;
    }
  }
  let logSum = 0;
  for (let i = 0; i < effOrder; i++) logSum += log0(precisions[i]!);
  return { score: bp * Math.exp(logSum / effOrder), ...base };
}

function signatureFields(opts: ResolvedBleuOptions, nrefs: number | 'var'): [string, string][] {
  let smooth: string = opts.smoothing;
  if (SMOOTH_DEFAULTS[opts.smoothing] !== null) smooth += `[${pyFormatFixed(opts.smoothValue!, 2)}]`;
  return [
    ['nrefs', String(nrefs)],
    ['case', opts.lowercase ? 'lc' : 'mixed'],
    ['eff', opts.effectiveOrder ? 'yes' : 'no'],
    ['tok', opts.tokenizeName],
    ['smooth', smooth],
    ['version', SACREBLEU_VERSION],
  ];
}

function makeScore(stats: BleuStats, opts: ResolvedBleuOptions, nrefs: number | 'var'): BleuScore {
  const result = computeBleu(stats, {
    smoothing: opts.smoothing,
    smoothValue: opts.smoothValue ?? undefined,
    effectiveOrder: opts.effectiveOrder,
  });
  const fields = signatureFields(opts, nrefs);
  const precStr = result.precisions.map((p) => pyFormatFixed(p, 1)).join('/');
  const verbose =
    `${precStr} (BP = ${pyFormatFixed(result.bp, 3)} ratio = ${pyFormatFixed(result.ratio, 3)} ` +
    `hyp_len = ${result.sysLen} ref_len = ${result.refLen})`;
  return {
    name: 'BLEU',
    ...result,
    nrefs,
    signature: fields.map(([k, v]) => `${k}:${v}`).join('|'),
    signatureFields: fields,
    verbose,
  };
}

/** Per-segment BLEU statistics (before summing), e.g. for bootstrap resampling. */
export function bleuSegmentStats(hyps: readonly string[], refStreams: readonly (readonly string[])[], opts: BleuOptions = {}): BleuStats[] {
  return collect(hyps, refStreams, resolveOptions(opts, false)).segments;
}

function collect(hyps: readonly string[], refStreams: readonly (readonly string[])[], opts: ResolvedBleuOptions) {
  const { perSegment, nrefs } = groupReferences(hyps, refStreams, 'BLEU');
  const segments = hyps.map((hyp, i) =>
    segmentStats(
      preprocess(hyp, opts),
      perSegment[i]!.map((ref) => preprocess(ref, opts)),
      opts.maxNgramOrder,
    ),
  );
  return { segments, nrefs };
}

function sumStats(segments: BleuStats[], maxOrder: number): BleuStats {
  const sum: BleuStats = { sysLen: 0, refLen: 0, correct: new Array(maxOrder).fill(0), total: new Array(maxOrder).fill(0) };
  for (const s of segments) {
    sum.sysLen += s.sysLen;
    sum.refLen += s.refLen;
    for (let n = 0; n < maxOrder; n++) {
      sum.correct[n]! += s.correct[n]!;
      sum.total[n]! += s.total[n]!;
    }
  }
  return sum;
}

/**
 * Corpus BLEU as sacreBLEU's `corpus_bleu(hyps, refStreams)`: `refStreams` holds one array per
 * reference set, each aligned with `hyps`.
 */
export function corpusBleu(hyps: readonly string[], refStreams: readonly (readonly string[])[], opts: BleuOptions = {}): BleuScore {
  const resolved = resolveOptions(opts, false);
  const { segments, nrefs } = collect(hyps, refStreams, resolved);
  return makeScore(sumStats(segments, resolved.maxNgramOrder), resolved, nrefs);
}

/** Sentence BLEU as sacreBLEU's `sentence_bleu(hyp, refs)`; effective order is on by default. */
export function sentenceBleu(hyp: string, refs: readonly string[], opts: BleuOptions = {}): BleuScore {
  if (typeof hyp !== 'string') throw new UserError('sentenceBleu: the hypothesis must be a string');
  if (!Array.isArray(refs)) throw new UserError('sentenceBleu: references must be an array of strings (one per reference)');
  const resolved = resolveOptions(opts, true);
  const { segments, nrefs } = collect(
    [hyp],
    refs.map((r) => [r]),
    resolved,
  );
  return makeScore(segments[0]!, resolved, nrefs);
}
