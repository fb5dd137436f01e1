/**
 * Masked-LM commands: `train mlm` and `evaluate mlm`.
 * The commands only parse options and print; tasks/mlm.ts does the work.
 */
import { Option, type Command } from 'commander';
import { MLM_PRESETS, type MlmConfigOverrides } from '../../tasks/mlm-config.ts';
import type { MlmSplit } from '../../tasks/mlm-data.ts';
import { evaluateMlm, formatMlmEvaluation, trainMlm } from '../../tasks/mlm.ts';
import { InterruptedError } from '../../errors.ts';
import { commandGroup } from '../groups.ts';
import { addBudgetFlags, addOutputFlags, addRecipeFlags, commonOverridesFromFlags, type CommonTrainFlags, type TrainFlagTexts } from '../train-flags.ts';
import type { CliIo } from '../io.ts';
import { integer, nonNegativeInt, positiveInt } from '../options.ts';
import { checkOutFolderPath, cleanupCreatedOnFailure } from '../output-folder.ts';

/** Options of `train mlm` as commander parses them (undefined = not given). */
interface TrainMlmFlags extends CommonTrainFlags {
  data?: string;
  tokenizer?: string;
  out: string;
  preset?: string;
  config?: string;
  rank?: number;
  keepLast?: number;
  maxLength?: number;
  wholeWordMasking?: boolean;
}

/** The config keys that dedicated flags set. */
export function mlmOverridesFromFlags(f: TrainMlmFlags): MlmConfigOverrides {
  const common = commonOverridesFromFlags(f);
  return {
    ...common,
    model: { ...common.model, attentionRank: f.rank },
    train: { ...common.train, keepLast: f.keepLast },
    data: { maxLength: f.maxLength, wholeWordMasking: f.wholeWordMasking },
  };
}

const TRAIN_TEXTS: TrainFlagTexts = {
  validates: 'masked-token perplexity, accuracy',
  seeds: 'init, shuffling, masking, dropout',
  maxTokens: 'batch size in (padded) input tokens',
  setExample: '--set model.normFirst=true',
};

function registerTrain(program: Command, io: CliIo): void {
  const command = commandGroup(program, 'train')
    .command('mlm')
    .description(
      'pretrain a BERT-style encoder with factorized attention by masked-LM on a monolingual corpus ' +
        '({train,valid}.txt in --data, one sentence per line; default: the embedded Moby-Dick corpus)',
    )
    .option('--data <dir>', 'corpus folder with train.txt and valid.txt (default: the embedded Moby-Dick corpus)')
    .option('--tokenizer <path>', "SentencePiece .model, or a WordPiece tokenizer.json (file or folder); default: the --data folder's, else the shipped English SentencePiece model")
    .requiredOption('--out <dir>', 'output folder: checkpoints (checkpoint_last, checkpoint_best), metrics.jsonl')
    .option('--preset <name>', `model + recipe preset: ${Object.keys(MLM_PRESETS).join(', ')} (default bert_small)`)
    .option('--config <file>', 'JSON config: any subset of {model, train, data} keys');
  addBudgetFlags(command, TRAIN_TEXTS).option('--keep-last <n>', 'also keep the last N checkpoint_<step> folders (for average-checkpoints)', positiveInt);
  addRecipeFlags(command, TRAIN_TEXTS)
    .option('--rank <r>', 'explicit per-head attention rank (overrides --rank-scale)', integer)
    .option('--max-length <n>', 'tokens per packed sequence (consecutive sentences)', positiveInt)
    .option('--whole-word-masking', 'mask whole words (SentencePiece ▁ / WordPiece ## boundaries)');
  addOutputFlags(command, TRAIN_TEXTS)
    .action(async (flags: TrainMlmFlags) => {
      checkOutFolderPath(flags.out);
      const summary = await cleanupCreatedOnFailure(flags.out, () => trainMlm({
        data: flags.data,
        tokenizer: flags.tokenizer,
        out: flags.out,
        preset: flags.preset,
        configFile: flags.config,
        resume: flags.resume ?? false,
        overrides: mlmOverridesFromFlags(flags),
        set: flags.set,
        progress: flags.progress,
        log: (line) => io.stderr(`${line}\n`),
      }));
      const v = summary.validation;
      const scores = v
        ? `valid masked-token perplexity ${v.perplexity.toFixed(2)} (unigram baseline ${v.unigramPerplexity.toFixed(2)}), accuracy ${(100 * v.accuracy).toFixed(1)} %`
        : 'no validation';
      io.stdout(`trained ${summary.steps} steps in ${summary.wallSeconds.toFixed(0)} s; ${scores}; checkpoints in ${summary.outDir}\n`);
      // Stopped by Ctrl-C or kill after saving checkpoint_last: exit 130/143, not success.
      if (summary.signal) throw new InterruptedError(summary.signal);
    });
}

interface EvaluateMlmFlags {
  checkpoint: string;
  data?: string;
  split: MlmSplit;
  seed?: number;
  json?: boolean;
}

function registerEvaluate(program: Command, io: CliIo): void {
  commandGroup(program, 'evaluate')
    .command('mlm')
    .description(
      'masked-token perplexity and accuracy of a masked-LM checkpoint on a split (fixed masking seed, so runs compare), ' +
        'beside the unigram perplexity of the same masked tokens (train-split frequencies, no context)',
    )
    .requiredOption('--checkpoint <dir>', 'checkpoint folder, or a run folder (its checkpoint_best, else checkpoint_last)')
    .option('--data <dir>', 'corpus folder with <split>.txt and train.txt (default: the embedded Moby-Dick corpus)')
    .addOption(new Option('--split <name>', 'which split').choices(['train', 'valid', 'test']).default('test'))
    .option('--seed <n>', "masking seed (default: the checkpoint's data.evalMaskingSeed, as used in validation)", nonNegativeInt)
    .option('--json', 'print the scores as one JSON object')
    .action(async (flags: EvaluateMlmFlags) => {
      const result = await evaluateMlm({
        checkpoint: flags.checkpoint,
        data: flags.data,
        split: flags.split,
        seed: flags.seed,
        log: (line) => io.stderr(`${line}\n`),
      });
      io.stdout(flags.json ? `${JSON.stringify(result)}\n` : `${formatMlmEvaluation(result)}\n`);
    });
}

/** Adds `train mlm` and `evaluate mlm` under the shared `train` / `evaluate` groups. */
export function registerMlmCommands(program: Command, io: CliIo): void {
  registerTrain(program, io);
  registerEvaluate(program, io);
}
