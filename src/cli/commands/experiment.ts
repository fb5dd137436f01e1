/**
 * CLI: `experiment --spec FILE.json [--out DIR]` runs a grid (sequential, resumable) and writes its
 * report; `experiment report DIR` (re)builds the report of an experiment folder.
 */
import { Option, type Command } from 'commander';
import { join } from 'node:path';
import { UserError } from '../../errors.ts';
import { isCompressExperiment, writeCompressReport } from '../../experiments/compress-report.ts';
import { checkCompressSpec, runCompressExperiment } from '../../experiments/compress-runner.ts';
import { parseCompressSpec, planCompressExperiment, readCompressSpecFile } from '../../experiments/compress-spec.ts';
import { writeReport } from '../../experiments/report.ts';
import { formatOutcome, runDir, runExperiment, runState, type RunFunction } from '../../experiments/runner.ts';
import { expandGrid, loadExperimentSpec } from '../../experiments/spec.ts';
import { checkSpecAgainstTask, makeTaskRunFunction } from '../../experiments/task-runs.ts';
import type { ProgressMode } from '../../train/progress.ts';
import { processIo, type CliIo } from '../io.ts';

/**
 * Default experiment folder of a spec: checkpoints/experiments/<name> (outside git, like every
 * training output). The measured results kept in the repository live in experiments/results/<name>,
 * written there with --out, so a fresh run never silently "finishes" by skipping committed runs.
 */
export function defaultExperimentDir(name: string): string {
  return join('checkpoints', 'experiments', name);
}

interface ExperimentFlags {
  spec?: string;
  out?: string;
  only?: string[];
  dryRun?: boolean;
  report: boolean;
  progress?: ProgressMode;
}

export interface ExperimentCommandDeps {
  /** The run function (tests inject one); default: the real tasks. */
  runFn?: (progress: ProgressMode | undefined) => RunFunction;
}

export function registerExperimentCommands(program: Command, io: CliIo = processIo(), deps: ExperimentCommandDeps = {}): void {
  const experiment = program
    .command('experiment')
    .description(
      'run a grid of trainings from a spec (rank scale × {baseline, si, fd, si-fd} × seeds), one after another, ' +
        'each in its own folder; finished runs are skipped (or extended, when budget.maxSteps grew) and interrupted ones resume; then write the report',
    )
    .option('--spec <file>', 'experiment spec (JSON), e.g. experiments/quick.json')
    .option('--out <dir>', 'experiment folder (default checkpoints/experiments/<spec name>)')
    .option('--only <names...>', 'run only these runs of the grid (e.g. rs0.5-si-fd-seed1)')
    .option('--dry-run', 'list the runs and their state (new, interrupted, finished, extendable to a larger budget), train nothing')
    .option('--no-report', 'do not write the report at the end')
    .addOption(new Option('--progress <mode>', 'progress display of each training').choices(['auto', 'bar', 'lines', 'none']))
    .action(async (flags: ExperimentFlags) => {
      if (!flags.spec) throw new UserError('experiment: --spec FILE.json is required (or use `experiment report DIR`)');
      const compressSpec = readCompressSpecFile(flags.spec);
      if (compressSpec !== null) return runCompressSpec(parseCompressSpec(compressSpec, flags.spec), flags.spec, flags, io);
      const spec = loadExperimentSpec(flags.spec);
      checkSpecAgainstTask(spec, flags.spec);
      const out = flags.out ?? defaultExperimentDir(spec.name);
      const runs = expandGrid(spec);
      io.stderr(`experiment ${spec.name}: ${runs.length} runs (${spec.task}) in ${out}\n`);
      if (flags.dryRun) {
        for (const r of runs) io.stdout(`${r.name}\t${runState(runDir(out, r.name), spec.budget.maxSteps).state}\n`);
        return;
      }
      const runFn = deps.runFn ? deps.runFn(flags.progress) : makeTaskRunFunction({ progress: flags.progress ?? 'lines' });
      const outcome = await runExperiment(spec, { out, runFn, only: flags.only, log: (line) => io.stderr(`${line}\n`) });
      io.stdout(`${formatOutcome(outcome)}\n`);
      if (flags.report) {
        const files = await writeReport(out);
        io.stdout(`report: ${files.markdown}\n        ${files.html}\n`);
      }
    });

  experiment
    .command('report')
    .description('write report.md (tables), figures/*.svg (validation curves) and report.html (both) for an experiment folder')
    .argument('<dir>', 'experiment folder (with runs/), or a folder of run folders holding metrics.jsonl')
    .action(async (dir: string) => {
      const files = isCompressExperiment(dir) ? await writeCompressReport(dir) : await writeReport(dir);
      io.stdout(`report: ${files.markdown}\n        ${files.html}\n        ${files.figures.length} figures in ${join(dir, 'figures')}\n`);
    });
}

/** `experiment --spec` for a compression spec (`"kind": "compress"`, experiments/compress-translation.json). */
async function runCompressSpec(spec: ReturnType<typeof parseCompressSpec>, file: string, flags: ExperimentFlags, io: CliIo): Promise<void> {
  if (flags.only) throw new UserError('experiment: --only is not available for a compression spec (its parts depend on each other)');
  checkCompressSpec(spec, file);
  const out = flags.out ?? defaultExperimentDir(spec.name);
  const parts = planCompressExperiment(spec);
  io.stderr(`experiment ${spec.name}: ${parts.length} parts (teachers, compressions, fine-tunings, from-scratch runs) in ${out}\n`);
  if (flags.dryRun) {
    for (const p of parts) io.stdout(`${p.kind === 'train' ? p.run.name : `compress ${p.part.name}`}\n`);
    return;
  }
  const outcome = await runCompressExperiment(spec, { out, progress: flags.progress ?? 'lines', log: (line) => io.stderr(`${line}\n`) });
  io.stdout(`${formatOutcome(outcome)}\n`);
  if (flags.report) {
    const files = await writeCompressReport(out);
    io.stdout(`report: ${files.markdown}\n        ${files.html}\n`);
  }
}
