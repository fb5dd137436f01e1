/**
 * N-gram counting for BLEU (word n-grams) and chrF (character and word n-grams). An n-gram is
 * keyed by its tokens joined with a space: tokens never contain whitespace, so keys are unique.
 */
import { pyIsSpace } from './python-text.ts';

export type NgramCounts = Map<string, number>;

/** Counts of all word n-grams of orders 1..maxOrder, in one map (keys of different orders differ in their number of spaces). */
export function countWordNgrams(tokens: readonly string[], maxOrder: number): NgramCounts {
  const counts: NgramCounts = new Map();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = n === 1 ? tokens[i]! : tokens.slice(i, i + n).join(' ');
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** Counts of word n-grams of exactly order n. */
export function countWordNgramsOfOrder(tokens: readonly string[], n: number): NgramCounts {
  const counts: NgramCounts = new Map();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(' ');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/**
 * Character n-gram counts for orders 1..maxOrder, one map per order. Characters are Unicode code
 * points (as Python indexes strings); whitespace is removed first unless `includeWhitespace`.
 */
export function countCharNgrams(line: string, maxOrder: number, includeWhitespace: boolean): NgramCounts[] {
  let chars = Array.from(line);
  if (!includeWhitespace) chars = chars.filter((c) => !pyIsSpace(c));
  // Without astral characters one code point is one UTF-16 unit, and plain string slices are
  // much faster than joining array slices.
  const text = chars.join('');
  const gram =
    text.length === chars.length ? (i: number, n: number) => text.slice(i, i + n) : (i: number, n: number) => chars.slice(i, i + n).join('');
  const result: NgramCounts[] = [];
  for (let n = 1; n <= maxOrder; n++) {
    const counts: NgramCounts = new Map();
    for (let i = 0; i + n <= chars.length; i++) {
      const key = gram(i, n);
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    result.push(counts);
  }
  return result;
}
