import { UserError } from '../errors.ts';

/**
 * The rank of a factorized [m, n] layer from `rank` or `rankScale` (the paper's --rank-scale:
 * r = max(1, floor(rankScale · min(m, n)))); full rank min(m, n) when neither is given.
 */
export function resolveRank(where: string, m: number, n: number, rank?: number | null, rankScale?: number | null): number {
  if (rank != null && rankScale != null) throw new UserError(`${where}: give either 'rank' or 'rankScale', not both`);
  if (rank != null) {
    if (!Number.isInteger(rank) || rank < 1) throw new UserError(`${where}: option 'rank' must be a positive integer; got ${rank}`);
    return rank;
  }
  if (rankScale != null) {
    if (!(typeof rankScale === 'number' && rankScale > 0 && Number.isFinite(rankScale))) {
      throw new UserError(`${where}: option 'rankScale' must be a number > 0; got ${String(rankScale)}`);
    }
    return Math.max(1, Math.floor(rankScale * Math.min(m, n)));
  }
  return Math.min(m, n);
}
