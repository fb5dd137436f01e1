/**
 * `file://` save and load in plain Node (src/io/file-routers.ts): a functional model with the
 * attention layer round-trips through model.save / tf.loadLayersModel, and a folder holding
 * anything else is never replaced.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FactorizedMultiHeadAttention } from '../src/attention/factorized-attention.ts';
import { registerFileRouters } from '../src/io/file-routers.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ft-routers-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function buildModel(): tf.LayersModel {
  const x = tf.input({ shape: [4, 8] });
  const y = new FactorizedMultiHeadAttention({ numHeads: 2, rankScale: 0.5 }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: x, outputs: y });
}

describe('file:// routers', () => {
  it('registers once and serves file:// for save and load', () => {
    // initBackend() (test/setup.ts) has registered them already; a second registration adds none.
    expect(tf.io.getSaveHandlers('file:///nowhere')).toHaveLength(1);
    expect(registerFileRouters()).toBe(true);
    expect(registerFileRouters()).toBe(true);
    expect(tf.io.getSaveHandlers('file:///nowhere')).toHaveLength(1);
    expect(tf.io.getLoadHandlers('file:///nowhere/model.json')).toHaveLength(1);
    expect(tf.io.getSaveHandlers('indexeddb://x')).toHaveLength(0);
  });

  it('round-trips a model through model.save and tf.loadLayersModel (absolute and relative URLs)', async () => {
    registerFileRouters();
    const model = buildModel();
    const x = tf.randomNormal([2, 4, 8], 0, 1, 'float32', 7);
    const expected = await (model.predict(x) as tf.Tensor).data();
    const dir = path.join(tmp, 'saved');
    await model.save(`file://${dir}`);
    expect(readdirSync(dir).sort()).toEqual(['SHA256SUMS', 'model.json', 'weights.bin']);
    const loaded = await tf.loadLayersModel(`file://${dir}/model.json`);
    expect(Array.from(await (loaded.predict(x) as tf.Tensor).data())).toEqual(Array.from(expected));
    // Saving again replaces the model's own files.
    await model.save(`file://${dir}`);
    const relative = path.relative(process.cwd(), dir);
    const again = await tf.loadLayersModel(`file://${relative}`);
    expect(again.layers.map((l) => l.getClassName())).toContain('FactorizedMultiHeadAttention');
    tf.dispose(x);
    [model, loaded, again].forEach((m) => m.dispose());
  });

  it('refuses to replace a folder that holds other files, and leaves them', async () => {
    registerFileRouters();
    const dir = path.join(tmp, 'user-folder');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    const model = buildModel();
    await expect(model.save(`file://${dir}`)).rejects.toThrow(/holds other files \(notes\.txt\); save the model to a new or empty folder/);
    expect(readFileSync(path.join(dir, 'notes.txt'), 'utf8')).toBe('mine');
    expect(readdirSync(dir)).toEqual(['notes.txt']);
    model.dispose();
  });
});
