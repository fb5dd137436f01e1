/**
 * What both training tasks do the same way around a run folder: opening it (lock check, repair of
 * a checkpoint left aside by a kill, new run or resume), the one resume policy, reading a
 * checkpoint's config.json with errors that name the file, finding the checkpoint folder of a run
 * folder, and loading the tokenizer a checkpoint carries.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { loadTokenizer, type Tokenizer } from '../text/tokenizer.ts';
import { CONFIG_JSON, findCheckpointFolder, MODEL_JSON, recoverCheckpoint } from '../train/checkpoint.ts';
import { acquireOutputLock } from '../train/lock.ts';
import { LAST_CHECKPOINT } from '../train/run-folder.ts';
import type { TrainResult } from '../train/trainer.ts';
import { mergeConfig, readJsonObject } from './config.ts';

/** Re-exported for the tasks: the name is the run folder's (train/run-folder.ts). */
export { LAST_CHECKPOINT };

/**
 * The config keys a resumed run may change (dotted paths into a task config); every other change
 * is refused by name. They steer when the run stops, how often it validates, saves and logs, how
 * many step checkpoints it keeps, and how validation decodes — never the model, the data or the
 * recipe, which the checkpoint's weights and optimizer state were made with.
 */
export const RESUMABLE_KEYS: readonly string[] = [
  'train.maxSteps',
  'train.maxEpochs',
  'train.maxTimeMinutes',
  'train.validEvery',
  'train.saveEvery',
  'train.logEvery',
  'train.keepLast',
  'decode.beam',
  'decode.lenPenalty',
  'decode.maxLenA',
  'decode.maxLenB',
  'decode.validBleuSamples',
  'decode.validBeam',
];

export interface OpenedRun {
  /** True when the run continues from `<out>/checkpoint_last`. */
  resume: boolean;
  /** `<out>/checkpoint_last`. */
  lastDir: string;
}

/**
 * Prepares `out` for a training run: fails fast (before configs, tokenizer and corpus are read)
 * if another training holds the folder — the trainer takes the lock for real — and puts back a
 * checkpoint_last that a kill between the two renames of a save left aside. Like fairseq,
 * `resume` on a folder without a checkpoint starts the run (a restart loop can always pass it);
 * a new run refuses a folder that already holds one.
 */
export function openRunFolder(out: string, resume: boolean | undefined, log: (line: string) => void): OpenedRun {
  acquireOutputLock(out).release();
  const lastDir = join(out, LAST_CHECKPOINT);
  recoverCheckpoint(lastDir);
  const resuming = resume === true && existsSync(lastDir);
  if (resume && !resuming) log(`\`resume\`: no ${LAST_CHECKPOINT} in ${out} yet; starting a new run`);
  if (!resuming && existsSync(lastDir)) {
    throw new UserError(`\`out\` ${out}: already holds ${LAST_CHECKPOINT}; pass \`resume\` to continue it, or choose another folder`);
  }
  return { resume: resuming, lastDir };
}

/**
 * A checkpoint's config.json, parsed by the task's `parse` (which validates and names the file).
 * A missing or damaged file is a one-line UserError naming it.
 */
export function readCheckpointConfig<T>(dir: string, parse: (value: unknown, file: string) => T): T {
  const file = join(dir, CONFIG_JSON);
  return parse(readJsonObject(file, `checkpoint ${dir}`), file);
}

/** Dotted paths of the leaves where `after` differs from `before` (objects compared key by key, arrays whole). */
function changedKeys(before: unknown, after: unknown, prefix = ''): string[] {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (isObject(before) && isObject(after)) {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    return [...keys].flatMap((k) => changedKeys(before[k], after[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix];
}

/** True when `key` is a resumable key or lies inside one (e.g. 'train.keepLast'). */
function isResumable(key: string): boolean {
  return RESUMABLE_KEYS.some((k) => key === k || key.startsWith(`${k}.`));
}

/**
 * The config of a resumed run: the stored one with `changes` applied, where only RESUMABLE_KEYS
 * may change; any other changed key is refused by name.
 */
export function resumedConfig<T>(stored: T, changes: unknown, out: string): T {
  const merged = mergeConfig(stored, changes);
  for (const key of changedKeys(stored, merged)) {
    if (isResumable(key)) continue;
    // An object-valued setting is one key: `model.spectralInit`, not `model.spectralInit.qk`.
    const setting = key.split('.').slice(0, 2).join('.');
    // The settings stay in quotes: they are keys of the run's config.json (set by a flag, --set or
    // a config file alike), not flags.
    throw new UserError(`\`resume\`: cannot change '${setting}' of an existing run in ${out} (only ${RESUMABLE_KEYS.map((k) => `'${k}'`).join(', ')})`);
  }
  return merged;
}

/**
 * The checkpoint folder of `dir`: DIR itself if it holds model.json, else DIR/checkpoint_best,
 * else DIR/checkpoint_last (also found when a kill left it aside between its two renames).
 * `key` names the setting in errors (`initFrom` for a run started from a checkpoint).
 */
export function resolveCheckpointDir(dir: string, key = 'checkpoint'): string {
  const found = findCheckpointFolder(dir);
  if (found !== null) return found;
  if (!existsSync(dir)) throw new UserError(`\`${key}\`: '${dir}' does not exist`);
  throw new UserError(`\`${key}\`: ${dir} holds no ${MODEL_JSON} (nor checkpoint_best/ or checkpoint_last/ with one)`);
}

/** The tokenizer stored in a checkpoint folder (tokenizer.json before a SentencePiece *.model). */
export async function loadCheckpointTokenizer(dir: string): Promise<Tokenizer> {
  const candidates = existsSync(dir) ? readdirSync(dir).filter((f) => f === 'tokenizer.json' || f.endsWith('.model')) : [];
  if (candidates.length === 0) throw new UserError(`checkpoint ${dir}: holds no tokenizer file (*.model or tokenizer.json)`);
  return loadTokenizer(candidates.includes('tokenizer.json') ? join(dir, 'tokenizer.json') : join(dir, candidates[0]));
}

/** What both tasks' training returns. */
export interface RunSummary<C> {
  outDir: string;
  steps: number;
  /** The validation loss (mean NLL per predicted token) at the last validation; NaN without one. */
  finalValidLoss: number;
  /** The best validation score (the task's metric). */
  bestScore?: number;
  /** Training time in seconds, added up over the sessions of a resumed run (the trainer's clock). */
  wallSeconds: number;
  numParameters: number;
  /** Parameters of the same architecture with every factor at full rank (the dense model). */
  fullRankParameters: number;
  stopReason: string;
  /** The signal that interrupted the run (stopReason 'interrupted'; checkpoint_last was saved). */
  signal?: NodeJS.Signals;
  /** The run's config, as stored in its checkpoints. */
  config: C;
}

/** The summary of a finished `trainer.train()`. */
export function runSummary<C>(
  outDir: string,
  result: TrainResult,
  parameters: { numParameters: number; fullRankParameters: number },
  config: C,
): RunSummary<C> {
  return {
    outDir,
    steps: result.steps,
    finalValidLoss: result.lastValidation?.loss ?? NaN,
    bestScore: result.bestScore ?? undefined,
    wallSeconds: result.elapsedSeconds,
    ...parameters,
    stopReason: result.stopReason,
    ...(result.signal ? { signal: result.signal } : {}),
    config,
  };
}
