/**
 * The inference engine choice (src/decode/engine.ts): `tfjs` is the model itself, `auto` takes ONNX
 * Runtime on a CPU backend when onnxruntime-node is installed, and translating with either gives
 * the same text; config files written before `decode.engine` existed mean `auto`.
 */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openDecoder, type DecodeEngine } from '../src/decode/engine.ts';
import { UserError } from '../src/errors.ts';
import { TransformerSeq2Seq } from '../src/models/index.ts';
import { decodeSentences } from '../src/tasks/translation.ts';
import { resolveTranslationConfig, parseStoredTranslationConfig } from '../src/tasks/translation-config.ts';
import type { Tokenizer } from '../src/text/tokenizer.ts';

function ortInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('onnxruntime-node');
    return true;
  } catch {
    return false;
  }
}
const hasOrt = ortInstalled();

/** Ids as text, so decodeSentences' output can be compared without a real tokenizer. */
const idsAsText = { decode: (ids: number[]) => ids.join(' ') } as unknown as Tokenizer;

describe('decode engine', () => {
  let model: TransformerSeq2Seq;
  beforeAll(() => {
    model = new TransformerSeq2Seq({ srcVocabSize: 31, tgtVocabSize: 31, padId: 0, bosId: 1, eosId: 2, modelDim: 16, numHeads: 2, ffnDim: 32, maxPositions: 40, dropout: 0 });
  });
  afterAll(() => model.dispose());

  it('tfjs decodes with the model itself', async () => {
    const opened = await openDecoder(model, 'tfjs');
    expect(opened.engine).toBe('tfjs');
    expect(opened.decoder).toBe(model);
    await opened.dispose();
  });

  it('refuses an unknown engine in one line', async () => {
    await expect(openDecoder(model, 'gpu' as DecodeEngine)).rejects.toThrow(UserError);
    await expect(openDecoder(model, 'gpu' as DecodeEngine)).rejects.toThrow(/auto, tfjs, onnx/);
  });

  it.skipIf(!hasOrt)('auto takes ONNX Runtime on a CPU backend, and both engines translate alike (greedy and beam)', async () => {
    expect(['wasm', 'cpu']).toContain(tf.getBackend());
    const opened = await openDecoder(model, 'auto');
    expect(opened.engine).toBe('onnx');
    expect(opened.fallbackReason).toBeUndefined();
    await opened.dispose();
    const sources = [Int32Array.from([5, 6, 7]), Int32Array.from([8, 9]), Int32Array.from([10, 11, 12, 13])];
    for (const beam of [1, 3]) {
      const opts = { beam, lenPenalty: 1, maxLenA: 0, maxLenB: 8 };
      const before = tf.memory().numTensors;
      const tfjsSteps = vi.spyOn(model, 'decodeStep');
      const viaOnnx = await decodeSentences(model, idsAsText, sources, { ...opts, engine: 'onnx' });
      expect(tf.memory().numTensors).toBe(before);
      expect(tfjsSteps).not.toHaveBeenCalled(); // ONNX Runtime really ran the steps
      const viaTfjs = await decodeSentences(model, idsAsText, sources, { ...opts, engine: 'tfjs' });
      expect(tfjsSteps).toHaveBeenCalled();
      tfjsSteps.mockRestore();
      expect(viaOnnx).toEqual(viaTfjs);
      expect(viaOnnx.some((t) => t.length > 0)).toBe(true);
    }
  });

  it('a stored config without decode.engine means auto; the presets say auto', () => {
    const config = resolveTranslationConfig({ preset: 'transformer_small_cpu', sourceLang: 'en', targetLang: 'es', flags: { train: { maxSteps: 10 } } });
    expect(config.decode.engine).toBe('auto');
    const { engine: _engine, ...olderDecode } = config.decode;
    const parsed = parseStoredTranslationConfig({ ...config, decode: olderDecode }, 'config.json');
    expect(parsed.decode.engine).toBe('auto');
    expect(() => parseStoredTranslationConfig({ ...config, decode: { ...config.decode, engine: 'gpu' } }, 'config.json')).toThrow(/engine/);
  });
});
