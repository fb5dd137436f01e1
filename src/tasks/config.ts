/**
 * Shared pieces of the task configuration: the training section every task has, strict
 * validation of config files with one-line errors, `--set key=value` overrides and layering
 * (preset ← config file ← CLI flags).
 *
 * The schemas are strict (zod `strictObject`): an unknown key or a wrong type is an error that
 * names the key and the file, never silently ignored — a typo such as `"lr_rate"` must not train
 * with the default learning rate.
 */
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import type { TrainerOptions } from '../train/index.ts';

const positiveInt = z.number().int().positive();
const nonNegative = z.number().nonnegative();

/** The training recipe (trainer options). All keys optional in files; presets fill them. */
export const trainSectionSchema = z.strictObject({
  optimizer: z.enum(['adam', 'adamw', 'nag']),
  lr: z.number().positive(),
  betas: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]),
  schedule: z.enum(['inverse_sqrt', 'linear', 'constant']),
  warmupUpdates: z.number().int().nonnegative(),
  warmupInitLr: nonNegative,
  clipNorm: nonNegative,
  updateFreq: positiveInt,
  frobeniusDecay: nonNegative,
  weightDecay: nonNegative,
  labelSmoothing: z.number().min(0).max(0.99),
  maxTokens: positiveInt,
  maxSteps: positiveInt.nullable(),
  maxEpochs: positiveInt.nullable(),
  maxTimeMinutes: z.number().positive().nullable(),
  validEvery: positiveInt,
  saveEvery: positiveInt,
  logEvery: positiveInt,
  /** Also keep checkpoint_<step> folders, the last N (for average-checkpoints); default 1 = checkpoint_last only. */
  keepLast: positiveInt.optional(),
  earlyStopPatience: positiveInt.nullable(),
  seed: z.number().int().nonnegative(),
  nanPolicy: z.enum(['stop', 'skip']),
});
export type TrainSection = z.infer<typeof trainSectionSchema>;

/**
 * The trainer options that come straight from a task's `train` section (the Trainer's own names;
 * null budgets become undefined). Tasks add their model, loss, data, validation and metric.
 */
export function trainerOptionsFromSection(t: TrainSection): Pick<
  TrainerOptions<unknown>,
  | 'optimizer' | 'lr' | 'betas' | 'schedule' | 'warmupUpdates' | 'warmupInitLr' | 'clipNorm' | 'updateFreq'
  | 'weightDecay' | 'frobeniusDecay' | 'maxSteps' | 'maxEpochs' | 'maxTimeMinutes' | 'validEvery' | 'saveEvery'
  | 'logEvery' | 'keepLast' | 'earlyStopPatience' | 'seed' | 'nanPolicy'
> {
  return {
    optimizer: t.optimizer,
    lr: t.lr,
    betas: t.betas,
    schedule: t.schedule,
    warmupUpdates: t.warmupUpdates,
    warmupInitLr: t.warmupInitLr,
    clipNorm: t.clipNorm,
    updateFreq: t.updateFreq,
    weightDecay: t.weightDecay,
    frobeniusDecay: t.frobeniusDecay,
    maxSteps: t.maxSteps ?? undefined,
    maxEpochs: t.maxEpochs ?? undefined,
    maxTimeMinutes: t.maxTimeMinutes ?? undefined,
    validEvery: t.validEvery,
    saveEvery: t.saveEvery,
    logEvery: t.logEvery,
    keepLast: t.keepLast,
    earlyStopPatience: t.earlyStopPatience ?? undefined,
    seed: t.seed,
    nanPolicy: t.nanPolicy,
  };
}

/** Where a value came from, for error messages ("set in cfg.json", "from --rank"). */
export type ConfigSource = string;

/** A deep-partial view of a config object: what a file or a set of flags may hold. */
export type DeepPartial<T> = { [K in keyof T]?: T[K] extends (infer U)[] ? T[K] : T[K] extends object | null ? DeepPartial<NonNullable<T[K]>> | Extract<T[K], null> : T[K] };

/** Makes every key of a strict object schema (and its nested strict objects) optional, keeping strictness. */
export function deepPartialSchema(schema: z.ZodObject): z.ZodObject {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, value] of Object.entries(schema.shape)) {
    const inner = value as z.ZodType;
    shape[key] = (inner instanceof z.ZodObject ? deepPartialSchema(inner) : inner).optional();
  }
  return z.strictObject(shape);
}

/** One line for a zod issue, naming the dotted key. */
export function formatIssue(issue: z.core.$ZodIssue, where: string): string {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const names = issue.keys.map((k) => (key ? `${key}.${k}` : k));
    return `${where}: unknown key ${names.map((n) => `'${n}'`).join(', ')}`;
  }
  const message = issue.message.replace(/^Invalid input: /, '');
  return `${where}: ${key ? `'${key}'` : 'value'}: ${message}`;
}

/** Validates `value` against a (deep-partial) schema; throws a one-line UserError naming the key and `where`. */
export function validateConfig<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new UserError(formatIssue(result.error.issues[0], where));
  return result.data;
}

/** Reads and validates a JSON config file; errors name the file. */
export function readConfigFile<T>(path: string, schema: z.ZodType<T>): T {
  if (!existsSync(path)) throw new UserError(`--config: file '${path}' does not exist`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${String((err as Error).message).split('\n')[0]})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UserError(`${path}: expected a JSON object at the top level`);
  }
  return validateConfig(schema, parsed, path);
}

/**
 * Parses `--set section.key=value` overrides into a nested object. Values are JSON when they
 * parse as JSON (numbers, booleans, null, arrays) and strings otherwise.
 */
export function parseSetOverrides(assignments: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new UserError(`--set: expected key=value (e.g. train.lr=0.001), got '${assignment}'`);
    const path = assignment.slice(0, eq).trim().split('.');
    const raw = assignment.slice(eq + 1).trim();
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a bare string such as `optimizer=adamw`
    }
    let node = out;
    for (const part of path.slice(0, -1)) {
      if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    node[path[path.length - 1]] = value;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Layers `overrides` on `base` (later wins); arrays and scalars are replaced, objects merged. */
export function mergeConfig<T>(base: T, ...overrides: unknown[]): T {
  let result: unknown = structuredClone(base);
  for (const layer of overrides) {
    if (layer === undefined) continue;
    result = mergeTwo(result, layer);
  }
  return result as T;
}

function mergeTwo(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : structuredClone(over);
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = mergeTwo(base[k], v);
  }
  return out;
}

/** Removes keys whose value is undefined (commander leaves unset flags undefined). */
export function pruneUndefined<T>(value: T): T {
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    const pruned = pruneUndefined(v);
    if (isPlainObject(pruned) && Object.keys(pruned).length === 0) continue;
    out[k] = pruned;
  }
  return out as T;
}

/**
 * Per-head rank of factorized attention: `rank` if given, else `max(1, floor(rankScale · d / H))`
 * (docs/ARCHITECTURE.md §1.1). Errors name the option: a rank must be a positive integer no larger than d.
 */
export function resolveAttentionRank(
  model: { modelDim: number; numHeads: number; rank?: number | null; rankScale: number },
  where: string,
): number {
  if (model.modelDim % model.numHeads !== 0) {
    throw new UserError(`${where}: 'model.modelDim' ${model.modelDim} must be divisible by 'model.numHeads' ${model.numHeads}`);
  }
  const rank = model.rank ?? Math.max(1, Math.floor((model.rankScale * model.modelDim) / model.numHeads));
  if (!Number.isInteger(rank) || rank < 1) {
    throw new UserError(`${where}: 'model.attentionRank' must be a positive integer, got ${rank}`);
  }
  if (rank > model.modelDim) {
    const what = model.rank != null ? `'model.attentionRank' ${rank}` : `'model.attentionRankScale' ${model.rankScale} gives rank ${rank}, which`;
    throw new UserError(`${where}: ${what} is larger than the model dimension ${model.modelDim}`);
  }
  return rank;
}
