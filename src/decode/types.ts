/**
 * What the search algorithms need from a model: incremental, cached decoding of a batch of rows
 * (each row a hypothesis for one source sentence). TransformerSeq2Seq implements it; tests use
 * toy models with known scores.
 */
import type * as tf from '@tensorflow/tfjs';

export interface DecoderStepModel<State = unknown> {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  /** Decoder positions the model accepts (BOS included); caps the output length. */
  readonly maxTargetPositions: number;
  /**
   * Encodes `sourceIds` once and returns the decoding state for `sourceIds.length · copies` rows,
   * row i·copies + k being copy k of source i (e.g. beam k). May be async (an engine whose run
   * is, e.g. ONNX Runtime's); the searches await it.
   */
  startDecoding(sourceIds: number[][], copies: number): State | Promise<State>;
  /** Feeds one token per row and returns log-probabilities of the next token, [rows, V] (or a promise of them). */
  decodeStep(state: State, tokens: Int32Array): tf.Tensor2D | Promise<tf.Tensor2D>;
  /**
   * Keeps rows `rows` (duplicates allowed) of the state, in that order. `sameSource` promises that
   * each new row copies a row of the same source sentence as the row it replaces (a beam
   * reorder), so per-source data (encoder output) may stay as it is.
   */
  reorderDecoderState(state: State, rows: Int32Array, sameSource: boolean): void;
  disposeDecoderState(state: State): void;
}

/** One output hypothesis. `tokens` excludes BOS and EOS. */
export interface Hypothesis {
  tokens: number[];
  /** Sum of token log-probabilities (EOS included) / length^lenPenalty, length = tokens + EOS. */
  score: number;
  /** Log-probability of each generated token, EOS last: length tokens.length + 1. */
  positionalScores: number[];
}
