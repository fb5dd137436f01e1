/**
 * Checkpoint folders (docs/ARCHITECTURE.md §4.2, §4.3): model.json + weights.bin (tfjs Layers format), optimizer.json
 * + optimizer.bin, trainer-state.json, config.json and the tokenizer files.
 *
 * A folder is written in full to a hidden temporary sibling, every file fsynced, then renamed into
 * place, so a crash never leaves a half-written checkpoint. Replacing an existing folder takes two
 * renames (old → .old, tmp → target); if a crash falls between them, `recoverCheckpoint` puts the old
 * one back, and readers find it meanwhile (`locateCheckpoint`). Every folder carries SHA256SUMS
 * (`sha256sum -c` format) covering each of its files, checked on load, so a damaged file is refused
 * by name instead of being trained on. tfjs without tfjs-node has no file:// handler, hence the
 * small Node IO handler below.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp, existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { InternalError, UserError } from '../errors.ts';
import type { OptimizerState, OptimizerStateMeta, TrainOptimizer } from './optimizers.ts';
import type { TrainerState } from './state.ts';
import { isOutputLocked } from './lock.ts';

export const MODEL_JSON = 'model.json';
export const WEIGHTS_BIN = 'weights.bin';
/** model.json `userDefinedMetadata` key holding the sha256 of weights.bin. */
export const WEIGHTS_SHA256_KEY = 'weightsSha256';

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
export const OPTIMIZER_JSON = 'optimizer.json';
export const OPTIMIZER_BIN = 'optimizer.bin';
export const TRAINER_STATE_JSON = 'trainer-state.json';
export const CONFIG_JSON = 'config.json';
/** The folder's checksum manifest: one `<sha256>  <file>` line per other file (coreutils' format). */
export const CHECKSUMS_FILE = 'SHA256SUMS';
const OWN_FILES = new Set([MODEL_JSON, WEIGHTS_BIN, OPTIMIZER_JSON, OPTIMIZER_BIN, TRAINER_STATE_JSON, CONFIG_JSON, CHECKSUMS_FILE]);

function checksumManifest(files: { name: string; data: Uint8Array }[]): { name: string; data: Uint8Array } {
  return { name: CHECKSUMS_FILE, data: Buffer.from(files.map((f) => `${sha256(f.data)}  ${f.name}\n`).join('')) };
}

/**
 * Checks every file listed in `dir`/SHA256SUMS (or those `which` selects) against its checksum; a
 * damaged or missing one is a UserError naming it. Returns false when the folder has no SHA256SUMS
 * (written by 0.1.0, before the manifest existed), so the caller can say what could not be checked.
 */
export function verifyCheckpointFiles(dir: string, which: (name: string) => boolean = () => true): boolean {
  const manifest = path.join(dir, CHECKSUMS_FILE);
  if (!existsSync(manifest)) return false;
  const lines = readFileSync(manifest, 'utf8').split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new UserError(`${manifest}: empty (damaged checkpoint)`);
  lines.forEach((line, i) => {
    const m = /^([0-9a-f]{64}) [ *]([^/\\]+)$/.exec(line);
    if (!m || m[2] === '.' || m[2] === '..') throw new UserError(`${manifest}:${i + 1}: not a '<sha256>  <file>' line (damaged checkpoint)`);
    if (!which(m[2])) return;
    const file = path.join(dir, m[2]);
    let data: Buffer;
    try {
      data = readFileSync(file);
    } catch {
      throw new UserError(`${file}: missing (listed in ${CHECKSUMS_FILE}; incomplete checkpoint)`);
    }
    if (sha256(data) !== m[1]) {
      throw new UserError(`${file}: checksum does not match the one recorded in ${CHECKSUMS_FILE} (damaged file); refusing to use this checkpoint`);
    }
  });
  return true;
}

/** Writes one file durably. Injectable so tests can simulate a full disk. */
export interface FileWriter {
  writeFile(file: string, data: Uint8Array): Promise<void>;
}

export const durableWriter: FileWriter = {
  async writeFile(file, data) {
    const handle = await fsp.open(file, 'w');
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

const DISK_ERRORS: Record<string, string> = {
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EIO: 'I/O error',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EEXIST: 'a file is in the way of the folder',
};

function diskError(err: unknown, target: string): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code && code in DISK_ERRORS) {
    // Only claim a previous checkpoint was kept when there is one (not at a run's first save).
    const kept = existsSync(target) ? 'the previous checkpoint is kept' : 'no checkpoint was written';
    return new UserError(`cannot write checkpoint ${target}: ${DISK_ERRORS[code]} (${code}); ${kept}`);
  }
  return err as Error;
}

async function fsyncDir(dir: string): Promise<void> {
  // Makes the renames durable; some file systems refuse fsync on directories, which is harmless.
  try {
    const handle = await fsp.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    /* best effort */
  }
}

function tempSibling(target: string, tag: string): string {
  const rand = Math.floor(Math.random() * 1e9).toString(36); // only a unique name, not part of results
  return path.join(path.dirname(target), `.${path.basename(target)}.${tag}-${process.pid}-${rand}`);
}

/**
 * If a previous replacement of `target` was interrupted between its two renames, moves the old
 * folder back. With `removeTemporaries` (only for the holder of the output folder's lock, since
 * another process may be writing one right now) also removes leftover temporary folders.
 */
export function recoverCheckpoint(target: string, removeTemporaries = false): void {
  const parent = path.dirname(target);
  if (!existsSync(parent)) return;
  const base = path.basename(target);
  for (const entry of readdirSync(parent)) {
    const full = path.join(parent, entry);
    if (entry.startsWith(`.${base}.old-`)) {
      if (!existsSync(target)) renameSync(full, target);
      else rmSync(full, { recursive: true, force: true });
    } else if (removeTemporaries && entry.startsWith(`.${base}.tmp-`)) {
      rmSync(full, { recursive: true, force: true });
    }
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * The folder to read for checkpoint `dir`. A kill between the two renames of a replacement leaves
 * the complete previous checkpoint at `.NAME.old-*` and nothing at `dir`: it is moved back when no
 * training holds the run folder (else, or on a read-only folder, read where it lies). A live writer
 * is between its renames for microseconds only, so that case waits briefly for `dir` first.
 * Returns null when there is no such checkpoint.
 */
export function locateCheckpoint(dir: string): string | null {
  const parent = path.dirname(dir);
  const base = path.basename(dir);
  const aside = (): string[] =>
    existsSync(parent)
      ? readdirSync(parent)
          .filter((e) => e.startsWith(`.${base}.old-`))
          .map((e) => path.join(parent, e))
      : [];
  if (existsSync(dir)) return dir;
  if (aside().length === 0) return null;
  if (!isOutputLocked(parent)) {
    try {
      recoverCheckpoint(dir);
    } catch {
      /* a read-only folder: read the checkpoint where it lies */
    }
  } else {
    for (let waited = 0; waited < 2000 && !existsSync(dir); waited += 50) sleepSync(50);
  }
  if (existsSync(dir)) return dir;
  return aside().find((d) => existsSync(path.join(d, MODEL_JSON))) ?? null;
}

/**
 * A checkpoint given as its own folder or as a run folder (its checkpoint_best, else
 * checkpoint_last), through `locateCheckpoint`; null when there is none.
 */
export function findCheckpointFolder(dir: string): string | null {
  const own = locateCheckpoint(dir);
  if (own !== null && existsSync(path.join(own, MODEL_JSON))) return own;
  for (const name of ['checkpoint_best', 'checkpoint_last']) {
    const inner = locateCheckpoint(path.join(dir, name));
    if (inner !== null && existsSync(path.join(inner, MODEL_JSON))) return inner;
  }
  return null;
}

/** Writes `files` as the folder `target`, atomically replacing any folder already there. */
export async function writeFolderAtomic(
  target: string,
  files: { name: string; data: Uint8Array }[],
  writer: FileWriter = durableWriter,
): Promise<void> {
  const parent = path.dirname(target);
  try {
    await fsp.mkdir(parent, { recursive: true });
  } catch (err) {
    throw diskError(err, target);
  }
  const tmp = tempSibling(target, 'tmp');
  let old: string | null = null;
  try {
    await fsp.mkdir(tmp);
    for (const f of [...files, checksumManifest(files)]) await writer.writeFile(path.join(tmp, f.name), f.data);
    await fsyncDir(tmp);
    if (existsSync(target)) {
      old = tempSibling(target, 'old');
      await fsp.rename(target, old);
    }
    await fsp.rename(tmp, target);
    await fsyncDir(parent);
  } catch (err) {
    await fsp.rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    if (old && !existsSync(target)) await fsp.rename(old, target).catch(() => undefined);
    throw diskError(err, target);
  }
  if (old) await fsp.rm(old, { recursive: true, force: true });
}

/** The model.json layout tf.loadLayersModel expects, with one weights file. */
interface ModelJSONFile {
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
  modelTopology: unknown;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  trainingConfig?: unknown;
  userDefinedMetadata?: Record<string, unknown>;
}

function modelFiles(artifacts: tf.io.ModelArtifacts): { name: string; data: Uint8Array }[] {
  if (!artifacts.modelTopology || !artifacts.weightSpecs || artifacts.weightData === undefined) {
    throw new InternalError('model.save produced no topology or weights');
  }
  const json: ModelJSONFile = {
    format: artifacts.format,
    generatedBy: artifacts.generatedBy,
    convertedBy: artifacts.convertedBy ?? null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs }],
  };
  if (artifacts.trainingConfig) json.trainingConfig = artifacts.trainingConfig;
  const weights = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData));
  // A checksum of weights.bin (in tfjs' own free-form metadata field, which loaders ignore), so a
  // weights file damaged without changing its size is detected on load, not trained on.
  json.userDefinedMetadata = { ...(artifacts.userDefinedMetadata ?? {}), [WEIGHTS_SHA256_KEY]: sha256(weights) };
  return [
    { name: MODEL_JSON, data: Buffer.from(JSON.stringify(json)) },
    { name: WEIGHTS_BIN, data: weights },
  ];
}

async function readModelArtifacts(dir: string): Promise<tf.io.ModelArtifacts> {
  const jsonPath = path.join(dir, MODEL_JSON);
  const binPath = path.join(dir, WEIGHTS_BIN);
  const modelJSON = readJSONFile<ModelJSONFile>(jsonPath);
  if (!modelJSON || typeof modelJSON !== 'object' || !modelJSON.modelTopology || !Array.isArray(modelJSON.weightsManifest)) {
    throw new UserError(`${jsonPath}: not a tfjs Layers model.json (expected modelTopology and weightsManifest)`);
  }
  const specs = modelJSON.weightsManifest.flatMap((g) => g.weights);
  const paths = modelJSON.weightsManifest.flatMap((g) => g.paths);
  if (paths.length !== 1 || paths[0] !== WEIGHTS_BIN) {
    throw new UserError(`${jsonPath}: expected one weights file '${WEIGHTS_BIN}', got [${paths.join(', ')}]`);
  }
  if (!existsSync(binPath)) throw new UserError(`${binPath}: missing (the checkpoint's weights)`);
  const data = await fsp.readFile(binPath);
  const expected = specs.reduce((n, s) => n + weightByteSize(s), 0);
  if (data.byteLength !== expected) {
    throw new UserError(`${binPath}: ${data.byteLength} bytes, but ${MODEL_JSON} lists weights of ${expected} bytes (truncated or corrupted)`);
  }
  const recorded = modelJSON.userDefinedMetadata?.[WEIGHTS_SHA256_KEY];
  if (typeof recorded === 'string' && recorded !== sha256(data)) {
    throw new UserError(`${binPath}: checksum does not match the one recorded in ${MODEL_JSON} (corrupted weights)`);
  }
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer;
  return tf.io.getModelArtifactsForJSON(modelJSON as unknown as tf.io.ModelJSON, async () => [specs, weightData]);
}

function weightByteSize(spec: tf.io.WeightsManifestEntry): number {
  if (spec.quantization) throw new UserError(`weight ${spec.name}: quantized weights are not supported`);
  const size = spec.shape.reduce((a, b) => a * b, 1);
  const bytes: Record<string, number> = { float32: 4, int32: 4, bool: 1 };
  if (!(spec.dtype in bytes)) throw new UserError(`weight ${spec.name}: unsupported dtype ${spec.dtype}`);
  return size * bytes[spec.dtype];
}

/**
 * A tfjs IOHandler for a folder on the local disk: `model.save(fileIOHandler(dir))` writes
 * model.json + weights.bin atomically, `tf.loadLayersModel(fileIOHandler(dir))` reads them.
 */
export function fileIOHandler(dir: string, writer: FileWriter = durableWriter): tf.io.IOHandler {
  return {
    async save(artifacts) {
      await writeFolderAtomic(dir, modelFiles(artifacts), writer);
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
    load: () => readModelArtifacts(dir),
  };
}

function readJSONFile<T>(file: string): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`${file}: missing`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
  }
}

async function captureModel(model: tf.LayersModel): Promise<tf.io.ModelArtifacts> {
  let captured: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  if (!captured) throw new InternalError('model.save did not call the save handler');
  return captured;
}

/** Throws if any float weight is NaN/Inf: a checkpoint must never hold a diverged model. */
function assertFiniteWeights(specs: tf.io.WeightsManifestEntry[], data: ArrayBuffer, what: string): void {
  let offset = 0;
  for (const spec of specs) {
    const bytes = weightByteSize(spec);
    if (spec.dtype === 'float32') {
      const values = new Float32Array(data, offset, bytes / 4);
      for (let i = 0; i < values.length; i++) {
        if (!Number.isFinite(values[i])) {
          const kept = existsSync(what) ? 'the previous checkpoint is kept' : 'no checkpoint was written';
          throw new UserError(`refusing to save ${what}: weight ${spec.name} holds NaN/Inf (the model diverged); ${kept}`);
        }
      }
    }
    offset += bytes;
  }
}

export interface SaveCheckpointOptions {
  model: tf.LayersModel;
  optimizer?: TrainOptimizer;
  trainerState?: TrainerState;
  /** The run's configuration (model + task), written as config.json. */
  config?: unknown;
  /** Tokenizer files to copy into the folder (by base name). */
  tokenizerFiles?: string[];
  writer?: FileWriter;
}

/** Writes a complete checkpoint folder at `dir`, atomically. */
export async function saveCheckpoint(dir: string, options: SaveCheckpointOptions): Promise<void> {
  const artifacts = await captureModel(options.model);
  const files = modelFiles(artifacts);
  assertFiniteWeights(artifacts.weightSpecs!, files[1].data.buffer as ArrayBuffer, dir);
  if (options.optimizer) {
    const { meta, buffers } = await options.optimizer.getState();
    const total = buffers.reduce((n, b) => n + b.length, 0);
    const bin = new Float32Array(total);
    let offset = 0;
    for (const b of buffers) {
      bin.set(b, offset);
      offset += b.length;
    }
    files.push({ name: OPTIMIZER_JSON, data: Buffer.from(JSON.stringify({ ...meta, byteLength: bin.byteLength }, null, 1)) });
    files.push({ name: OPTIMIZER_BIN, data: new Uint8Array(bin.buffer) });
  }
  if (options.trainerState) files.push({ name: TRAINER_STATE_JSON, data: Buffer.from(JSON.stringify(options.trainerState, null, 1)) });
  if (options.config !== undefined) files.push({ name: CONFIG_JSON, data: Buffer.from(JSON.stringify(options.config, null, 1)) });
  for (const file of options.tokenizerFiles ?? []) {
    const name = path.basename(file);
    if (OWN_FILES.has(name)) throw new UserError(`tokenizer file ${file}: its name clashes with the checkpoint's ${name}`);
    let data: Buffer;
    try {
      data = await fsp.readFile(file);
    } catch {
      throw new UserError(`tokenizer file ${file}: cannot be read`);
    }
    files.push({ name, data });
  }
  await writeFolderAtomic(dir, files, options.writer);
}

export interface LoadedCheckpoint {
  dir: string;
  config: unknown | null;
  trainerState: TrainerState | null;
  optimizerState: OptimizerState | null;
  weightSpecs: tf.io.WeightsManifestEntry[];
  /** Raw weights.bin, in the order of weightSpecs (= the model's weight order). */
  weightData: ArrayBuffer;
  /** Paths of the tokenizer (and any other non-checkpoint) files in the folder. */
  tokenizerFiles: string[];
  /** Builds the saved tf.LayersModel (its custom layers must be registered). */
  loadModel(): Promise<tf.LayersModel>;
  /** Copies the saved weights into `model` (same architecture, e.g. built from config.json). */
  restoreWeightsInto(model: tf.LayersModel): void;
}

/** Reads and validates a checkpoint folder. Every problem is a UserError naming the file. */
export async function loadCheckpoint(requested: string): Promise<LoadedCheckpoint> {
  // After a kill between the two renames of a replacement, the checkpoint lies aside: find it.
  const dir = locateCheckpoint(requested) ?? requested;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`checkpoint ${requested}: no such folder`);
  // Every file before it is parsed, so damage is named as such; the model's two files last, as
  // their own checks (JSON, sizes, weights.bin's checksum in model.json) say more precisely what is wrong.
  const modelFile = (name: string): boolean => name === WEIGHTS_BIN || name === MODEL_JSON;
  const verified = verifyCheckpointFiles(dir, (name) => !modelFile(name));
  const artifacts = await readModelArtifacts(dir);
  const weightSpecs = artifacts.weightSpecs!;
  const weightData = artifacts.weightData as ArrayBuffer;
  const configPath = path.join(dir, CONFIG_JSON);
  const statePath = path.join(dir, TRAINER_STATE_JSON);
  const config = existsSync(configPath) ? readJSONFile<unknown>(configPath) : null;
  const trainerState = existsSync(statePath) ? readJSONFile<TrainerState>(statePath) : null;
  if (trainerState && trainerState.format !== 'factorized-transformer/trainer-state@1') {
    throw new UserError(`${statePath}: unknown format '${String(trainerState.format)}'`);
  }
  const optimizerState = existsSync(path.join(dir, OPTIMIZER_JSON)) ? await readOptimizerState(dir) : null;
  const tokenizerFiles = readdirSync(dir)
    .filter((f) => !OWN_FILES.has(f) && !f.startsWith('.'))
    .map((f) => path.join(dir, f));
  if (verified) verifyCheckpointFiles(dir, modelFile);
  else warnUnverified(dir, artifacts.userDefinedMetadata?.[WEIGHTS_SHA256_KEY] !== undefined);
  return {
    dir,
    config,
    trainerState,
    optimizerState,
    weightSpecs,
    weightData,
    tokenizerFiles,
    loadModel: () => tf.loadLayersModel(fileIOHandler(dir)),
    restoreWeightsInto: (model) => restoreWeights(model, weightSpecs, weightData, path.join(dir, WEIGHTS_BIN)),
  };
}

/**
 * Checkpoints of 0.1.0 have no SHA256SUMS: they still load (a run folder must not become unusable
 * with an update), with a loud warning on stderr; their next save adds the manifest.
 */
function warnUnverified(dir: string, weightsChecked: boolean): void {
  const what = weightsChecked ? 'only weights.bin was checked (its checksum in model.json)' : 'none of its files could be checked, not even weights.bin';
  process.emitWarning(`checkpoint ${dir} has no ${CHECKSUMS_FILE} (written before checksums covered every file): ${what}; a damaged file would go unnoticed. Re-save it (resume the run, or average-checkpoints --inputs ${dir}) to add checksums.`, {
    code: 'FT_UNVERIFIED_CHECKPOINT',
  });
}

async function readOptimizerState(dir: string): Promise<OptimizerState> {
  const jsonPath = path.join(dir, OPTIMIZER_JSON);
  const binPath = path.join(dir, OPTIMIZER_BIN);
  const meta = readJSONFile<OptimizerStateMeta & { byteLength: number }>(jsonPath);
  if (meta.format !== 'factorized-transformer/optimizer@1' || !Array.isArray(meta.params) || !Array.isArray(meta.slots)) {
    throw new UserError(`${jsonPath}: not an optimizer state file`);
  }
  if (!existsSync(binPath)) throw new UserError(`${binPath}: missing (the optimizer's state)`);
  const raw = await fsp.readFile(binPath);
  const sizes = meta.params.map((p) => p.shape.reduce((a, b) => a * b, 1));
  const expected = sizes.reduce((a, b) => a + b, 0) * meta.slots.length * 4;
  if (raw.byteLength !== expected) {
    throw new UserError(`${binPath}: ${raw.byteLength} bytes, but ${OPTIMIZER_JSON} lists state of ${expected} bytes (truncated or corrupted)`);
  }
  const all = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const buffers: Float32Array[] = [];
  let offset = 0;
  for (const size of sizes) {
    for (let s = 0; s < meta.slots.length; s++) {
      buffers.push(all.slice(offset, offset + size));
      offset += size;
    }
  }
  return { meta, buffers };
}

/**
 * Assigns saved weights to `model.weights` by position (tfjs' own name matching breaks when layer
 * names get unique suffixes, e.g. a second model built in the same process), checking every shape.
 */
function restoreWeights(model: tf.LayersModel, specs: tf.io.WeightsManifestEntry[], data: ArrayBuffer, where: string): void {
  const targets = model.weights;
  if (targets.length !== specs.length) {
    throw new UserError(`${where}: holds ${specs.length} weights, the model built from the config has ${targets.length}`);
  }
  specs.forEach((spec, i) => {
    const shape = targets[i].shape;
    if (spec.shape.length !== shape.length || spec.shape.some((d, j) => d !== shape[j])) {
      throw new UserError(`${where}: weight ${spec.name} has shape [${spec.shape}], the model built from the config expects [${shape}]`);
    }
  });
  const tensors = tf.io.decodeWeights(data, specs);
  try {
    specs.forEach((spec, i) => targets[i].write(tensors[spec.name]));
  } finally {
    tf.dispose(Object.values(tensors));
  }
}

/** checkpoint_<step> folders under `outDir`, oldest first. */
export function listStepCheckpoints(outDir: string): { step: number; dir: string }[] {
  if (!existsSync(outDir)) return [];
  return readdirSync(outDir)
    .map((f) => ({ m: /^checkpoint_(\d+)$/.exec(f), f }))
    .filter((x) => x.m)
    .map((x) => ({ step: Number(x.m![1]), dir: path.join(outDir, x.f) }))
    .sort((a, b) => a.step - b.step);
}

/**
 * Averages the weights of several checkpoints of the same model (fairseq's average_checkpoints) into
 * `outDir`, with model.json, config and tokenizer files from the last one and no optimizer state.
 */
export async function averageCheckpoints(dirs: string[], outDir: string, writer?: FileWriter): Promise<void> {
  if (dirs.length === 0) throw new UserError('average-checkpoints: no checkpoints given');
  const loaded = [];
  for (const d of dirs) loaded.push(await loadCheckpoint(d));
  const ref = loaded[loaded.length - 1];
  for (const c of loaded) {
    const same =
      c.weightSpecs.length === ref.weightSpecs.length &&
      c.weightSpecs.every((s, i) => s.dtype === ref.weightSpecs[i].dtype && s.shape.join() === ref.weightSpecs[i].shape.join());
    if (!same) throw new UserError(`average-checkpoints: ${c.dir} has different weights than ${ref.dir}`);
  }
  const out = new Uint8Array(ref.weightData.byteLength);
  out.set(new Uint8Array(ref.weightData)); // int/bool weights are taken from the last checkpoint
  let offset = 0;
  for (const spec of ref.weightSpecs) {
    const bytes = weightByteSize(spec);
    if (spec.dtype === 'float32') {
      const n = bytes / 4;
      // Sum in float64 so the order of checkpoints does not matter to the last bit.
      const sum = new Float64Array(n);
      for (const c of loaded) {
        const v = new Float32Array(c.weightData, offset, n);
        for (let i = 0; i < n; i++) sum[i] += v[i];
      }
      const avg = new Float32Array(out.buffer, offset, n);
      for (let i = 0; i < n; i++) avg[i] = sum[i] / loaded.length;
    }
    offset += bytes;
  }
  // The reference's model.json, with the averaged weights' checksum.
  const modelJSON = readJSONFile<ModelJSONFile>(path.join(ref.dir, MODEL_JSON));
  modelJSON.userDefinedMetadata = { ...(modelJSON.userDefinedMetadata ?? {}), [WEIGHTS_SHA256_KEY]: sha256(out) };
  const files = [
    { name: MODEL_JSON, data: Buffer.from(JSON.stringify(modelJSON)) },
    { name: WEIGHTS_BIN, data: out },
  ];
  const configPath = path.join(ref.dir, CONFIG_JSON);
  if (existsSync(configPath)) files.push({ name: CONFIG_JSON, data: await fsp.readFile(configPath) });
  for (const f of ref.tokenizerFiles) files.push({ name: path.basename(f), data: await fsp.readFile(f) });
  await writeFolderAtomic(outDir, files, writer);
}
