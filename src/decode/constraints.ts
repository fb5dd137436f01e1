/**
 * Shared rules of both searches: length limits and which tokens may be generated when.
 * fairseq's conventions: PAD (and BOS, unless it doubles as EOS) are never generated, EOS is
 * banned before `minLen` tokens, and a hypothesis of `maxLen` tokens must end (EOS is forced).
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import type { DecoderStepModel } from './types.ts';

export interface LengthOptions {
  /** Output length limit a·srcLen + b (tokens before EOS), as fairseq's --max-len-a/-b. */
  maxLenA?: number;
  maxLenB?: number;
  /** Tokens before EOS is allowed. Default 1. */
  minLen?: number;
}

function checkNumber(value: number, option: string, integer: boolean, min: number): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new UserError(`decode option '${option}' must be ${integer ? 'an integer' : 'a number'} >= ${min}; got ${String(value)}`);
  }
}

/** Per-sentence output length limits, capped so the decoder never runs past its positions. */
export function maxLengths(model: DecoderStepModel, sourceIds: number[][], opts: LengthOptions): number[] {
  const a = opts.maxLenA ?? 0;
  const b = opts.maxLenB ?? 200;
  checkNumber(a, 'maxLenA', false, 0);
  checkNumber(b, 'maxLenB', true, 0);
  // Step t feeds decoder position t; the forced EOS at t = maxLen needs position maxLen.
  const cap = model.maxTargetPositions - 1;
  return sourceIds.map((s) => Math.max(0, Math.min(Math.floor(a * s.length + b), cap)));
}

export function resolveMinLen(opts: LengthOptions): number {
  const minLen = opts.minLen ?? 1;
  checkNumber(minLen, 'minLen', true, 0);
  return minLen;
}

/**
 * Applies the generation rules to next-token log-probs [rows, V] at step `step`:
 * `forceEos[row]` rows may only emit EOS. Returns a new tensor.
 */
export function constrainLogProbs(model: DecoderStepModel, logProbs: tf.Tensor2D, step: number, minLen: number, forceEos: boolean[]): tf.Tensor2D {
  return tf.tidy(() => {
    const [rows, V] = logProbs.shape;
    const banned = new Float32Array(V);
    banned[model.padId] = -Infinity;
    if (model.bosId !== model.eosId) banned[model.bosId] = -Infinity;
    if (step < minLen) banned[model.eosId] = -Infinity;
    let out = tf.add(logProbs, tf.tensor2d(banned, [1, V])) as tf.Tensor2D;
    if (forceEos.some((f) => f)) {
      const eosOnly = new Float32Array(V).fill(-Infinity);
      eosOnly[model.eosId] = 0;
      const forced = tf.add(logProbs, tf.tensor2d(eosOnly, [1, V]));
      const mask = tf.tensor2d(Uint8Array.from(forceEos, (f) => (f ? 1 : 0)), [rows, 1], 'bool');
      out = tf.where(tf.broadcastTo(mask, [rows, V]), forced, out) as tf.Tensor2D;
    }
    return out;
  });
}
