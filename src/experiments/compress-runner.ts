/**
 * The compression experiment's runner (plan: compress-spec.ts). Training runs live in
 * `<out>/runs/<name>/` and are run, skipped and resumed exactly as the grid's (runner.ts
 * executeRun); each compression writes `<out>/compressed/<name>/` (a compress output) and then,
 * atomically, `<out>/compressed/<name>.json` (its summary): with that file it is skipped, without
 * it the folder is a leftover of a kill and is made again.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { ensureDefaultTranslationCorpus } from '../text/defaults.ts';
import type { ProgressMode } from '../train/progress.ts';
import { acquireOutputLock } from '../train/lock.ts';
import { compressTranslation, type CompressSummary } from '../tasks/compress.ts';
import { mergeConfig } from '../tasks/config.ts';
import { resolveTranslationConfig, type TranslationConfigOverrides } from '../tasks/translation-config.ts';
import { trainTranslation } from '../tasks/translation.ts';
import { finishTranslationRun } from './task-runs.ts';
import { planCompressExperiment, type CompressPart, type CompressRun, type CompressSpec } from './compress-spec.ts';
import { executeRun, RUNS_DIR, runDir, SPEC_JSON, writeJsonAtomic, type ExperimentOutcome, type RunContext, type RunResult } from './runner.ts';

export const COMPRESSED_DIR = 'compressed';

/** A compression's record (`compressed/<name>.json`): the summary without the model config. */
export interface CompressRecord extends Omit<CompressSummary, 'config'> {
  format: 'factorized-transformer/experiment-compress@1';
  part: CompressPart;
}

export function compressedDir(out: string, name: string): string {
  return join(out, COMPRESSED_DIR, name);
}

export function readCompressRecord(out: string, name: string): CompressRecord | null {
  const file = `${compressedDir(out, name)}.json`;
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as CompressRecord;
  } catch (err) {
    throw new UserError(`${file}: not valid JSON (${String((err as Error).message).split('\n')[0]}); delete it to compress again`);
  }
}

/** The corpus every part reads: the spec's, else the embedded default. */
async function corpusOf(spec: CompressSpec): Promise<{ dir: string; sourceLang?: string; targetLang?: string; tokenizerPath?: string }> {
  return spec.data
    ? { dir: spec.data.dir, sourceLang: spec.data.sourceLang, targetLang: spec.data.targetLang, tokenizerPath: spec.data.tokenizer }
    : await ensureDefaultTranslationCorpus();
}

/**
 * The task config overrides of a run: the spec's common config, then the run's knobs. Teacher:
 * full rank, default init, weight decay. Scratch: the arm's ranks, spectral init + Frobenius decay.
 * Fine-tuning: the compressed model's architecture (from its checkpoint), Frobenius decay (ft-fd)
 * or not (ft-wd); plain weight decay everywhere.
 */
export function compressRunOverrides(spec: CompressSpec, run: CompressRun): Record<string, unknown> {
  const fd = run.method === 'ft-fd' || run.method === 'scratch-si-fd';
  const train = {
    seed: run.seed,
    maxSteps: run.maxSteps,
    weightDecay: spec.regularization.weightDecay,
    frobeniusDecay: fd ? spec.regularization.frobeniusDecay : 0,
  };
  const model =
    run.method === 'teacher'
      ? { attentionRankScale: 1, attentionRank: null, spectralInit: false }
      : run.method === 'scratch-si-fd'
        ? { attentionRankScale: run.rankScale, attentionRank: null, spectralInit: true, ...(run.linear ? { linearRankScale: run.rankScale } : {}) }
        : {};
  return mergeConfig(spec.config ?? {}, { model, train });
}

/** Checks, before anything runs, that the teacher and every scratch run resolve; errors name the spec file. */
export function checkCompressSpec(spec: CompressSpec, where: string): void {
  for (const part of planCompressExperiment(spec)) {
    if (part.kind !== 'train' || part.run.method === 'ft-fd' || part.run.method === 'ft-wd') continue;
    resolveTranslationConfig({
      preset: spec.preset,
      flags: compressRunOverrides(spec, part.run) as TranslationConfigOverrides,
      flagsSource: `${where} (${part.run.name})`,
      sourceLang: spec.data?.sourceLang ?? 'en',
      targetLang: spec.data?.targetLang ?? 'es',
    });
  }
}

export interface CompressExperimentOptions {
  out: string;
  log?: (line: string) => void;
  progress?: ProgressMode;
  /** Trains and evaluates one run (tests wrap the real one); default: compressTrainRun. */
  train?: (spec: CompressSpec, run: CompressRun, ctx: RunContext & { out: string }) => Promise<RunResult>;
}

/** Trains (or resumes) one run with the real task and evaluates its best checkpoint on the test split. */
export async function compressTrainRun(spec: CompressSpec, run: CompressRun, ctx: RunContext & { out: string }, progress: ProgressMode = 'none'): Promise<RunResult> {
  const corpus = await corpusOf(spec);
  const fineTune = run.compressed !== undefined;
  const summary = await trainTranslation({
    data: corpus.dir,
    out: ctx.dir,
    sourceLang: corpus.sourceLang,
    targetLang: corpus.targetLang,
    preset: spec.preset,
    // A fine-tuning uses its model's tokenizer; a resumed run its checkpoint's.
    tokenizer: ctx.resume || fineTune ? undefined : corpus.tokenizerPath,
    initFrom: fineTune ? compressedDir(ctx.out, run.compressed!) : undefined,
    overrides: compressRunOverrides(spec, run) as TranslationConfigOverrides,
    resume: ctx.resume,
    progress,
    log: ctx.log,
  });
  return finishTranslationRun(summary, spec.evaluate, ctx, corpus.dir);
}

/** One compression (skipped when its record exists); the teacher's best checkpoint is the source. */
async function compressPart(spec: CompressSpec, out: string, part: CompressPart, tag: string, log: (line: string) => void): Promise<'ran' | 'skipped'> {
  if (readCompressRecord(out, part.name)) {
    log(`${tag}: compressed earlier, skipped`);
    return 'skipped';
  }
  const dir = compressedDir(out, part.name);
  // A compression killed before its record: the folder is ours (inside the experiment) and cheap to redo.
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(out, COMPRESSED_DIR), { recursive: true });
  log(`${tag}: compressing ${part.teacher} to rank scale ${part.rankScale}${part.linear ? ' (attention + FFN)' : ' (attention)'}`);
  const { config: _config, ...summary } = await compressTranslation({
    checkpoint: runDir(out, part.teacher),
    rankScale: part.rankScale,
    linear: part.linear,
    out: dir,
    data: (await corpusOf(spec)).dir,
    log: (line) => log(`${tag}: ${line}`),
  });
  const record: CompressRecord = { format: 'factorized-transformer/experiment-compress@1', part, ...summary };
  writeJsonAtomic(`${dir}.json`, record);
  log(`${tag}: valid loss ${summary.validLoss!.before.toFixed(3)} → ${summary.validLoss!.after.toFixed(3)}; parameters ${summary.parameters.before} → ${summary.parameters.after}`);
  return 'ran';
}

/**
 * Keeps the folder tied to one recipe: as the grid runner, a stored spec whose task, data, preset,
 * config, regularization or budgets differ is refused; more seeds, rank scales or arms are fine.
 */
function checkOrStoreSpec(out: string, spec: CompressSpec): void {
  const file = join(out, SPEC_JSON);
  if (existsSync(file)) {
    let stored: CompressSpec;
    try {
      stored = JSON.parse(readFileSync(file, 'utf8')) as CompressSpec;
    } catch {
      throw new UserError(`${file}: not valid JSON; delete it or choose another \`out\``);
    }
    const recipe = (s: CompressSpec) => JSON.stringify([s.kind, s.task, s.data ?? null, s.preset ?? null, s.config ?? null, s.regularization, s.teacher, s.fineTune]);
    if (recipe(stored) !== recipe(spec)) {
      throw new UserError(`\`out\` ${out}: holds experiment '${stored.name}' with a different kind, data, preset, config, regularization or budget; choose another \`out\``);
    }
  }
  writeJsonAtomic(file, spec);
}

/** Runs the plan in order, skipping finished parts and resuming an interrupted training. */
export async function runCompressExperiment(spec: CompressSpec, opts: CompressExperimentOptions): Promise<ExperimentOutcome> {
  const log = opts.log ?? (() => undefined);
  const train = opts.train ?? ((s, r, ctx) => compressTrainRun(s, r, ctx, opts.progress));
  mkdirSync(join(opts.out, RUNS_DIR), { recursive: true });
  const lock = acquireOutputLock(opts.out);
  try {
    checkOrStoreSpec(opts.out, spec);
    const parts = planCompressExperiment(spec);
    const outcome: ExperimentOutcome = { ran: [], resumed: [], extended: [], skipped: [] };
    for (const [i, p] of parts.entries()) {
      const name = p.kind === 'train' ? p.run.name : `compress ${p.part.name}`;
      const tag = `[${i + 1}/${parts.length}] ${name}`;
      const state =
        p.kind === 'train'
          ? await executeRun(opts.out, p.run, tag, spec.task, (run, ctx) => train(spec, run, { ...ctx, out: opts.out }), log)
          : await compressPart(spec, opts.out, p.part, tag, log);
      outcome[state].push(name);
    }
    return outcome;
  } finally {
    lock.release();
  }
}
