/**
 * Which engine runs inference (translate, evaluate, validation BLEU) of a TransformerSeq2Seq:
 *
 * - `tfjs`: the model itself (DecoderStepModel of TransformerSeq2Seq), on the active tfjs backend.
 * - `onnx`: the same weights exported in memory to ONNX graphs and run by ONNX Runtime
 *   (`onnxruntime-node`, an optional peer dependency; src/onnx). Measured on 2 CPU cores
 *   (`npm run bench -- decode-onnx`), a beam step costs a fraction of the tfjs one: each tfjs kernel
 *   call has a fixed cost of ~0.02–0.2 ms and a beam step is ~180 small calls.
 * - `auto` (default): `onnx` when the active tfjs backend is a CPU one (wasm, cpu), onnxruntime-node
 *   can be loaded and the model can be exported; else `tfjs`. On a GPU backend tfjs stays.
 *
 * The tfjs checkpoint stays the one source of truth: the ONNX graphs are rebuilt from the model's
 * current weights each time a decoder is opened (about half a second for the small models).
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import type { TransformerSeq2Seq } from '../models/seq2seq.ts';
import type { DecoderStepModel } from './types.ts';

export const DECODE_ENGINES = ['auto', 'tfjs', 'onnx'] as const;
export type DecodeEngine = (typeof DECODE_ENGINES)[number];

export interface OpenedDecoder {
  decoder: DecoderStepModel<unknown>;
  /** The engine that runs it. */
  engine: 'tfjs' | 'onnx';
  /** Why `auto` did not choose ONNX Runtime (undefined when it did, or when the engine was named). */
  fallbackReason?: string;
  /** Releases what the engine holds (the ONNX Runtime sessions); the model itself stays. */
  dispose(): Promise<void>;
}

const CPU_BACKENDS = new Set(['wasm', 'cpu']);

/** Opens a decoder for `model` on `engine` (see the header). */
export async function openDecoder(model: TransformerSeq2Seq, engine: DecodeEngine = 'auto'): Promise<OpenedDecoder> {
  if (!DECODE_ENGINES.includes(engine)) throw new UserError(`decode engine must be one of ${DECODE_ENGINES.join(', ')}; got ${String(engine)}`);
  const onTfjs = (fallbackReason?: string): OpenedDecoder => ({ decoder: model, engine: 'tfjs', fallbackReason, dispose: async () => undefined });
  if (engine === 'tfjs') return onTfjs();
  if (engine === 'auto' && !CPU_BACKENDS.has(tf.getBackend())) return onTfjs(`the tfjs backend is ${tf.getBackend()}, not a CPU one`);
  let runtime: typeof import('../onnx/runtime.ts');
  try {
    runtime = await import('../onnx/runtime.ts');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' || (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? 'onnxruntime-node is not installed' : String((err as Error).message).split('\n')[0];
    if (engine === 'onnx') throw new UserError(`decode engine onnx: ${why} (npm install onnxruntime-node)`);
    return onTfjs(why);
  }
  try {
    const ort = await runtime.OrtSeq2SeqDecoder.create(model, { spinning: false });
    return { decoder: ort as DecoderStepModel<unknown>, engine: 'onnx', dispose: () => ort.dispose() };
  } catch (err) {
    if (engine === 'onnx' || !(err instanceof UserError)) throw err;
    return onTfjs(err.message);
  }
}
