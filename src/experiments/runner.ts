/**
 * The sequential, resumable experiment runner. Each run lives in `<out>/runs/<name>/`:
 * - `run.json`  — what the run is (name, rank scale, variant, seed), written when it starts;
 * - the task's own files (checkpoint_last/, checkpoint_best/, metrics.jsonl);
 * - `done.json` — written (atomically) once training and evaluation are over, with the summary.
 *
 * A run with done.json is never re-run. A run with a checkpoint_last but no done.json was
 * interrupted: it resumes from that checkpoint (the task's resume option). A run folder with
 * neither is leftover from a run killed before its first checkpoint: it is cleared and started over,
 * so its metrics.jsonl never mixes two attempts.
 *
 * A larger `budget.maxSteps` extends finished runs, as fairseq continues a run from its last
 * checkpoint with a larger --max-update: a run that stopped at its old step budget and still has
 * its checkpoint_last resumes from it to the new budget, and its new done.json keeps the old
 * summary under `extendedFrom`. (The task refuses this for the linear schedule, whose decay
 * depends on the budget: task-runs.ts.) Without its checkpoint (e.g. in a fresh clone, where
 * checkpoints are not committed) the run is kept as it is, and the log says so.
 */
import { LAST_CHECKPOINT } from '../train/run-folder.ts';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, platform, arch } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { acquireOutputLock } from '../train/lock.ts';
import { expandGrid, type ExperimentSpec, type PlannedRun } from './spec.ts';

export const RUNS_DIR = 'runs';
export const RUN_JSON = 'run.json';
export const DONE_JSON = 'done.json';
export const SPEC_JSON = 'experiment.json';
export const METRICS_JSONL = 'metrics.jsonl';

/** What a finished run reports; done.json holds it (plus the run's identity). */
export interface RunResult {
  steps: number;
  /** Mean NLL per token on valid at the last validation. */
  finalValidLoss: number;
  numParameters: number;
  /** Parameters of the same model with full-rank (dense-equivalent) factors. */
  fullRankParameters: number;
  trainWallSeconds: number;
  evalWallSeconds: number;
  /** Test-set scores: translation {bleu, chrf, perplexity, loss}; mlm {perplexity, accuracy, loss}. */
  test: Record<string, number> | null;
  /** Extra text facts (e.g. the BLEU signature, the stop reason). */
  notes?: Record<string, string>;
}

export interface DoneRecord extends RunResult {
  format: 'factorized-transformer/experiment-run@1';
  task: ExperimentSpec['task'];
  run: PlannedRun;
  compressionRatio: number;
  finishedAt: string;
  /** The machine the run finished on (reports state it; absent in records written before 2026-11-30). */
  machine?: RunMachine;
  /** The record this run had before a larger budget extended it (the oldest extension innermost). */
  extendedFrom?: Omit<DoneRecord, 'format' | 'task' | 'run'>;
}

/** What a report needs to say where a run was measured. */
export interface RunMachine {
  /** e.g. 'linux-x64'. */
  platform: string;
  cpuModel: string;
  cpus: number;
  node: string;
}

/** This process's machine, as recorded in done.json. */
export function currentMachine(): RunMachine {
  const cores = cpus();
  return { platform: `${platform()}-${arch()}`, cpuModel: cores[0]?.model.trim() ?? 'unknown', cpus: cores.length, node: process.version };
}

export interface RunContext {
  /** The run's folder (exists). */
  dir: string;
  /** True when the folder holds an interrupted run to continue from its checkpoint. */
  resume: boolean;
  /** Set when a finished run continues to a larger step budget: its earlier record. */
  extending?: DoneRecord;
  log: (line: string) => void;
}

/** Trains and evaluates one run; the real one is in task-runs.ts, tests inject their own. */
export type RunFunction = (spec: ExperimentSpec, run: PlannedRun, ctx: RunContext) => Promise<RunResult>;

export interface RunExperimentOptions {
  /** Experiment folder (created). */
  out: string;
  runFn: RunFunction;
  log?: (line: string) => void;
  /** Only the runs whose names are listed (default all). */
  only?: string[];
}

export interface ExperimentOutcome {
  ran: string[];
  resumed: string[];
  /** Finished runs continued to a larger `budget.maxSteps`. */
  extended: string[];
  skipped: string[];
}

/** The CLI's one-line account of an outcome. */
export function formatOutcome(outcome: ExperimentOutcome): string {
  return `ran ${outcome.ran.length}, resumed ${outcome.resumed.length}, extended ${outcome.extended.length}, skipped ${outcome.skipped.length} (finished earlier)`;
}

/** The checkpoint folder whose presence means "interrupted, resumable". */
export const RESUME_MARKER = LAST_CHECKPOINT;

export function runDir(out: string, name: string): string {
  return join(out, RUNS_DIR, name);
}

/** Writes JSON through a temporary file and a rename, so a crash never leaves half a file. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  renameSync(tmp, path);
}

export function readDoneRecord(dir: string): DoneRecord | null {
  const file = join(dir, DONE_JSON);
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as DoneRecord;
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${String((err as Error).message).split('\n')[0]}); delete it to re-run the run`);
  }
}

/**
 * Keeps the experiment folder tied to one spec: the first run stores it in experiment.json; a
 * later run with a spec whose task, data or recipe differ refuses (its numbers would not compare),
 * while a grown grid (more seeds, rank scales or variants) or a larger budget is accepted.
 */
function checkOrStoreSpec(out: string, spec: ExperimentSpec): void {
  const file = join(out, SPEC_JSON);
  if (existsSync(file)) {
    let stored: ExperimentSpec;
    try {
      stored = JSON.parse(readFileSync(file, 'utf8')) as ExperimentSpec;
    } catch {
      throw new UserError(`${file}: not valid JSON; delete it or choose another \`out\``);
    }
    const recipe = (s: ExperimentSpec) => JSON.stringify([s.task, s.data ?? null, s.preset ?? null, s.config ?? null, s.regularization, s.grid.factorizeLinear ?? false, s.grid.factorize ?? 'attention']);
    if (recipe(stored) !== recipe(spec)) {
      throw new UserError(
        `\`out\` ${out}: holds experiment '${stored.name}' with a different task, data, preset, config or regularization; choose another \`out\``,
      );
    }
  }
  writeJsonAtomic(file, spec);
}

/** Runs the grid in order, one run at a time, skipping finished runs and resuming interrupted ones. */
export async function runExperiment(spec: ExperimentSpec, opts: RunExperimentOptions): Promise<ExperimentOutcome> {
  const log = opts.log ?? (() => undefined);
  mkdirSync(join(opts.out, RUNS_DIR), { recursive: true });
  // One runner per experiment folder: a second one would clear the run the first is training.
  const lock = acquireOutputLock(opts.out);
  try {
    return await runGrid(spec, opts, log);
  } finally {
    lock.release();
  }
}

async function runGrid(spec: ExperimentSpec, opts: RunExperimentOptions, log: (line: string) => void): Promise<ExperimentOutcome> {
  checkOrStoreSpec(opts.out, spec);
  let runs = expandGrid(spec);
  if (opts.only) {
    const known = new Set(runs.map((r) => r.name));
    for (const name of opts.only) if (!known.has(name)) throw new UserError(`\`only\`: '${name}' is not a run of this spec (e.g. ${runs[0].name})`);
    runs = runs.filter((r) => opts.only!.includes(r.name));
  }
  const outcome: ExperimentOutcome = { ran: [], resumed: [], extended: [], skipped: [] };
  for (const [i, run] of runs.entries()) {
    const state = await executeRun(opts.out, run, `[${i + 1}/${runs.length}] ${run.name}`, spec.task, (r, ctx) => opts.runFn(spec, r, ctx), log, spec.budget.maxSteps);
    outcome[state].push(run.name);
  }
  return outcome;
}

/** What running a grid point does next: executeRun acts on it, `experiment --dry-run` prints it. */
export type RunState = 'new' | 'interrupted' | 'finished' | 'extendable' | 'finished, not extendable';

/** True when a finished run stopped at a step budget smaller than `budgetSteps` (a larger budget extends it). */
export function isShortOfBudget(done: DoneRecord, budgetSteps: number | undefined): boolean {
  return budgetSteps !== undefined && done.steps < budgetSteps && done.notes?.stopReason === 'maxSteps';
}

/** The state of the run folder `dir` under a step budget (see the top of this file), with its done.json record. */
export function runState(dir: string, budgetSteps?: number): { state: RunState; earlier: DoneRecord | null } {
  const earlier = readDoneRecord(dir);
  const hasCheckpoint = existsSync(join(dir, RESUME_MARKER));
  if (!earlier) return { state: hasCheckpoint ? 'interrupted' : 'new', earlier };
  if (!isShortOfBudget(earlier, budgetSteps)) return { state: 'finished', earlier };
  return { state: hasCheckpoint ? 'extendable' : 'finished, not extendable', earlier };
}

/**
 * One run of an experiment in `<out>/runs/<run.name>/`: skipped when it has done.json (unless
 * `budgetSteps` extends it, see the top of this file), resumed when it has a checkpoint_last, else
 * (re)started in an emptied folder; done.json is written when `train` returns. The grid's loop,
 * and the compression experiment's (compress-runner.ts).
 */
export async function executeRun<R extends { name: string }>(
  out: string,
  run: R,
  tag: string,
  task: ExperimentSpec['task'],
  train: (run: R, ctx: RunContext) => Promise<RunResult>,
  log: (line: string) => void,
  budgetSteps?: number,
): Promise<'ran' | 'resumed' | 'extended' | 'skipped'> {
  const dir = runDir(out, run.name);
  const { state, earlier } = runState(dir, budgetSteps);
  if (state === 'finished') {
    log(`${tag}: finished earlier, skipped`);
    return 'skipped';
  }
  if (state === 'finished, not extendable') {
    log(`${tag}: finished at ${earlier!.steps} of ${budgetSteps} updates, but its ${RESUME_MARKER} is gone, so it cannot be extended: kept as it is (delete its done.json to train it again)`);
    return 'skipped';
  }
  const resume = state !== 'new';
  if (!resume && existsSync(dir)) {
    // Killed before its first checkpoint: nothing to resume, and stale metrics would mix in.
    for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true });
  writeJsonAtomic(join(dir, RUN_JSON), run);
  log(`${tag}: ${earlier ? `extending from ${earlier.steps} to ${budgetSteps} updates` : resume ? 'resuming from its checkpoint' : 'starting'}`);
  const result = await train(run, { dir, resume, extending: earlier ?? undefined, log: (line) => log(`${tag}: ${line}`) });
  const done: DoneRecord = {
    format: 'factorized-transformer/experiment-run@1',
    task,
    run: run as unknown as PlannedRun,
    ...result,
    compressionRatio: result.fullRankParameters > 0 ? result.numParameters / result.fullRankParameters : NaN,
    finishedAt: new Date().toISOString(),
    machine: currentMachine(),
  };
  if (earlier) {
    // Nothing measured is lost: the shorter run's summary stays in the record.
    const { format: _format, task: _task, run: _run, ...summary } = earlier;
    done.extendedFrom = summary;
  }
  writeJsonAtomic(join(dir, DONE_JSON), done);
  log(
    `${tag}: done in ${(result.trainWallSeconds + result.evalWallSeconds).toFixed(0)} s; ` +
      `valid loss ${result.finalValidLoss.toFixed(3)}${formatTest(result.test)}`,
  );
  return earlier ? 'extended' : resume ? 'resumed' : 'ran';
}

function formatTest(test: Record<string, number> | null): string {
  if (!test) return '';
  const parts = Object.entries(test).map(([k, v]) => `${k} ${Number.isInteger(v) ? v : Number.isFinite(v) ? v.toFixed(2) : String(v)}`);
  return `; test ${parts.join(', ')}`;
}
