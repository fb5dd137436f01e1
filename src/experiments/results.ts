/**
 * Reading an experiment folder back: every run's identity, validation curve (metrics.jsonl) and
 * summary (done.json), and the per-configuration aggregates (mean ± std over seeds) the report
 * shows. Pure data, no rendering.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../errors.ts';
import { DONE_JSON, METRICS_JSONL, RUN_JSON, RUNS_DIR, SPEC_JSON, readDoneRecord, type DoneRecord } from './runner.ts';
import { VARIANTS, configurationKey, parseRunName, type ExperimentSpec, type PlannedRun } from './spec.ts';

export interface CurvePoint {
  step: number;
  loss: number;
  /** Seconds since the start of training. */
  time?: number;
  perplexity?: number;
  bleu?: number;
}

export interface RunRecord {
  name: string;
  /** Runs of one configuration differ only by seed. */
  configuration: string;
  rankScale: number | null;
  variant: string | null;
  seed: number | null;
  /** null while the run has not finished (interrupted or running). */
  done: DoneRecord | null;
  valid: CurvePoint[];
  train: CurvePoint[];
}

export interface ExperimentResults {
  dir: string;
  name: string;
  task: 'translation' | 'mlm';
  spec: ExperimentSpec | null;
  runs: RunRecord[];
}

/** Parses one metrics.jsonl; a line that is not a JSON object is an error naming file and line. */
export function readMetrics(file: string): { valid: CurvePoint[]; train: CurvePoint[] } {
  const valid: CurvePoint[] = [];
  const train: CurvePoint[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (!line.trim()) return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      // A run killed mid-write leaves a partial last line: that one is not an error.
      if (i === lines.length - 1 || lines.slice(i + 1).every((l) => !l.trim())) return;
      throw new UserError(`${file}:${i + 1}: expected one JSON object per line`);
    }
    if (typeof rec !== 'object' || rec === null || typeof rec.step !== 'number' || typeof rec.loss !== 'number') {
      throw new UserError(`${file}:${i + 1}: expected an object with numeric "step" and "loss"`);
    }
    const point: CurvePoint = { step: rec.step, loss: rec.loss };
    for (const key of ['time', 'perplexity', 'bleu'] as const) if (typeof rec[key] === 'number') point[key] = rec[key] as number;
    if (rec.type === 'valid') valid.push(point);
    else if (rec.type === 'train') train.push(point);
  });
  return { valid, train };
}

function identify(dir: string, done: DoneRecord | null): Omit<PlannedRun, 'name'> | null {
  const runJson = join(dir, RUN_JSON);
  if (existsSync(runJson)) {
    try {
      const r = JSON.parse(readFileSync(runJson, 'utf8')) as PlannedRun;
      if (typeof r.rankScale === 'number' && typeof r.variant === 'string' && typeof r.seed === 'number') return r;
    } catch {
      // fall through to the other sources
    }
  }
  if (done?.run) return done.run;
  return parseRunName(basename(dir));
}

/** A folder is a run folder when it holds metrics.jsonl, done.json or run.json. */
function isRunFolder(dir: string): boolean {
  return [METRICS_JSONL, DONE_JSON, RUN_JSON].some((f) => existsSync(join(dir, f)));
}

/** Reads DIR (an experiment folder with runs/, or a folder of run folders). */
export function readExperiment(dir: string): ExperimentResults {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`experiment report: folder '${dir}' does not exist`);
  const runsRoot = existsSync(join(dir, RUNS_DIR)) ? join(dir, RUNS_DIR) : dir;
  const folders = readdirSync(runsRoot)
    .map((f) => join(runsRoot, f))
    .filter((f) => statSync(f).isDirectory() && isRunFolder(f));
  if (folders.length === 0) throw new UserError(`experiment report: '${dir}' holds no run folders (each with metrics.jsonl or done.json)`);
  let spec: ExperimentSpec | null = null;
  if (existsSync(join(dir, SPEC_JSON))) {
    try {
      spec = JSON.parse(readFileSync(join(dir, SPEC_JSON), 'utf8')) as ExperimentSpec;
    } catch (err) {
      throw new UserError(`${join(dir, SPEC_JSON)}: not valid JSON (${String((err as Error).message).split('\n')[0]})`);
    }
  }

  const runs: RunRecord[] = folders.map((folder) => {
    const name = basename(folder);
    const done = readDoneRecord(folder);
    const id = identify(folder, done);
    const metricsFile = join(folder, METRICS_JSONL);
    const { valid, train } = existsSync(metricsFile) ? readMetrics(metricsFile) : { valid: [], train: [] };
    return {
      name,
      configuration: id ? configurationKey(id) : name.replace(/-seed\d+$/, ''),
      rankScale: id?.rankScale ?? null,
      variant: id?.variant ?? null,
      seed: id?.seed ?? (/-seed(\d+)$/.exec(name) ? Number(/-seed(\d+)$/.exec(name)![1]) : null),
      done,
      valid,
      train,
    };
  });
  runs.sort(compareRuns);
  const task =
    spec?.task ??
    runs.find((r) => r.done)?.done?.task ??
    (runs.some((r) => r.valid.some((p) => p.bleu !== undefined)) ? 'translation' : 'mlm');
  return { dir, name: spec?.name ?? basename(dir), task, spec, runs };
}

const variantOrder = (v: string | null) => (v === null ? VARIANTS.length : (VARIANTS as readonly string[]).indexOf(v));

/** Rank scale, then variant in the paper's order (baseline, si, fd, si-fd), then seed, then name. */
export function compareRuns(a: RunRecord, b: RunRecord): number {
  return (
    (a.rankScale ?? Infinity) - (b.rankScale ?? Infinity) ||
    variantOrder(a.variant) - variantOrder(b.variant) ||
    (a.configuration < b.configuration ? -1 : a.configuration > b.configuration ? 1 : 0) ||
    (a.seed ?? 0) - (b.seed ?? 0) ||
    (a.name < b.name ? -1 : 1)
  );
}

/** Mean and sample standard deviation (n − 1); std is NaN for a single value. */
export interface MeanStd {
  mean: number;
  std: number;
  n: number;
}

export function meanStd(values: number[]): MeanStd {
  const xs = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  const n = xs.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : NaN;
  return { mean, std, n };
}

/**
 * Two-sided 95 % critical value of Student's t with `df` degrees of freedom. Exact table values
 * (to 3 decimals) up to 30; above, the Cornish–Fisher expansion around the normal quantile, which
 * is within 0.001 of the exact value there. Hand-written: one quantile does not justify a
 * statistics dependency.
 */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

export function tQuantile975(df: number): number {
  if (!Number.isInteger(df) || df < 1) return NaN;
  if (df <= T975.length) return T975[df - 1];
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2);
}

/** Mean of per-seed differences (run − baseline run of the same seed) with its 95 % t-interval. */
export interface PairedDifference extends MeanStd {
  /** The interval's ends; NaN when n < 2 (one pair gives no interval). */
  low: number;
  high: number;
}

/** Paired differences a_i − b_i over the pairs where both are finite numbers. */
export function pairedDifference(pairs: [number, number][]): PairedDifference {
  const diffs = pairs.filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b)).map(([a, b]) => a - b);
  const m = meanStd(diffs);
  const half = m.n > 1 ? (tQuantile975(m.n - 1) * m.std) / Math.sqrt(m.n) : NaN;
  return { ...m, low: m.mean - half, high: m.mean + half };
}

/**
 * `pick(run) − pick(reference)` paired by seed (the same seed draws the same initial shared weights
 * and the same batches), over the runs whose seed has a reference; null when none has.
 */
export function pairedBySeed(runs: RunRecord[], references: RunRecord[], pick: (r: RunRecord) => number): PairedDifference | null {
  const pairs = runs.flatMap((r) => references.filter((s) => s.seed === r.seed).map((s): [number, number] => [pick(r), pick(s)]));
  return pairs.length ? pairedDifference(pairs) : null;
}

/** 'better' / 'worse' when the interval excludes 0, else 'no difference detected'. */
export function verdict(d: PairedDifference, higherIsBetter: boolean): 'better' | 'worse' | 'no difference detected' | 'one seed: no interval' {
  if (d.n < 2) return 'one seed: no interval';
  if (d.low <= 0 && d.high >= 0) return 'no difference detected';
  return d.mean > 0 === higherIsBetter ? 'better' : 'worse';
}

export interface ConfigurationSummary {
  configuration: string;
  rankScale: number | null;
  variant: string | null;
  runs: number;
  finished: number;
  parameters: number;
  compressionRatio: number;
  finalValidLoss: MeanStd;
  /** The task's headline test score: BLEU (translation) or perplexity (mlm). */
  testScore: MeanStd;
  /** Mean wall time of a finished run (training + evaluation), seconds. */
  wallSeconds: MeanStd;
  steps: MeanStd;
  /**
   * Against the baseline at the same rank scale, paired by seed (same seed = same initial draws
   * of the shared weights and the same batches): final valid loss and test score. Null for the
   * baseline itself or when no seed has both runs finished.
   */
  lossVsBaseline: PairedDifference | null;
  scoreVsBaseline: PairedDifference | null;
}

/** The task's headline test score name and whether higher is better. */
export function testScoreOf(task: 'translation' | 'mlm'): { key: string; label: string; higherIsBetter: boolean } {
  return task === 'translation' ? { key: 'bleu', label: 'test BLEU', higherIsBetter: true } : { key: 'perplexity', label: 'test perplexity', higherIsBetter: false };
}

/** Valid loss of a run: its done.json's, or the last point of its curve. */
export function runValidLoss(run: RunRecord): number {
  const fromDone = run.done?.finalValidLoss;
  if (typeof fromDone === 'number' && Number.isFinite(fromDone)) return fromDone;
  return run.valid.length ? run.valid[run.valid.length - 1].loss : NaN;
}

/** One summary per configuration, over its finished runs. */
export function summarize(results: ExperimentResults): ConfigurationSummary[] {
  const { key } = testScoreOf(results.task);
  const groups = new Map<string, RunRecord[]>();
  for (const run of results.runs) groups.set(run.configuration, [...(groups.get(run.configuration) ?? []), run]);
  const score = (r: RunRecord) => r.done?.test?.[key] ?? NaN;
  return [...groups.entries()].map(([configuration, runs]) => {
    const finished = runs.filter((r) => r.done);
    const first = finished[0]?.done;
    const baseline =
      runs[0].variant === 'baseline' || runs[0].rankScale === null
        ? []
        : results.runs.filter((b) => b.done && b.variant === 'baseline' && b.rankScale === runs[0].rankScale);
    const paired = (pick: (r: RunRecord) => number) => pairedBySeed(finished, baseline, pick);
    return {
      configuration,
      rankScale: runs[0].rankScale,
      variant: runs[0].variant,
      runs: runs.length,
      finished: finished.length,
      parameters: first?.numParameters ?? NaN,
      compressionRatio: first ? first.numParameters / first.fullRankParameters : NaN,
      finalValidLoss: meanStd(finished.map(runValidLoss)),
      testScore: meanStd(finished.map(score)),
      wallSeconds: meanStd(finished.map((r) => r.done!.trainWallSeconds + r.done!.evalWallSeconds)),
      steps: meanStd(finished.map((r) => r.done!.steps)),
      lossVsBaseline: paired(runValidLoss),
      scoreVsBaseline: paired(score),
    };
  });
}

/** The step budgets a run's record was extended from (runner.ts `extendedFrom`), oldest first. */
export function earlierBudgets(done: DoneRecord): number[] {
  const steps: number[] = [];
  for (let e = done.extendedFrom; e; e = e.extendedFrom) steps.unshift(e.steps);
  return steps;
}

/**
 * The experiment as it stood at an earlier step budget its runs were extended from: each run that
 * was extended from `steps` takes that record, and its curves stop there; other runs are left out
 * (they were not measured at that budget). Null when no run was extended from `steps`.
 */
export function resultsAtEarlierBudget(results: ExperimentResults, steps: number): ExperimentResults | null {
  const runs: RunRecord[] = [];
  for (const run of results.runs) {
    let earlier = run.done?.extendedFrom;
    while (earlier && earlier.steps !== steps) earlier = earlier.extendedFrom;
    if (!run.done || !earlier) continue;
    const done: DoneRecord = { format: run.done.format, task: run.done.task, run: run.done.run, ...earlier };
    runs.push({ ...run, done, valid: run.valid.filter((p) => p.step <= steps), train: run.train.filter((p) => p.step <= steps) });
  }
  return runs.length ? { ...results, runs } : null;
}
