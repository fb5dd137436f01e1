/**
 * OrtSeq2SeqDecoder: the DecoderStepModel of a TransformerSeq2Seq run by ONNX Runtime
 * (onnxruntime-node) on the graphs of export.ts, so `beamSearch`/`greedySearch` run on it
 * unchanged. The weights are exported from the tfjs model when this is built (the tfjs
 * checkpoint stays the one source of truth); caches live in plain Float32Arrays on the host.
 * Only ONNX Runtime's public API is used (`InferenceSession.create`, `run`): the searches await
 * `startDecoding`/`decodeStep`, so its async `run` costs one event-loop turn per step.
 */
import * as tf from '@tensorflow/tfjs';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { InternalError, UserError } from '../errors.ts';
import { describeBackend } from '../backend/index.ts';
import type { DecoderStepModel } from '../decode/types.ts';
import type { TransformerSeq2Seq } from '../models/seq2seq.ts';
import { exportSeq2SeqToOnnx, ONNX_NAMES } from './export.ts';
import type { Seq2SeqOnnxGraphs } from './export.ts';

type Outputs = Record<string, Tensor>;

export interface OrtDecoderOptions {
  /** ONNX Runtime intra-op threads. Default: the threads of our active engine (describeBackend). */
  threads?: number;
  /**
   * Let idle intra-op threads spin-wait for the next op (ONNX Runtime's default, true): lower
   * latency on cores of one's own, time stolen from other processes on shared ones.
   */
  spinning?: boolean;
}

/** Incremental decoding state: every array row-major, row i = hypothesis i. */
export interface OrtDecoderState {
  rows: number;
  /** Tokens fed so far (= position of the next one = cached self-attention length). */
  step: number;
  sourceLen: number;
  /** [rows, S], 1 = pad. */
  sourcePadMask: Float32Array;
  /** Per decoder layer, [rows, H, S, r]. */
  crossKeys: Float32Array[];
  crossValues: Float32Array[];
  /** Per decoder layer, [rows, H, step, r]. */
  selfKeys: Float32Array[];
  selfValues: Float32Array[];
}

/** What the encoder graph returns for a batch [B, S]. */
export interface OrtEncoderOutput {
  batch: number;
  sourceLen: number;
  /** [B, S, d]. */
  memory: Float32Array;
  sourcePadMask: Float32Array;
  crossKeys: Float32Array[];
  crossValues: Float32Array[];
}

/** ONNX Runtime's own log level: 3 = errors only (its warnings about unused initializers are noise here). */
const ORT_LOG_ERRORS_ONLY = 3;

function openSession(bytes: Uint8Array, threads: number, spinning: boolean): Promise<InferenceSession> {
  const options: InferenceSession.SessionOptions = {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: ORT_LOG_ERRORS_ONLY,
    extra: { session: { intra_op: { allow_spinning: spinning ? '1' : '0' } } },
  };
  return InferenceSession.create(bytes, options);
}

async function run(session: InferenceSession, feeds: Record<string, Tensor>): Promise<Outputs> {
  return (await session.run(feeds)) as Outputs;
}

function float32(out: Outputs, name: string): Float32Array {
  const t = out[name];
  if (!t || !(t.data instanceof Float32Array)) throw new InternalError(`ONNX Runtime: output '${name}' is missing or not float32`);
  return t.data;
}

/** Rows `rows` of `data` (rows of `rowSize` values), in that order; duplicates allowed. */
function takeRows(data: Float32Array, rowSize: number, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * rowSize);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    out.set(data.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize);
  }
  return out;
}

export class OrtSeq2SeqDecoder implements DecoderStepModel<OrtDecoderState> {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly maxTargetPositions: number;
  readonly threads: number;
  private readonly srcVocabSize: number;
  private readonly dims: Seq2SeqOnnxGraphs['dims'];
  private encoder: InferenceSession | null;
  private step: InferenceSession | null;

  private constructor(model: TransformerSeq2Seq, graphs: Seq2SeqOnnxGraphs, threads: number, sessions: [InferenceSession, InferenceSession]) {
    const c = model.config;
    this.bosId = c.bosId;
    this.eosId = c.eosId;
    this.padId = c.padId;
    this.maxTargetPositions = c.maxPositions;
    this.srcVocabSize = c.srcVocabSize;
    this.dims = graphs.dims;
    this.threads = threads;
    [this.encoder, this.step] = sessions;
  }

  /** Exports `model`'s current weights and opens one ONNX Runtime session per graph. */
  static async create(model: TransformerSeq2Seq, options: OrtDecoderOptions = {}): Promise<OrtSeq2SeqDecoder> {
    const threads = options.threads ?? describeBackend().threads;
    if (!Number.isInteger(threads) || threads < 1) throw new UserError(`ONNX Runtime: 'threads' must be a positive integer; got ${String(threads)}`);
    const graphs = await exportSeq2SeqToOnnx(model);
    const spinning = options.spinning ?? true;
    const sessions = await Promise.all([openSession(graphs.encoder, threads, spinning), openSession(graphs.decoderStep, threads, spinning)]);
    return new OrtSeq2SeqDecoder(model, graphs, threads, sessions as [InferenceSession, InferenceSession]);
  }

  private sessions(): { encoder: InferenceSession; step: InferenceSession } {
    if (!this.encoder || !this.step) throw new UserError('ONNX Runtime: this decoder was disposed');
    return { encoder: this.encoder, step: this.step };
  }

  /** Runs the encoder graph on ids [batch, sourceLen] (row-major, already padded). */
  async encode(ids: Int32Array, batch: number, sourceLen: number): Promise<OrtEncoderOutput> {
    if (ids.length !== batch * sourceLen) throw new InternalError(`ONNX encode: ${ids.length} ids for [${batch}, ${sourceLen}]`);
    const out = await run(this.sessions().encoder, { [ONNX_NAMES.sourceIds]: new Tensor('int32', ids, [batch, sourceLen]) });
    const layers = Array.from({ length: this.dims.decoderLayers }, (_, i) => i);
    return {
      batch,
      sourceLen,
      memory: float32(out, ONNX_NAMES.memory),
      sourcePadMask: float32(out, ONNX_NAMES.sourcePadMask),
      crossKeys: layers.map((i) => float32(out, ONNX_NAMES.crossKey(i))),
      crossValues: layers.map((i) => float32(out, ONNX_NAMES.crossValue(i))),
    };
  }

  /** Pads `sourceIds` (checked against the vocabulary), encodes once, repeats each row `copies` times. */
  async startDecoding(sourceIds: number[][], copies: number): Promise<OrtDecoderState> {
    if (sourceIds.length === 0) throw new UserError('decode: no source sentences given');
    const maxLen = Math.max(...sourceIds.map((s) => s.length));
    if (maxLen > this.maxTargetPositions) throw new UserError(`decode: a source sentence has ${maxLen} tokens, more than maxPositions ${this.maxTargetPositions}`);
    const flat = new Int32Array(sourceIds.length * maxLen).fill(this.padId);
    sourceIds.forEach((sentence, i) => {
      if (sentence.length === 0) throw new UserError(`decode: source sentence ${i} is empty`);
      sentence.forEach((id, j) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.srcVocabSize) {
          throw new UserError(`decode: source sentence ${i} has token id ${id} outside the vocabulary [0, ${this.srcVocabSize})`);
        }
        flat[i * maxLen + j] = id;
      });
    });
    const enc = await this.encode(flat, sourceIds.length, maxLen);
    const state: OrtDecoderState = {
      rows: sourceIds.length,
      step: 0,
      sourceLen: maxLen,
      sourcePadMask: enc.sourcePadMask,
      crossKeys: enc.crossKeys,
      crossValues: enc.crossValues,
      selfKeys: enc.crossKeys.map(() => new Float32Array(0)),
      selfValues: enc.crossKeys.map(() => new Float32Array(0)),
    };
    if (copies > 1) {
      const rows = new Int32Array(sourceIds.length * copies);
      for (let i = 0; i < rows.length; i++) rows[i] = Math.floor(i / copies);
      this.reorderDecoderState(state, rows, false);
    }
    return state;
  }

  /** One step: `tokens` [rows] at position state.step → next-token log-probs [rows, V] (a tfjs tensor). */
  async decodeStep(state: OrtDecoderState, tokens: Int32Array | number[]): Promise<tf.Tensor2D> {
    const { rows, step, sourceLen } = state;
    if (tokens.length !== rows) throw new UserError(`decodeStep: got ${tokens.length} tokens for ${rows} rows`);
    if (this.dims.positions && step >= this.dims.maxPositions) {
      throw new UserError(`decodeStep: position ${step} exceeds maxPositions ${this.dims.maxPositions}`);
    }
    const { numHeads: H, rank: r } = this.dims;
    const feeds: Record<string, Tensor> = {
      [ONNX_NAMES.tokens]: new Tensor('int32', Int32Array.from(tokens), [rows]),
      [ONNX_NAMES.position]: new Tensor('int32', Int32Array.of(step), [1]),
      [ONNX_NAMES.sourcePadMask]: new Tensor('float32', state.sourcePadMask, [rows, sourceLen]),
    };
    for (let i = 0; i < this.dims.decoderLayers; i++) {
      feeds[ONNX_NAMES.pastKey(i)] = new Tensor('float32', state.selfKeys[i], [rows, H, step, r]);
      feeds[ONNX_NAMES.pastValue(i)] = new Tensor('float32', state.selfValues[i], [rows, H, step, r]);
      feeds[ONNX_NAMES.crossKey(i)] = new Tensor('float32', state.crossKeys[i], [rows, H, sourceLen, r]);
      feeds[ONNX_NAMES.crossValue(i)] = new Tensor('float32', state.crossValues[i], [rows, H, sourceLen, r]);
    }
    const out = await run(this.sessions().step, feeds);
    for (let i = 0; i < this.dims.decoderLayers; i++) {
      state.selfKeys[i] = float32(out, ONNX_NAMES.presentKey(i));
      state.selfValues[i] = float32(out, ONNX_NAMES.presentValue(i));
    }
    state.step += 1;
    return tf.tensor2d(float32(out, ONNX_NAMES.logProbs), [rows, this.dims.vocabSize]);
  }

  /** Keeps rows `rows` of every cache (typed-array copies); see DecoderStepModel. */
  reorderDecoderState(state: OrtDecoderState, rows: Int32Array | number[], sameSource = false): void {
    for (const row of rows) {
      if (!Number.isInteger(row) || row < 0 || row >= state.rows) throw new InternalError(`reorderDecoderState: row ${row} outside [0, ${state.rows})`);
    }
    const { numHeads: H, rank: r } = this.dims;
    const selfRow = H * state.step * r;
    state.selfKeys = state.selfKeys.map((k) => takeRows(k, selfRow, rows));
    state.selfValues = state.selfValues.map((v) => takeRows(v, selfRow, rows));
    if (!sameSource) {
      const crossRow = H * state.sourceLen * r;
      state.crossKeys = state.crossKeys.map((k) => takeRows(k, crossRow, rows));
      state.crossValues = state.crossValues.map((v) => takeRows(v, crossRow, rows));
      state.sourcePadMask = takeRows(state.sourcePadMask, state.sourceLen, rows);
    }
    state.rows = rows.length;
  }

  /** The state holds host arrays only: dropping them is all there is to free. */
  disposeDecoderState(state: OrtDecoderState): void {
    state.selfKeys = [];
    state.selfValues = [];
    state.crossKeys = [];
    state.crossValues = [];
    state.sourcePadMask = new Float32Array(0);
  }

  /** Releases both ONNX Runtime sessions. */
  async dispose(): Promise<void> {
    const open = [this.encoder, this.step];
    this.encoder = null;
    this.step = null;
    await Promise.all(open.map((s) => s?.release()));
  }
}
