import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync, truncateSync, mkdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  TrainOptimizer,
  averageCheckpoints,
  fileIOHandler,
  loadCheckpoint,
  saveCheckpoint,
  recoverCheckpoint,
  durableWriter,
  type FileWriter,
} from '../src/train/index.ts';
import { UserError } from '../src/errors.ts';
import { buildToyModel, weightValues, TOY } from './train-toy.ts';

function tmpDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'ft-ckpt-'));
}

function optimizerFor(model: tf.LayersModel): TrainOptimizer {
  return new TrainOptimizer(
    { name: 'adam' },
    model.trainableWeights.map((w) => ({ name: w.originalName, variable: w.read() as tf.Variable, decay: true })),
  );
}

describe('checkpoints', () => {
  it('writes the ARCHITECTURE §4 files, loadable by tf.loadLayersModel, with config and tokenizer files', async () => {
    const dir = path.join(tmpDir(), 'checkpoint_last');
    const model = buildToyModel();
    const opt = optimizerFor(model);
    const tokFile = path.join(tmpDir(), 'spm.model');
    writeFileSync(tokFile, 'tokenizer bytes');
    await saveCheckpoint(dir, { model, optimizer: opt, config: { dim: TOY.dim }, tokenizerFiles: [tokFile] });
    expect(readdirSync(dir).sort()).toEqual(['SHA256SUMS', 'config.json', 'model.json', 'optimizer.bin', 'optimizer.json', 'spm.model', 'weights.bin']);
    // No temporary siblings remain.
    expect(readdirSync(path.dirname(dir))).toEqual(['checkpoint_last']);

    const loaded = await tf.loadLayersModel(fileIOHandler(dir));
    const a = weightValues(model);
    const b = weightValues(loaded);
    expect(b.length).toBe(a.length);
    a.forEach((w, i) => expect(Array.from(b[i])).toEqual(Array.from(w)));
    const x = tf.tensor2d([[1, 2, 3]], [1, 3], 'int32');
    const y1 = model.predict(x) as tf.Tensor;
    const y2 = loaded.predict(x) as tf.Tensor;
    expect(Array.from(y2.dataSync())).toEqual(Array.from(y1.dataSync()));

    const ckpt = await loadCheckpoint(dir);
    expect(ckpt.config).toEqual({ dim: TOY.dim });
    expect(ckpt.tokenizerFiles.map((f) => path.basename(f))).toEqual(['spm.model']);
    expect(ckpt.optimizerState?.meta.name).toBe('adam');
    // Restoring into a freshly built model of the same architecture (names get suffixes) works by order.
    const fresh = buildToyModel();
    fresh.setWeights(fresh.getWeights().map((w) => tf.zerosLike(w)));
    ckpt.restoreWeightsInto(fresh);
    weightValues(fresh).forEach((w, i) => expect(Array.from(w)).toEqual(Array.from(a[i])));
    tf.dispose([x, y1, y2]);
    opt.dispose();
  });

  it('names the file for a truncated weights.bin, a broken model.json and a shape mismatch', async () => {
    const dir = path.join(tmpDir(), 'ckpt');
    const model = buildToyModel();
    await saveCheckpoint(dir, { model });
    const bin = path.join(dir, 'weights.bin');
    const size = readFileSync(bin).byteLength;
    truncateSync(bin, size - 4);
    await expect(loadCheckpoint(dir)).rejects.toThrow(new RegExp(`weights.bin: ${size - 4} bytes, but model.json lists weights of ${size} bytes`));
    await expect(tf.loadLayersModel(fileIOHandler(dir))).rejects.toBeInstanceOf(UserError);

    // Damaged without changing its size: caught by the checksum recorded in model.json.
    await saveCheckpoint(dir, { model });
    const flipped = readFileSync(bin);
    flipped[7] ^= 0xff;
    writeFileSync(bin, flipped);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/weights.bin: checksum does not match the one recorded in model.json/);
    await expect(tf.loadLayersModel(fileIOHandler(dir))).rejects.toBeInstanceOf(UserError);

    await saveCheckpoint(dir, { model });
    const bigger = buildToyModel({ ...TOY, dim: TOY.dim * 2 });
    const ckpt = await loadCheckpoint(dir);
    expect(() => ckpt.restoreWeightsInto(bigger)).toThrow(/weights.bin: weight .* has shape \[11,8\], the model built from the config expects \[11,16\]/);

    writeFileSync(path.join(dir, 'model.json'), '{"modelTopology": ');
    await expect(loadCheckpoint(dir)).rejects.toThrow(/model.json: not valid JSON/);
    await expect(loadCheckpoint(path.join(dir, 'nope'))).rejects.toThrow(/no such folder/);
  });

  it('a full disk fails with one clear line and leaves the previous checkpoint intact', async () => {
    const parent = tmpDir();
    const dir = path.join(parent, 'checkpoint_last');
    const model = buildToyModel();
    await saveCheckpoint(dir, { model, config: { version: 1 } });
    const before = readFileSync(path.join(dir, 'weights.bin'));
    // Change the weights, then fail while writing weights.bin of the new checkpoint.
    model.setWeights(model.getWeights().map((w) => tf.add(w, 1)));
    const fullDisk: FileWriter = {
      async writeFile(file, data) {
        if (file.endsWith('weights.bin')) {
          const err = new Error('ENOSPC: no space left on device') as NodeJS.ErrnoException;
          err.code = 'ENOSPC';
          throw err;
        }
        return durableWriter.writeFile(file, data);
      },
    };
    const err = await saveCheckpoint(dir, { model, config: { version: 2 }, writer: fullDisk }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^cannot write checkpoint .*checkpoint_last: disk full \(ENOSPC\); the previous checkpoint is kept$/);
    expect(readFileSync(path.join(dir, 'weights.bin')).equals(before)).toBe(true);
    expect(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))).toEqual({ version: 1 });
    expect(readdirSync(parent)).toEqual(['checkpoint_last']);
  });

  it('an unwritable output folder gives a UserError', async () => {
    // Root ignores permission bits, so put the checkpoint under a path whose parent is a file.
    const parent = tmpDir();
    writeFileSync(path.join(parent, 'file'), 'x');
    const err = await saveCheckpoint(path.join(parent, 'file', 'ckpt'), { model: buildToyModel() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^cannot write checkpoint .*ckpt: a file is in the way of the folder \(EEXIST\); no checkpoint was written$/);
  });

  it('recovers a replacement interrupted between its two renames', async () => {
    const parent = tmpDir();
    const dir = path.join(parent, 'checkpoint_last');
    await saveCheckpoint(dir, { model: buildToyModel() });
    // Simulate the crash: the old folder was moved aside, the new one never renamed in.
    const { renameSync } = await import('node:fs');
    renameSync(dir, path.join(parent, '.checkpoint_last.old-999-x'));
    mkdirSync(path.join(parent, '.checkpoint_last.tmp-999-y'));
    recoverCheckpoint(dir, true);
    expect(readdirSync(parent)).toEqual(['checkpoint_last']);
    await expect(loadCheckpoint(dir)).resolves.toBeTruthy();
  });

  it('refuses to save a model with NaN weights', async () => {
    const dir = path.join(tmpDir(), 'ckpt');
    const model = buildToyModel();
    model.setWeights(model.getWeights().map((w, i) => (i === 0 ? tf.fill(w.shape, NaN) : w)));
    await expect(saveCheckpoint(dir, { model })).rejects.toThrow(/NaN\/Inf/);
    expect(existsSync(dir)).toBe(false);
  });

  it('averages the weights of several checkpoints', async () => {
    const parent = tmpDir();
    const model = buildToyModel();
    const base = model.getWeights().map((w) => tf.clone(w));
    for (let k = 1; k <= 3; k++) {
      model.setWeights(base.map((w) => tf.add(w, k)));
      await saveCheckpoint(path.join(parent, `checkpoint_${k}`), { model, config: { k } });
    }
    const out = path.join(parent, 'averaged');
    await averageCheckpoints([1, 2, 3].map((k) => path.join(parent, `checkpoint_${k}`)), out);
    const avg = await tf.loadLayersModel(fileIOHandler(out));
    avg.getWeights().forEach((w, i) => {
      const expected = tf.add(base[i], 2);
      expect(tf.max(tf.abs(tf.sub(w, expected))).dataSync()[0]).toBeLessThan(1e-6);
    });
    expect((await loadCheckpoint(out)).config).toEqual({ k: 3 });
    const other = path.join(parent, 'other');
    await saveCheckpoint(other, { model: buildToyModel({ ...TOY, vocab: 13 }) });
    await expect(averageCheckpoints([other, path.join(parent, 'checkpoint_1')], path.join(parent, 'x'))).rejects.toThrow(/different weights/);
  });
});
