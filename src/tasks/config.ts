/**
 * Layering of a task's configuration: preset ← config file ← command-line values, where each
 * layer may hold any subset of the keys. The schemas themselves live with what they configure
 * (src/models for architectures, src/train/config.ts for the training section, the task's own
 * config module for its data and decode sections); validation is src/models/schema.ts's.
 */
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { validateConfig, type DeepPartial } from '../models/schema.ts';

/**
 * A JSON object from a file, with one-line errors that name the file: missing, not JSON, or not
 * an object. `what` says what the file is for the "does not exist" message.
 */
export function readJsonObject(path: string, what: string): Record<string, unknown> {
  if (!existsSync(path)) throw new UserError(`${what}: file '${path}' does not exist`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${String((err as Error).message).split('\n')[0]})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UserError(`${path}: expected a JSON object at the top level`);
  }
  return parsed as Record<string, unknown>;
}

/** Reads and validates a JSON config file (`configFile`); errors name the file. */
export function readConfigFile<T>(path: string, schema: z.ZodType<T>): T {
  return validateConfig(schema, readJsonObject(path, '`configFile`'), path);
}

/**
 * Parses `set` overrides (`section.key=value`) into a nested object. Values are JSON when they
 * parse as JSON (numbers, booleans, null, arrays) and strings otherwise.
 */
export function parseSetOverrides(assignments: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const assignment of assignments) {
    const eq = assignment.indexOf('=');
    if (eq <= 0) throw new UserError(`\`set\`: expected key=value (e.g. train.lr=0.001), got '${assignment}'`);
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

/** The command-line layer: dedicated values and `set` assignments, validated against the file schema. */
export function commandLineLayer<T>(fileSchema: z.ZodType<T>, flags: unknown, set: string[] | undefined, source = 'command line'): T {
  return validateConfig(fileSchema, pruneUndefined(mergeConfig({}, flags ?? {}, parseSetOverrides(set ?? []))), source);
}

/** Presets as partial overrides of one default: each preset is `defaults` with its changes merged in. */
export function presetsFrom<T>(defaults: T, changes: Record<string, DeepPartial<T>>): Record<string, T> {
  return Object.fromEntries(Object.entries(changes).map(([name, change]) => [name, mergeConfig(defaults, change)]));
}

/** How a task's config is given: a preset, a config file and command-line values (all optional). */
export interface ConfigLayersOptions<O> {
  preset?: string;
  /** JSON config file (any subset of the keys). */
  configFile?: string;
  /** Values from dedicated command-line flags (undefined = not given). */
  flags?: O;
  /** `set` assignments (`key=value`). */
  set?: string[];
  /** What the flags and `set` values are called in errors (default 'command line'). */
  flagsSource?: string;
}

/** The layers above the preset, read and validated, and the chosen preset. */
export interface ConfigLayers<O, P> {
  fromFile: O;
  fromFlags: O;
  presetName: string;
  preset: P;
  /** Where a per-key schema error of the merged config is reported. */
  where: string;
  /** Where a cross-key problem is reported: the last layer that set one of the keys. */
  blame: (keys: string[]) => string;
}

/**
 * Reads the config file and the command-line values against the task's file schema and picks
 * the preset (explicit option, else the command line's, else the file's, else `defaultPreset`).
 */
export function readConfigLayers<O extends { preset?: string }, P>(
  fileSchema: z.ZodType<O>,
  opts: ConfigLayersOptions<O>,
  presets: Record<string, P>,
  defaultPreset: string,
): ConfigLayers<O, P> {
  const fromFile = opts.configFile ? readConfigFile(opts.configFile, fileSchema) : ({} as O);
  const flagsSource = opts.flagsSource ?? 'command line';
  const fromFlags = commandLineLayer(fileSchema, opts.flags, opts.set, flagsSource);
  const presetName = opts.preset ?? fromFlags.preset ?? fromFile.preset ?? defaultPreset;
  const preset = presets[presetName];
  if (!preset) throw new UserError(`\`preset\`: unknown preset '${presetName}'; expected one of ${Object.keys(presets).join(', ')}`);
  return {
    fromFile,
    fromFlags,
    presetName,
    preset,
    where: opts.configFile ?? flagsSource,
    blame: configBlame(presetName, opts.configFile, fromFile, fromFlags, flagsSource),
  };
}

/** Where a cross-key problem comes from: the last layer that set any of its keys. */
export type Blame = string | ((keys: string[]) => string);

/**
 * The layer to blame for a problem among `keys` ('model.modelDim', ...): the command line if it set
 * one of them, else the config file if it did, else the preset (so `--set model.modelDim=33` is
 * reported as the command line's, not the preset's).
 */
export function configBlame(
  presetName: string,
  configFile: string | undefined,
  fromFile: unknown,
  fromFlags: unknown,
  flagsSource = 'command line',
): (keys: string[]) => string {
  const sets = (layer: unknown, key: string): boolean => {
    let node = layer;
    for (const part of key.split('.')) {
      if (typeof node !== 'object' || node === null || !(part in node)) return false;
      node = (node as Record<string, unknown>)[part];
    }
    return node !== undefined;
  };
  return (keys) => {
    if (keys.some((k) => sets(fromFlags, k))) return flagsSource;
    if (configFile !== undefined && keys.some((k) => sets(fromFile, k))) return configFile;
    return `preset ${presetName}`;
  };
}

/** `blame` for the given keys. */
export function blameFor(where: Blame, ...keys: string[]): string {
  return typeof where === 'string' ? where : where(keys);
}

export type { DeepPartial };
