/**
 * The building blocks of every config schema (model architectures here, the training section in
 * src/train/config.ts, task sections in src/tasks): field types whose error messages say what was
 * expected, and strict validation with one-line errors that name the key and where it was set.
 *
 * Schemas are strict (zod `strictObject`): an unknown key or a wrong type is an error that names
 * the key, never silently ignored — a typo such as `"lr_rate"` must not train with the default.
 */
import { z } from 'zod';
import { UserError } from '../errors.ts';

/**
 * A message for a field's range: rendered as `'key' must be …` (see formatIssue). A wrong type
 * keeps zod's own message ("expected number, received string").
 */
const must = (expected: string) => ({ error: `must be ${expected}` });

export const positiveInt = z.number().int().positive();
export const nonNegativeInt = z.number().int().nonnegative();
/** Dropout rates: a fraction of units dropped, never all of them. */
export const rate = z.number().min(0, must('a number in [0, 1)')).lt(1, must('a number in [0, 1)'));
const positiveFinite = (expected: string) => z.number().positive(must(expected)).finite(must(expected));
/** A rank scale (rank = max(1, floor(scale · dim))): finite and > 0. */
export const rankScale = positiveFinite('a number > 0');
/** A rank scale of an optionally factorized layer: null = the dense layer. */
export const optionalRankScale = positiveFinite('a number > 0 or null (dense)').nullable();

/** One of a fixed set of strings, with an error that lists them. */
export function oneOf<const T extends readonly [string, ...string[]]>(choices: T) {
  return z.enum(choices, must(`one of ${choices.join(', ')}`));
}

/**
 * SI of a dense or embedding factor pair (factorized/spectral.ts `FactorSpectralInit`): true = the
 * paper's (truncated SVD of the dense layer's default-initialized matrix), 'rebalance' = balance
 * two random factors (what true meant before the paper's SI was implemented), false = off.
 */
const factorSpectralInit = z.union([z.boolean(), z.literal('rebalance')], must("true, false or 'rebalance'"));

/** Which factor pairs get spectral initialization (only matters for factorized layers). */
export const spectralInitChoiceSchema = z.strictObject({
  /** Attention query-key pairs (Wq, Wk): re-balanced, as the paper's code does for attention. */
  qk: z.boolean(),
  /** Attention output-value pairs (Wv, Woᵀ): likewise. */
  ov: z.boolean(),
  /** Factorized FFN and output-projection layers. */
  linear: factorSpectralInit,
  /** Factorized token embeddings. */
  embedding: factorSpectralInit,
});
export type SpectralInitChoice = z.infer<typeof spectralInitChoiceSchema>;

export const DEFAULT_SPECTRAL_INIT: SpectralInitChoice = { qk: true, ov: true, linear: true, embedding: true };

/**
 * What a config may say: `true`/`false` for every pair type, or a partial per-type record.
 * `true` means the paper's SI for every type (for linear/embedding the truncated SVD of a
 * default-initialized full matrix); `{ linear: 'rebalance', embedding: 'rebalance' }` asks for the
 * older re-balancing of random factors.
 */
export const spectralInitSchema = z.union(
  [z.boolean(), spectralInitChoiceSchema.partial()],
  must("true, false or { qk, ov, linear, embedding } (linear and embedding may also be 'rebalance')"),
);
export type SpectralInitSetting = z.infer<typeof spectralInitSchema>;

/** The full per-type choice a setting means (missing types keep the default: on). */
export function spectralInitChoice(setting: SpectralInitSetting): SpectralInitChoice {
  if (typeof setting === 'boolean') return { qk: setting, ov: setting, linear: setting, embedding: setting };
  return { ...DEFAULT_SPECTRAL_INIT, ...setting };
}

/**
 * One line for a zod issue, naming the dotted key: `where: 'key' must be …` for this package's
 * messages, `where: 'key': <zod's message>` for zod's own.
 */
export function formatIssue(issue: z.core.$ZodIssue, where: string): string {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const names = issue.keys.map((k) => (key ? `${key}.${k}` : k));
    return `${where}: unknown key ${names.map((n) => `'${n}'`).join(', ')}`;
  }
  const message = issue.message.replace(/^Invalid input: /, '');
  if (message.startsWith('must ')) return `${where}: ${key ? `'${key}'` : 'value'} ${message}`;
  return `${where}: ${key ? `'${key}'` : 'value'}: ${message}`;
}

/** Validates `value` against a schema; throws a one-line UserError naming the key and `where`. */
export function validateConfig<S extends z.ZodType>(schema: S, value: unknown, where: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new UserError(formatIssue(result.error.issues[0], where));
  return result.data;
}

/** A deep-partial view of a config object: what a file or a set of flags may hold. */
export type DeepPartial<T> = { [K in keyof T]?: T[K] extends unknown[] ? T[K] : T[K] extends object | null ? DeepPartial<NonNullable<T[K]>> | Extract<T[K], null> : T[K] };

/** Makes every key of a strict object schema (and its nested strict objects) optional, keeping strictness. */
export function deepPartialSchema(schema: z.ZodObject): z.ZodObject {
  const shape: Record<string, z.ZodType> = {};
  for (const [key, value] of Object.entries(schema.shape)) {
    const inner = value as z.ZodType;
    shape[key] = (inner instanceof z.ZodObject ? deepPartialSchema(inner) : inner).optional();
  }
  return z.strictObject(shape);
}
