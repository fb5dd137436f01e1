/**
 * Experiment specs: a JSON file that names a task, a grid (rank scale × variant × seed), the
 * regularization coefficients and a per-run budget. `loadExperimentSpec` validates it strictly
 * (an unknown key or a wrong type is a one-line error naming the file and key) and
 * `expandGrid` turns it into the list of runs, in a stable order with stable, readable names.
 *
 * The variants are the paper's four arms (Khodak et al., ICLR 2021, Table/Fig. on Transformers):
 * - `baseline`: default (random) initialization, plain weight decay on every weight, factors included
 *   (the trainer exempts factors from weight decay only when Frobenius decay is on);
 * - `si`:       spectral initialization, plain weight decay;
 * - `fd`:       default initialization, Frobenius decay on the factor products instead of weight decay;
 * - `si-fd`:    both;
 * - `si-rebalance`: spectral initialization with the feed-forward and embedding factors
 *   re-balanced from two random factors (this package's SI before it took the paper's truncated
 *   SVD of a dense init; attention is the same in both), plain weight decay. It differs from `si`
 *   only where those layers are factorized (`grid.factorize: "all"` below rank scale 1), and
 *   measures what the paper's dense-layer SI adds.
 */
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import type { SpectralInitSetting } from '../models/schema.ts';

export const VARIANTS = ['baseline', 'si', 'fd', 'si-fd', 'si-rebalance'] as const;
export type Variant = (typeof VARIANTS)[number];

/** What each variant switches on. */
export const VARIANT_SETTINGS: Record<Variant, { spectralInit: SpectralInitSetting; frobeniusDecay: boolean }> = {
  baseline: { spectralInit: false, frobeniusDecay: false },
  si: { spectralInit: true, frobeniusDecay: false },
  fd: { spectralInit: false, frobeniusDecay: true },
  'si-fd': { spectralInit: true, frobeniusDecay: true },
  'si-rebalance': { spectralInit: { linear: 'rebalance', embedding: 'rebalance' }, frobeniusDecay: false },
};

const positiveInt = z.number().int().positive();

/** What `grid.factorize` may say. */
export const FACTORIZE_CHOICES = ['attention', 'all'] as const;

function uniqueList<T extends z.ZodType>(item: T, what: string) {
  return z
    .array(item)
    .min(1, `expected at least one ${what}`)
    .refine((xs) => new Set(xs.map((x) => JSON.stringify(x))).size === xs.length, `${what} values must be distinct`);
}

export const experimentSpecSchema = z.strictObject({
  /** Names the default output folder checkpoints/experiments/<name>. */
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'expected letters, digits, . _ - (it names a folder)'),
  description: z.string().optional(),
  task: z.enum(['translation', 'mlm']),
  /** Corpus; omitted = the embedded default corpus of the task (and its tokenizer). */
  data: z
    .strictObject({
      dir: z.string().min(1),
      sourceLang: z.string().min(1).optional(),
      targetLang: z.string().min(1).optional(),
      tokenizer: z.string().min(1).optional(),
    })
    .optional(),
  /** The task preset every run starts from (default transformer_small / bert_small). */
  preset: z.string().optional(),
  /**
   * Task config keys common to every run (any subset of {model, train, data, decode}); the grid's
   * knobs (rank scale, spectral init, decay coefficients, seed, budget) are set per run on top.
   */
  config: z.record(z.string(), z.unknown()).optional(),
  grid: z.strictObject({
    /** Attention rank scale: per-head rank = max(1, floor(rankScale · d / H)). */
    rankScale: uniqueList(z.number().positive().max(1), 'rankScale'),
    variants: uniqueList(z.enum(VARIANTS), 'variant'),
    seeds: uniqueList(z.number().int().nonnegative(), 'seed'),
    /**
     * Which layers the rank scale factorizes (default 'attention'): 'attention' = the attention
     * pairs only; 'all' = what the paper's code does (patch_transformer in Transformer-PyTorch/
     * singleprocess_train.py): at a rank scale below 1 also the FFN, the token embeddings and an
     * untied output projection, each at that scale, while at rank scale 1 they stay dense.
     */
    factorize: z.enum(FACTORIZE_CHOICES).optional(),
    /** Also factorize the FFN (and an untied output projection) at the same rank scale, 1 included (default false); predates `factorize`. */
    factorizeLinear: z.boolean().optional(),
  }).refine((g) => !(g.factorize !== undefined && g.factorizeLinear !== undefined), "give either 'factorize' or 'factorizeLinear', not both"),
  regularization: z.strictObject({
    /** Plain weight decay: on every weight in baseline/si; on the non-factor weights in fd/si-fd. */
    weightDecay: z.number().nonnegative(),
    /** Frobenius decay coefficient on the factor products in fd/si-fd. */
    frobeniusDecay: z.number().nonnegative(),
  }),
  /** Per-run budget: at least one of maxSteps, maxTimeMinutes (steps make runs comparable). */
  budget: z
    .strictObject({ maxSteps: positiveInt.optional(), maxTimeMinutes: z.number().positive().optional() })
    .refine((b) => b.maxSteps !== undefined || b.maxTimeMinutes !== undefined, 'set maxSteps or maxTimeMinutes'),
  /** Test-set evaluation after training (false = none): BLEU for translation, perplexity for MLM. */
  evaluate: z
    .union([
      z.literal(false),
      z.strictObject({
        split: z.string().min(1).optional(),
        /** Translation: beam size (default: the config's decode.beam). */
        beam: positiveInt.optional(),
        /** Translation: only the first N sentences of the split. */
        limit: positiveInt.optional(),
      }),
    ])
    .optional(),
});
export type ExperimentSpec = z.infer<typeof experimentSpecSchema>;

/** One training run of the grid. */
export interface PlannedRun {
  /** Stable, readable folder name, e.g. `rs0.5-si-fd-seed1`. */
  name: string;
  rankScale: number;
  variant: Variant;
  seed: number;
}

/** `rs0.5-si-fd-seed1`: the number as JavaScript prints it (0.25, 1), so names never collide. */
export function runName(run: Omit<PlannedRun, 'name'>): string {
  return `rs${run.rankScale}-${run.variant}-seed${run.seed}`;
}

/** Reads a run name back (for folders without run.json); null when it is not one. */
export function parseRunName(name: string): Omit<PlannedRun, 'name'> | null {
  const m = /^rs([0-9.eE+-]+)-(baseline|si|fd|si-fd|si-rebalance)-seed(\d+)$/.exec(name);
  if (!m) return null;
  const rankScale = Number(m[1]);
  if (!Number.isFinite(rankScale)) return null;
  return { rankScale, variant: m[2] as Variant, seed: Number(m[3]) };
}

/** The grid in run order: seed, then rank scale, then variant (each in the order the spec lists them). */
export function expandGrid(spec: ExperimentSpec): PlannedRun[] {
  const runs: PlannedRun[] = [];
  // Seeds outermost: an experiment stopped half-way has every configuration at the first seed.
  for (const seed of spec.grid.seeds) {
    for (const rankScale of spec.grid.rankScale) {
      for (const variant of spec.grid.variants) {
        runs.push({ name: runName({ rankScale, variant, seed }), rankScale, variant, seed });
      }
    }
  }
  return runs;
}

/** The configuration a run belongs to (its seeds are averaged in the report). */
export function configurationKey(run: { rankScale: number; variant: Variant }): string {
  return `rs${run.rankScale}-${run.variant}`;
}

/** One line for a zod issue, naming the dotted key. */
function formatIssue(issue: z.core.$ZodIssue, where: string): string {
  const key = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    return `${where}: unknown key ${issue.keys.map((k) => `'${key ? `${key}.${k}` : k}'`).join(', ')}`;
  }
  return `${where}: ${key ? `'${key}'` : 'value'}: ${issue.message.replace(/^Invalid input: /, '')}`;
}

/** Validates a parsed spec; `where` names its file in errors. */
export function parseExperimentSpec(value: unknown, where: string): ExperimentSpec {
  const result = experimentSpecSchema.safeParse(value);
  if (!result.success) throw new UserError(formatIssue(result.error.issues[0], where));
  return result.data;
}

/** Reads and validates a spec file. */
export function loadExperimentSpec(path: string): ExperimentSpec {
  if (!existsSync(path)) throw new UserError(`\`spec\`: file '${path}' does not exist`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new UserError(`${path}: not valid JSON (${String((err as Error).message).split('\n')[0]})`);
  }
  return parseExperimentSpec(parsed, path);
}
