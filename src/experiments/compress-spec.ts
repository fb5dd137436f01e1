/**
 * The compression experiment's spec (`"kind": "compress"`, e.g. experiments/compress-translation.json)
 * and its plan. Per seed: a full-rank teacher trained for `teacher.maxSteps` updates; then for each
 * rank scale and arm (attention only; attention + FFN when `linear` lists true):
 * - `compress` the teacher (truncated SVD, tasks/compress.ts) into `compressed/<arm>-seed<s>/`;
 * - fine-tune it for `fineTune.maxSteps` updates with Frobenius decay (`ft-fd`) and with plain
 *   weight decay only (`ft-wd`);
 * - train the same low-rank model from scratch with spectral init + Frobenius decay (the paper's
 *   best arm) for teacher + fine-tune updates (`scratch-si-fd`): the same total budget.
 * The shared keys (name, data, preset, config, regularization, evaluate) mean what they mean in a
 * grid spec (spec.ts) and are validated by its schema.
 */
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { validateConfig } from '../models/schema.ts';
import { experimentSpecSchema } from './spec.ts';

const grid = experimentSpecSchema.shape;
const positiveInt = z.number().int().positive();

function distinct<T extends z.ZodType>(item: T, what: string) {
  return z
    .array(item)
    .min(1, `expected at least one ${what}`)
    .refine((xs) => new Set(xs.map((x) => JSON.stringify(x))).size === xs.length, `${what} values must be distinct`);
}

export const compressSpecSchema = z.strictObject({
  name: grid.name,
  description: grid.description,
  /** Marks a compression experiment (a grid spec has no `kind`). */
  kind: z.literal('compress'),
  task: z.literal('translation'),
  data: grid.data,
  preset: grid.preset,
  config: grid.config,
  /** The full-rank teacher's budget (updates). */
  teacher: z.strictObject({ maxSteps: positiveInt }),
  /** The fine-tuning budget of each compressed model (updates). */
  fineTune: z.strictObject({ maxSteps: positiveInt }),
  /** Attention rank scales to compress to, each < 1. */
  rankScale: distinct(z.number().positive().lt(1), 'rankScale'),
  /** Arms: false = attention only, true = attention + FFN (linearRankScale = rankScale). Default [false]. */
  linear: distinct(z.boolean(), 'linear').optional(),
  seeds: distinct(z.number().int().nonnegative(), 'seed'),
  regularization: grid.regularization,
  evaluate: grid.evaluate,
});
export type CompressSpec = z.infer<typeof compressSpecSchema>;

/** Training methods of the plan; their paired reference is `scratch-si-fd` of the same arm and seed. */
export const METHODS = ['teacher', 'ft-fd', 'ft-wd', 'scratch-si-fd'] as const;
export type Method = (typeof METHODS)[number];

/** One training run (the fields of a grid run, so the grid's results reader reads it). */
export interface CompressRun {
  name: string;
  rankScale: number;
  /** `<arm>-<method>` (e.g. attn-ffn-ft-fd), or `teacher`. */
  variant: string;
  seed: number;
  method: Method;
  /** Also factorized FFN (false for the teacher). */
  linear: boolean;
  maxSteps: number;
  /** ft-*: the compress part whose output it starts from. */
  compressed?: string;
}

/** One compression of a teacher. */
export interface CompressPart {
  name: string;
  rankScale: number;
  linear: boolean;
  seed: number;
  /** The teacher run's name. */
  teacher: string;
}

export type PlannedPart = { kind: 'train'; run: CompressRun } | { kind: 'compress'; part: CompressPart };

/** `attn` or `attn-ffn`. */
export function armName(linear: boolean): string {
  return linear ? 'attn-ffn' : 'attn';
}

/** The parts in the order they run: per seed the teacher, then per rank scale and arm: compress, ft-fd, ft-wd, scratch. */
export function planCompressExperiment(spec: CompressSpec): PlannedPart[] {
  const parts: PlannedPart[] = [];
  const D = spec.teacher.maxSteps;
  const F = spec.fineTune.maxSteps;
  for (const seed of spec.seeds) {
    const teacher = `rs1-teacher-seed${seed}`;
    parts.push({ kind: 'train', run: { name: teacher, rankScale: 1, variant: 'teacher', seed, method: 'teacher', linear: false, maxSteps: D } });
    for (const rankScale of spec.rankScale) {
      for (const linear of spec.linear ?? [false]) {
        const arm = armName(linear);
        const compressed = `rs${rankScale}-${arm}-seed${seed}`;
        parts.push({ kind: 'compress', part: { name: compressed, rankScale, linear, seed, teacher } });
        for (const method of ['ft-fd', 'ft-wd', 'scratch-si-fd'] as const) {
          const variant = `${arm}-${method}`;
          const scratch = method === 'scratch-si-fd';
          parts.push({
            kind: 'train',
            run: { name: `rs${rankScale}-${variant}-seed${seed}`, rankScale, variant, seed, method, linear, maxSteps: scratch ? D + F : F, ...(scratch ? {} : { compressed }) },
          });
        }
      }
    }
  }
  return parts;
}

/** The spec file's JSON if it is a compression spec (`"kind": "compress"`), else null (a grid spec, or unreadable: its loader says why). */
export function readCompressSpecFile(path: string): unknown {
  if (!existsSync(path)) return null;
  try {
    const value = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'compress' ? value : null;
  } catch {
    return null;
  }
}

/** Validates a parsed compression spec; one-line errors name `where` (its file) and the key. */
export function parseCompressSpec(value: unknown, where: string): CompressSpec {
  return validateConfig(compressSpecSchema, value, where);
}
