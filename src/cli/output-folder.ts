/**
 * The one rule for every command that writes an output folder: it never deletes or replaces a
 * folder it did not create, unless the user passes `--overwrite` AND the folder is recognisably
 * one of ours (an averaged checkpoint, or a training run folder); and a command that fails
 * removes the empty folders it created for its output.
 */
import { accessSync, constants, existsSync, lstatSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { UserError } from '../errors.ts';
import { acquireOutputLock, LOCK_FILE } from '../train/lock.ts';

/** Entries of a training run folder (--out of `train`, `quickstart`): what the trainer writes there. */
const RUN_ENTRY = [
  /^checkpoint_(last|best|\d+)$/,
  // Temporaries of an interrupted checkpoint write (see src/train/checkpoint.ts).
  /^\.checkpoint_(last|best|\d+)\.(tmp|old)-/,
  /^metrics\.jsonl$/,
  /^\.lock$/,
  /^\.tokenizer-\d+$/,
  /^run-data\.json$/,
];

/** Files of a checkpoint folder without training state (what average-checkpoints writes). */
const MODEL_ENTRY = [
  /^model\.json$/,
  /^weights\.bin$/,
  /^config\.json$/,
  /^SHA256SUMS$/,
  // Tokenizer files copied next to the weights.
  /^[^/]+\.model$/,
  /^[^/]+\.vocab$/,
  /^tokenizer(_config)?\.json$/,
];

/** Files that mark a training checkpoint (optimizer and trainer state): never replaced by an export. */
const TRAINING_STATE = ['optimizer.json', 'optimizer.bin', 'trainer-state.json'];

export type OutputKind = 'run' | 'checkpoint';

/** True when `inner` is `outer` or lies inside it. */
export function isInside(inner: string, outer: string): boolean {
  const rel = relative(resolve(outer), resolve(inner));
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..');
}

/** Why `dir` is not recognisably an output folder of `kind`, or null when it is. */
export function notOurs(dir: string, kind: OutputKind): string | null {
  const entries = readdirSync(dir);
  if (kind === 'checkpoint') {
    const state = entries.find((e) => TRAINING_STATE.includes(e));
    if (state) return `it is a training checkpoint (holds ${state}, the state --resume needs)`;
    const stranger = entries.find((e) => !MODEL_ENTRY.some((re) => re.test(e)) || !lstatSync(`${dir}/${e}`).isFile());
    if (stranger) return `it holds '${stranger}', which is not part of an averaged checkpoint`;
    if (!entries.includes('model.json')) return 'it holds no model.json';
    try {
      const json = JSON.parse(readFileSync(`${dir}/model.json`, 'utf8')) as { modelTopology?: unknown; weightsManifest?: unknown };
      if (!json.modelTopology || !Array.isArray(json.weightsManifest)) return 'its model.json is not a model of this package';
    } catch {
      return 'its model.json is not valid JSON';
    }
    return null;
  }
  const stranger = entries.find((e) => !RUN_ENTRY.some((re) => re.test(e)));
  if (stranger) return `it holds '${stranger}', which a training run does not write`;
  return null;
}

export interface PrepareOutputOptions {
  /** The flag that named the folder, for messages (e.g. '--out'). */
  flag?: string;
  kind: OutputKind;
  /** The user passed --overwrite: an existing folder of ours may be replaced. */
  overwrite: boolean;
  /** Folders the output must never replace or contain (e.g. the checkpoints being averaged). */
  protect?: { path: string; what: string }[];
}

/**
 * Checks that a command may write its output folder `out`, before it does any work: a file in the
 * way, a protected folder, or an existing folder without --overwrite (or not ours) is a UserError.
 * Returns whether `out` exists (so the caller knows it replaces something).
 */
export function checkOutputFolder(out: string, opts: PrepareOutputOptions): { exists: boolean } {
  const flag = opts.flag ?? '--out';
  for (const p of opts.protect ?? []) {
    if (isInside(p.path, out)) throw new UserError(`${flag} ${out}: would replace ${p.what} ${p.path}; choose a new folder`);
  }
  const parentFile = firstFileAncestor(out);
  if (parentFile !== null) throw new UserError(`${flag} ${out}: '${parentFile}' is a file, not a folder`);
  if (!existsSync(out)) return { exists: false };
  if (readdirSync(out).length === 0) return { exists: true };
  const why = notOurs(out, opts.kind);
  if (!opts.overwrite) {
    const hint = why === null ? 'pass --overwrite to replace it, or choose a new folder' : `choose a new folder (${why}, so it is not replaced even with --overwrite)`;
    throw new UserError(`${flag} ${out}: already exists and is not empty; ${hint}`);
  }
  if (why !== null) throw new UserError(`${flag} ${out}: refusing to replace it: ${why}; choose a new folder or remove it yourself`);
  return { exists: true };
}

/** The first path component of `p` (itself included) that exists and is not a folder; null if none. */
export function firstFileAncestor(p: string): string | null {
  const chain: string[] = [];
  for (let d = resolve(p); ; d = dirname(d)) {
    chain.unshift(d);
    if (dirname(d) === d) break;
  }
  for (const d of chain) {
    let st;
    try {
      st = statSync(d);
    } catch {
      return null; // from here on nothing exists
    }
    if (!st.isDirectory()) return d === resolve(p) ? p : d;
  }
  return null;
}

/**
 * Runs `work`, and if it fails removes the folders it created for `out` that are still empty
 * (`out` and any missing parents), so a failed command leaves nothing behind.
 */
export async function cleanupCreatedOnFailure<T>(out: string, work: () => Promise<T>): Promise<T> {
  const missing: string[] = [];
  for (let d = resolve(out); !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  try {
    return await work();
  } catch (err) {
    for (const d of missing) {
      try {
        if (existsSync(d) && readdirSync(d).length === 0) rmdirSync(d);
      } catch {
        break; // not ours to force
      }
    }
    throw err;
  }
}

/**
 * `--overwrite` of a training run folder: takes the folder's lock first (a training running there
 * refuses), checks the folder is a run folder of ours, and empties it. A missing folder is fine.
 */
export function clearRunFolder(out: string, flag = '--out'): void {
  const parentFile = firstFileAncestor(out);
  if (parentFile !== null) throw new UserError(`${flag} ${out}: '${parentFile}' is a file, not a folder`);
  if (!existsSync(out)) return;
  const before = notOurs(out, 'run');
  if (before !== null) throw new UserError(`${flag} ${out}: refusing to delete it: ${before}; choose another folder or remove it yourself`);
  const lock = acquireOutputLock(out);
  try {
    // Checked again under the lock: only what a training run writes is deleted.
    const why = notOurs(out, 'run');
    if (why !== null) throw new UserError(`${flag} ${out}: refusing to delete it: ${why}; choose another folder or remove it yourself`);
    for (const entry of readdirSync(out)) if (entry !== LOCK_FILE) rmSync(join(out, entry), { recursive: true, force: true });
  } finally {
    lock.release();
  }
}

/** A training --out that is a file (or under one) is the user's mistake, said before any work. */
export function checkOutFolderPath(out: string, flag = '--out'): void {
  const file = firstFileAncestor(out);
  if (file !== null) throw new UserError(`${flag} ${out}: '${file}' is a file, not a folder`);
}

/** The folder of an output file must exist and the file must not be a folder. */
export function checkOutputFile(file: string, flag = '--output'): void {
  if (existsSync(file) && statSync(file).isDirectory()) throw new UserError(`${flag} ${file}: is a folder, not a file`);
  const dir = dirname(file);
  const blocker = firstFileAncestor(dir);
  if (blocker !== null) throw new UserError(`${flag} ${file}: '${blocker}' is a file, not a folder`);
  if (!existsSync(dir)) throw new UserError(`${flag} ${file}: folder '${dir}' does not exist`);
  // An existing file is overwritten (like `>`): it must be writable; a new one needs a writable folder.
  const target = existsSync(file) ? file : dir;
  try {
    accessSync(target, constants.W_OK);
  } catch {
    throw new UserError(`${flag} ${file}: ${target === file ? 'the file' : `folder '${dir}'`} is not writable`);
  }
}
