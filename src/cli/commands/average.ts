/** `average-checkpoints`: fairseq-style weight averaging of the last N checkpoints of a run. */
import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../errors.ts';
import { averageCheckpoints, listStepCheckpoints, locateCheckpoint } from '../../train/checkpoint.ts';
import type { CliIo } from '../io.ts';
import { positiveInt } from '../options.ts';
import { checkOutputFolder, cleanupCreatedOnFailure, isInside } from '../output-folder.ts';

interface AverageOptions {
  inputs?: string[];
  checkpointDir?: string;
  last?: number;
  out: string;
  overwrite?: boolean;
}

/** Which checkpoint folders to average, from either --inputs or --checkpoint-dir + --last. */
export function selectCheckpoints(opts: Omit<AverageOptions, 'out'>): string[] {
  if (opts.inputs && opts.checkpointDir) throw new UserError('average-checkpoints: give either --inputs or --checkpoint-dir, not both');
  if (opts.inputs) {
    if (opts.last !== undefined) throw new UserError('average-checkpoints: --last goes with --checkpoint-dir, not --inputs');
    // (locateCheckpoint: a checkpoint a kill left aside between the two renames of its save.)
    return opts.inputs.map((d) => locateCheckpoint(d) ?? d);
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

/** What must agree between checkpoints for their average to mean anything, beyond weight shapes. */
function identity(dir: string): { task: string; languages: string; tokenizer: string } {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`average-checkpoints: checkpoint ${dir}: no such folder`);
  let config: { task?: unknown; sourceLang?: unknown; targetLang?: unknown } = {};
  const configPath = join(dir, 'config.json');
  if (existsSync(configPath)) {
    try {
      config = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (err) {
      throw new UserError(`${configPath}: not valid JSON (${(err as Error).message.split('\n')[0]})`);
    }
  }
  // The tokenizer files by content: same ids mean the same pieces only under the same tokenizer.
  const hash = createHash('sha256');
  for (const f of readdirSync(dir).sort()) {
    if (f === 'tokenizer.json' || f === 'tokenizer_config.json' || f.endsWith('.model')) hash.update(f).update('\0').update(readFileSync(join(dir, f)));
  }
  return {
    task: String(config.task ?? 'unknown'),
    languages: config.sourceLang !== undefined ? `${String(config.sourceLang)}→${String(config.targetLang)}` : '',
    tokenizer: hash.digest('hex'),
  };
}

/** Refuses checkpoints of different tasks, language pairs or tokenizers (their shapes may still match). */
export function checkSameModel(dirs: string[]): void {
  const ref = identity(dirs[dirs.length - 1]);
  const refDir = dirs[dirs.length - 1];
  for (const dir of dirs.slice(0, -1)) {
    const id = identity(dir);
    if (id.task !== ref.task) throw new UserError(`average-checkpoints: ${dir} is a ${id.task} checkpoint, ${refDir} a ${ref.task} one`);
    if (id.languages !== ref.languages) {
      throw new UserError(`average-checkpoints: ${dir} translates ${id.languages || '(no languages)'}, ${refDir} ${ref.languages || '(no languages)'}; only checkpoints of one model can be averaged`);
    }
    if (id.tokenizer !== ref.tokenizer) throw new UserError(`average-checkpoints: ${dir} and ${refDir} have different tokenizers; only checkpoints of one model can be averaged`);
  }
}

export function registerAverageCommand(program: Command, io: CliIo): void {
  program
    .command('average-checkpoints')
    .description('average the weights of several checkpoints of one run (e.g. the last 5) into a new checkpoint')
    .option('--inputs <dirs...>', 'checkpoint folders to average')
    .option('--checkpoint-dir <dir>', 'a training --out folder holding checkpoint_<step> folders')
    .option('--last <n>', 'with --checkpoint-dir: average the last N step checkpoints', positiveInt)
    .requiredOption('--out <dir>', 'where to write the averaged checkpoint (a new folder)')
    .option('--overwrite', 'replace --out if it holds an averaged checkpoint written earlier (never anything else)')
    .action(async (opts: AverageOptions) => {
      const dirs = selectCheckpoints(opts);
      const protect = dirs.map((d) => ({ path: d, what: 'the checkpoint being averaged' }));
      if (opts.checkpointDir) protect.push({ path: opts.checkpointDir, what: 'the run folder being averaged' });
      for (const d of dirs) {
        if (isInside(opts.out, d)) throw new UserError(`--out ${opts.out}: lies inside the checkpoint ${d} being averaged; choose a folder outside it`);
      }
      checkOutputFolder(opts.out, { kind: 'checkpoint', overwrite: opts.overwrite ?? false, protect });
      checkSameModel(dirs);
      await cleanupCreatedOnFailure(opts.out, () => averageCheckpoints(dirs, opts.out));
      io.stdout(`averaged ${dirs.length} checkpoints (${dirs.join(', ')}) into ${opts.out}\n`);
    });
}
