import { UserError } from '../errors.ts';

/** Perplexity exp(sumNll / numTokens) from a summed negative log-likelihood (natural log) over numTokens tokens. */
export function perplexity(sumNll: number, numTokens: number): number {
  if (!Number.isFinite(numTokens) || numTokens <= 0) {
    throw new UserError(`perplexity needs a positive token count, got numTokens = ${numTokens}`);
  }
  if (Number.isNaN(sumNll)) throw new UserError('perplexity got a NaN summed negative log-likelihood');
  return Math.exp(sumNll / numTokens);
}
