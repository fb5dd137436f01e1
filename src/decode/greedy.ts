/**
 * Greedy decoding: the most likely next token at every step, batched over sentences, with the
 * incremental cache; finished sentences leave the batch.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { constrainLogProbs, maxLengths, resolveMinLen } from './constraints.ts';
import type { LengthOptions } from './constraints.ts';
import type { DecoderStepModel, Hypothesis } from './types.ts';

export interface GreedyOptions extends LengthOptions {
  /** Length normalization of the reported score: sum / length^lenPenalty. Default 1. */
  lenPenalty?: number;
}

/** One hypothesis per source sentence (in input order). */
export async function greedyDecode<S>(model: DecoderStepModel<S>, sourceIds: number[][], opts: GreedyOptions = {}): Promise<Hypothesis[]> {
  const lenPenalty = opts.lenPenalty ?? 1;
  if (!Number.isFinite(lenPenalty)) throw new UserError(`decode option 'lenPenalty' must be a number; got ${String(lenPenalty)}`);
  const minLen = resolveMinLen(opts);
  const maxLen = maxLengths(model, sourceIds, opts);
  const results: Hypothesis[] = new Array(sourceIds.length);
  const tokens: number[][] = sourceIds.map(() => []);
  const scores: number[][] = sourceIds.map(() => []);
  let active = sourceIds.map((_, i) => i); // sentence of each state row
  const state = await model.startDecoding(sourceIds, 1);
  try {
    let next = new Int32Array(active.length).fill(model.bosId);
    for (let step = 0; active.length > 0; step++) {
      const logProbs = await model.decodeStep(state, next);
      const forceEos = active.map((i) => step >= maxLen[i]);
      const [best, bestScore] = tf.tidy(() => {
        const constrained = constrainLogProbs(model, logProbs, step, minLen, forceEos);
        return [tf.argMax(constrained, 1), tf.max(constrained, 1)];
      });
      logProbs.dispose();
      const [bestIds, bestScores] = await Promise.all([best.data(), bestScore.data()]);
      tf.dispose([best, bestScore]);
      const keep: number[] = [];
      active.forEach((sentence, row) => {
        const token = bestIds[row];
        scores[sentence].push(bestScores[row]);
        if (token === model.eosId || !Number.isFinite(bestScores[row])) {
          const total = scores[sentence].reduce((a, b) => a + b, 0);
          results[sentence] = { tokens: tokens[sentence], score: total / Math.pow(scores[sentence].length, lenPenalty), positionalScores: scores[sentence] };
        } else {
          tokens[sentence].push(token);
          keep.push(row);
        }
      });
      if (keep.length === 0) break;
      if (keep.length < active.length) model.reorderDecoderState(state, Int32Array.from(keep), false);
      next = Int32Array.from(keep, (row) => bestIds[row]);
      active = keep.map((row) => active[row]);
    }
  } finally {
    model.disposeDecoderState(state);
  }
  return results;
}
