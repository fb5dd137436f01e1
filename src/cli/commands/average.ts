/** `average-checkpoints`: fairseq-style weight averaging of the last N checkpoints of a run. */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { UserError } from '../../errors.ts';
import { averageCheckpoints, listStepCheckpoints } from '../../train/checkpoint.ts';
import type { CliIo } from '../io.ts';
import { positiveInt } from '../options.ts';

interface AverageOptions {
  inputs?: string[];
  checkpointDir?: string;
  last?: number;
  out: string;
}

/** Which checkpoint folders to average, from either --inputs or --checkpoint-dir + --last. */
export function selectCheckpoints(opts: Omit<AverageOptions, 'out'>): string[] {
  if (opts.inputs && opts.checkpointDir) throw new UserError('average-checkpoints: give either --inputs or --checkpoint-dir, not both');
  if (opts.inputs) {
    if (opts.last !== undefined) throw new UserError('average-checkpoints: --last goes with --checkpoint-dir, not --inputs');
    return opts.inputs;
  }
  if (!opts.checkpointDir) throw new UserError('average-checkpoints: give --inputs DIR... or --checkpoint-dir DIR --last N');
  if (opts.last === undefined) throw new UserError('average-checkpoints: --checkpoint-dir needs --last N');
  if (!existsSync(opts.checkpointDir)) throw new UserError(`--checkpoint-dir: folder '${opts.checkpointDir}' does not exist`);
  const all = listStepCheckpoints(opts.checkpointDir);
  if (all.length < opts.last) {
    throw new UserError(`--checkpoint-dir: '${opts.checkpointDir}' holds ${all.length} checkpoint_<step> folders, fewer than --last ${opts.last}`);
  }
  return all.slice(-opts.last).map((c) => c.dir);
}

export function registerAverageCommand(program: Command, io: CliIo): void {
  program
    .command('average-checkpoints')
    .description('average the weights of several checkpoints of one run (e.g. the last 5) into a new checkpoint')
    .option('--inputs <dirs...>', 'checkpoint folders to average')
    .option('--checkpoint-dir <dir>', 'a training --out folder holding checkpoint_<step> folders')
    .option('--last <n>', 'with --checkpoint-dir: average the last N step checkpoints', positiveInt)
    .requiredOption('--out <dir>', 'where to write the averaged checkpoint')
    .action(async (opts: AverageOptions) => {
      const dirs = selectCheckpoints(opts);
      await averageCheckpoints(dirs, opts.out);
      io.stdout(`averaged ${dirs.length} checkpoints (${dirs.join(', ')}) into ${opts.out}\n`);
    });
}
