/**
 * `quickstart` (`npm start`), the main job: train transformer_small-shaped factorized attention
 * (spectral init + Frobenius decay on) on the embedded English→Spanish corpus within a time
 * budget, evaluate it on the test split (BLEU + chrF + signature), show a few translations, and
 * leave the checkpoint for `translate`.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ensureDefaultTranslationCorpus } from '../../text/defaults.ts';
import { locateCheckpoint } from '../../train/checkpoint.ts';
import { formatDuration, formatValidLoss } from '../../train/progress.ts';
import { evaluateTranslation, formatEvaluation, trainTranslation } from '../../tasks/translation.ts';
import type { TranslationConfigOverrides } from '../../tasks/translation-config.ts';
import { InterruptedError, UserError } from '../../errors.ts';
import type { CliIo } from '../io.ts';
import { positiveInt, positiveNumber } from '../options.ts';
import { clearRunFolder, cleanupCreatedOnFailure, firstFileAncestor, notOurs } from '../output-folder.ts';

interface QuickstartFlags {
  out: string;
  maxTime: number;
  beam: number;
  samples: number;
  overwrite?: boolean;
  limit?: number;
}

/** The quickstart's model and recipe: transformer_small's shape at CPU scale (see src/tasks/translation-config.ts). */
export const QUICKSTART_PRESET = 'transformer_small_cpu';

/**
 * The preset as it is, except validation: only at the end of a minutes-long run (the trainer always
 * validates when the budget is spent), so no training time goes to it.
 */
export const QUICKSTART_OVERRIDES: TranslationConfigOverrides = {
  train: { validEvery: 100000 },
};

export function registerQuickstartCommand(program: Command, io: CliIo): void {
  program
    .command('quickstart')
    .description(
      'the main job: train factorized-attention transformer_small_cpu (SI + FD) on the embedded English→Spanish corpus, ' +
        'then evaluate on its test split (BLEU, chrF) and print sample translations',
    )
    .option('--out <dir>', 'checkpoint folder', join('checkpoints', 'quickstart-en-es'))
    .option('--max-time <minutes>', 'training time budget', positiveNumber, 8)
    // Greedy by default: beam 5 over the 1,110 test verses costs as much CPU time as the training
    // budget itself; `--beam 5` gives the paper's setting.
    .option('--beam <n>', 'beam size for the test evaluation (1 = greedy)', positiveInt, 1)
    .option('--samples <n>', 'sample translations to print', positiveInt, 5)
    .option('--limit <n>', 'evaluate only the first N test sentences', positiveInt)
    .option('--overwrite', 'empty --out first (only a run folder of this tool, and not while a training writes to it) and train afresh (default: continue the run already there)')
    .action((flags: QuickstartFlags) => cleanupCreatedOnFailure(flags.out, () => quickstart(flags, io)));
}

async function quickstart(flags: QuickstartFlags, io: CliIo): Promise<void> {
  const started = performance.now();
  // Checked before the corpus download and the training: what --out holds is never lost.
  if (flags.overwrite) clearRunFolder(flags.out);
  else {
    const parentFile = firstFileAncestor(flags.out);
    if (parentFile !== null) throw new UserError(`--out ${flags.out}: '${parentFile}' is a file, not a folder`);
    const why = existsSync(flags.out) ? notOurs(flags.out, 'run') : null;
    if (why !== null) throw new UserError(`--out ${flags.out}: not a quickstart run folder (${why}); choose another --out`);
  }
  const corpus = await ensureDefaultTranslationCorpus();
  const log = (line: string) => io.stderr(`${line}\n`);
  // An earlier run in --out is continued: a finished one (budget spent) returns at once, an
  // interrupted one trains for the rest of its budget.
  // (locateCheckpoint also finds, and puts back, a checkpoint_last a kill left aside mid-save.)
  const resume = locateCheckpoint(join(flags.out, 'checkpoint_last')) !== null;
  log(
    resume
      ? `continuing the run in ${flags.out} (pass --overwrite to start afresh)`
      : `training ${QUICKSTART_PRESET} (transformer_small's shape at d 128) with factorized attention (spectral init + Frobenius decay) on ${corpus.dir}, ${flags.maxTime} min budget`,
  );
  const summary = await trainTranslation({
    data: corpus.dir,
    out: flags.out,
    sourceLang: corpus.sourceLang,
    targetLang: corpus.targetLang,
    preset: QUICKSTART_PRESET,
    tokenizer: resume ? undefined : corpus.tokenizerPath,
    overrides: { ...QUICKSTART_OVERRIDES, train: { ...QUICKSTART_OVERRIDES.train, maxTimeMinutes: flags.maxTime } },
    resume,
    log,
  });
  io.stdout(
    `trained ${summary.steps} updates in ${formatDuration(summary.wallSeconds)} ` +
      `(${(summary.numParameters / 1e6).toFixed(2)}M parameters); ${formatValidLoss(summary.finalValidLoss)}\n`,
  );
  // Stopped by Ctrl-C or kill after saving checkpoint_last: no evaluation; exit 130/143, not success.
  if (summary.signal) throw new InterruptedError(summary.signal);
  const evaluation = await evaluateTranslation({
    checkpoint: flags.out,
    data: corpus.dir,
    split: 'test',
    beam: flags.beam,
    limit: flags.limit,
    log,
  });
  io.stdout(`\ntest set (${evaluation.numSentences} sentences, beam ${evaluation.beam}):\n${formatEvaluation(evaluation)}\n\nsample translations:\n`);
  for (let i = 0; i < Math.min(flags.samples, evaluation.hypotheses.length); i++) {
    io.stdout(`  EN  ${evaluation.sources[i]}\n  REF ${evaluation.references[i]}\n  OUT ${evaluation.hypotheses[i]}\n\n`);
  }
  io.stdout(
    `total time ${formatDuration((performance.now() - started) / 1000)}. Translate your own sentences:\n` +
      `  echo "In the beginning God created the heavens and the earth." | npm run cli -- translate --checkpoint ${flags.out}\n`,
  );
}
