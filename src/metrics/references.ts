/**
 * Checks the (hypotheses, reference streams) input shared by every corpus metric and regroups
 * the references per segment, following sacreBLEU: `refStreams` holds one array per reference
 * set, each aligned with the hypotheses. As in sacreBLEU 2.6.0 (`_cache_references` drops only
 * None), an empty reference line is a valid reference of length zero, not a missing one: a
 * corpus whose reference file has an empty line scores like `sacrebleu REF -i HYP`. Only
 * null/undefined mean "no reference of this set for this segment" (sacreBLEU's None); the
 * signature's nrefs is 'var' when segments end up with different numbers of references.
 */
import { UserError } from '../errors.ts';

/** sacreBLEU version whose semantics (and signature) this module reproduces. */
export const SACREBLEU_VERSION = '2.6.0';

export interface SegmentReferences {
  /** Per segment, its references in stream order (empty strings included, null/undefined left out). */
  perSegment: string[][];
  /** Number of references per segment, or 'var' when it differs across segments. */
  nrefs: number | 'var';
}

export function groupReferences(hyps: readonly string[], refStreams: readonly (readonly string[])[], metric: string): SegmentReferences {
  if (!Array.isArray(hyps)) throw new UserError(`${metric}: hypotheses must be an array of strings`);
  if (hyps.length === 0) throw new UserError(`${metric}: there are no hypotheses to score (empty hypothesis list)`);
  if (!Array.isArray(refStreams) || refStreams.length === 0 || !refStreams.every((s) => Array.isArray(s))) {
    throw new UserError(`${metric}: references must be a non-empty array of reference streams (string[][], one array per reference set)`);
  }
  hyps.forEach((h, i) => {
    if (typeof h !== 'string') throw new UserError(`${metric}: hypothesis ${i + 1} is not a string`);
  });
  refStreams.forEach((stream, k) => {
    if (stream.length !== hyps.length) {
      throw new UserError(`${metric}: reference stream ${k + 1} has ${stream.length} lines but there are ${hyps.length} hypotheses (each stream must have one line per hypothesis)`);
    }
  });
  const perSegment: string[][] = [];
  const counts = new Set<number>();
  for (let i = 0; i < hyps.length; i++) {
    const refs: string[] = [];
    for (let k = 0; k < refStreams.length; k++) {
      const ref = refStreams[k]![i];
      if (ref === undefined || ref === null) continue;
      if (typeof ref !== 'string') throw new UserError(`${metric}: reference ${k + 1} of line ${i + 1} is not a string`);
      refs.push(ref);
    }
    if (refs.length === 0) {
      throw new UserError(`${metric}: line ${i + 1} has no reference at all (every stream is null there; an empty string is a valid, empty reference)`);
    }
    counts.add(refs.length);
    perSegment.push(refs);
  }
  return { perSegment, nrefs: counts.size === 1 ? [...counts][0]! : 'var' };
}
