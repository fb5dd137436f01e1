/**
 * Batched beam search as fairseq's SequenceGenerator does it: per sentence `beamSize` live
 * hypotheses; each step takes the top 2·beamSize of the [beamSize · V] continuations (so enough
 * non-EOS ones remain), EOS continuations among the top beamSize become finished hypotheses
 * scored sum(logprob) / length^lenPenalty, and a sentence is done once it has beamSize finished
 * ones (or reached its length limit). Finished sentences leave the batch.
 *
 * Cost per step: one decoder step over all live rows, one top-k on [sentences, beam·V], one
 * gather per cached tensor to follow the beam parents; only the k best scores go to the host.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { constrainLogProbs, maxLengths, resolveMinLen } from './constraints.ts';
import type { LengthOptions } from './constraints.ts';
import type { DecoderStepModel, Hypothesis } from './types.ts';

export interface BeamSearchOptions extends LengthOptions {
  /** Default 5. */
  beamSize?: number;
  /** Score = sum logprob / length^lenPenalty (length counts EOS). Default 1. */
  lenPenalty?: number;
  /** Hypotheses returned per sentence, best first. Default 1. */
  nBest?: number;
}

interface LiveBeam {
  tokens: number[];
  positional: number[];
  /** Sum of log-probs so far (−∞ for a placeholder row). */
  total: number;
}

/** For each source sentence (in input order), its nBest hypotheses sorted by score, best first. */
export async function beamSearch<S>(model: DecoderStepModel<S>, sourceIds: number[][], opts: BeamSearchOptions = {}): Promise<Hypothesis[][]> {
  const K = opts.beamSize ?? 5;
  const nBest = opts.nBest ?? 1;
  const lenPenalty = opts.lenPenalty ?? 1;
  if (!Number.isInteger(K) || K < 1) throw new UserError(`decode option 'beamSize' must be a positive integer; got ${String(K)}`);
  if (!Number.isInteger(nBest) || nBest < 1 || nBest > K) {
    throw new UserError(`decode option 'nBest' must be an integer in [1, beamSize=${K}]; got ${String(nBest)}`);
  }
  if (!Number.isFinite(lenPenalty)) throw new UserError(`decode option 'lenPenalty' must be a number; got ${String(lenPenalty)}`);
  const minLen = resolveMinLen(opts);
  const maxLen = maxLengths(model, sourceIds, opts);
  const finished: Hypothesis[][] = sourceIds.map(() => []);

  // Row j·K + k of the state is beam k of sentence active[j]. Beams 1..K−1 start at −∞ so the
  // first step expands beam 0 only.
  let active = sourceIds.map((_, i) => i);
  let beams: LiveBeam[] = active.flatMap(() => Array.from({ length: K }, (_, k) => ({ tokens: [], positional: [], total: k === 0 ? 0 : -Infinity })));
  const state = await model.startDecoding(sourceIds, K);
  try {
    let next = new Int32Array(beams.length).fill(model.bosId);
    for (let step = 0; active.length > 0; step++) {
      const logProbs = await model.decodeStep(state, next);
      const V = logProbs.shape[1];
      const forceEos = beams.map((_, row) => step >= maxLen[active[Math.floor(row / K)]]);
      const numCandidates = Math.min(2 * K, K * V);
      const [topValues, topIndices] = tf.tidy(() => {
        const constrained = constrainLogProbs(model, logProbs, step, minLen, forceEos);
        const totals = tf.tensor2d(Float32Array.from(beams, (b) => b.total), [beams.length, 1]);
        const candidates = tf.reshape(tf.add(constrained, totals), [active.length, K * V]);
        const { values, indices } = tf.topk(candidates, numCandidates);
        return [values, indices];
      });
      // Only the 2K best (total, index) pairs per sentence go to the host; a token's own log-prob
      // is its new total minus its parent's.
      const [values, indices] = await Promise.all([topValues.data(), topIndices.data()]);
      tf.dispose([topValues, topIndices]);
      logProbs.dispose();

      const nextActive: number[] = [];
      const nextBeams: LiveBeam[] = [];
      const parents: number[] = [];
      const nextTokens: number[] = [];
      active.forEach((sentence, j) => {
        const chosen: { parent: number; token: number; total: number }[] = [];
        for (let c = 0; c < numCandidates; c++) {
          const total = values[j * numCandidates + c];
          if (!Number.isFinite(total)) break; // sorted: the rest are −∞ too
          const flat = indices[j * numCandidates + c];
          const parent = j * K + Math.floor(flat / V);
          const token = flat % V;
          const beam = beams[parent];
          if (token === model.eosId) {
            // Like fairseq, only EOS among the top K candidates finishes a hypothesis.
            if (c < K && finished[sentence].length < K) {
              const positional = [...beam.positional, total - beam.total];
              finished[sentence].push({ tokens: beam.tokens, score: total / Math.pow(positional.length, lenPenalty), positionalScores: positional });
            }
          } else if (chosen.length < K) {
            chosen.push({ parent, token, total });
          }
        }
        const done = finished[sentence].length >= K || step >= maxLen[sentence] || chosen.length === 0;
        if (done) return;
        nextActive.push(sentence);
        for (let k = 0; k < K; k++) {
          // Fewer than K live continuations (tiny vocabularies): fill with dead −∞ copies.
          const pick = chosen[k] ?? { ...chosen[0], total: -Infinity };
          const parentBeam = beams[pick.parent];
          parents.push(pick.parent);
          nextTokens.push(pick.token);
          nextBeams.push({
            tokens: [...parentBeam.tokens, pick.token],
            positional: [...parentBeam.positional, pick.total - parentBeam.total],
            total: pick.total,
          });
        }
      });
      if (nextActive.length === 0) break;
      // Keeping every sentence means each row copies a beam of its own sentence.
      model.reorderDecoderState(state, Int32Array.from(parents), nextActive.length === active.length);
      active = nextActive;
      beams = nextBeams;
      next = Int32Array.from(nextTokens);
    }
  } finally {
    model.disposeDecoderState(state);
  }
  return finished.map((hyps) => [...hyps].sort((a, b) => b.score - a.score).slice(0, nBest));
}
