/**
 * Masked-LM commands: `train mlm` and `evaluate mlm`.
 * The commands only parse options and print; tasks/mlm.ts does the work.
 */
import { Option, type Command } from 'commander';
import type { MlmConfigOverrides, MlmSplit } from '../../../tasks/mlm.ts';
import { evaluateMlm, formatMlmEvaluation, trainMlm } from '../../../tasks/mlm.ts';
import { commandGroup } from '../groups.ts';
import type { CliIo } from '../io.ts';
import { collect, nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber } from '../options.ts';

/** Options of `train mlm` as commander parses them (undefined = not given). */
interface TrainMlmFlags {
  data?: string;
  tokenizer?: string;
  out: string;
  preset?: string;
  config?: string;
  resume?: boolean;
  set?: string[];
  maxSteps?: number;
  maxEpochs?: number;
  maxTime?: number;
  saveEvery?: number;
  validEvery?: number;
  logEvery?: number;
  seed?: number;
  lr?: number;
  warmup?: number;
  maxTokens?: number;
  updateFreq?: number;
  clipNorm?: number;
  frobeniusDecay?: number;
  weightDecay?: number;
  optimizer?: 'adam' | 'adamw' | 'nag';
  dropout?: number;
  rankScale?: number;
  spectralInit?: boolean;
  maxLength?: number;
  wholeWordMasking?: boolean;
  progress?: 'auto' | 'bar' | 'lines' | 'none';
}

/** The config keys that dedicated flags set. */
export function mlmOverridesFromFlags(f: TrainMlmFlags): MlmConfigOverrides {
  return {
    model: { dropout: f.dropout, attentionRankScale: f.rankScale, spectralInit: f.spectralInit },
    train: {
      maxSteps: f.maxSteps,
      maxEpochs: f.maxEpochs,
      maxTimeMinutes: f.maxTime,
      saveEvery: f.saveEvery,
      validEvery: f.validEvery,
      logEvery: f.logEvery,
      seed: f.seed,
      lr: f.lr,
      warmupUpdates: f.warmup,
      maxTokens: f.maxTokens,
      updateFreq: f.updateFreq,
      clipNorm: f.clipNorm,
      frobeniusDecay: f.frobeniusDecay,
      weightDecay: f.weightDecay,
      optimizer: f.optimizer,
    },
    data: { maxLength: f.maxLength, wholeWordMasking: f.wholeWordMasking },
  };
}

function registerTrain(program: Command, io: CliIo): void {
  commandGroup(program, 'train')
    .command('mlm')
    .description(
      'pretrain a BERT-style encoder with factorized attention by masked-LM on a monolingual corpus ' +
        '({train,valid}.txt in --data, one sentence per line; default: the embedded Moby-Dick corpus)',
    )
    .option('--data <dir>', 'corpus folder with train.txt and valid.txt (default: the embedded Moby-Dick corpus)')
    .option('--tokenizer <path>', "SentencePiece .model, or a WordPiece tokenizer.json (file or folder); default: the --data folder's, else the shipped English SentencePiece model")
    .requiredOption('--out <dir>', 'output folder: checkpoints (checkpoint_last, checkpoint_best), metrics.jsonl')
    .option('--preset <name>', 'model + recipe preset: bert_tiny, bert_small, bert_base (default bert_small)')
    .option('--config <file>', 'JSON config: any subset of {model, train, data} keys')
    .option('--resume', 'continue the run in --out from its last checkpoint (its config.json wins; stopping rules may be extended)')
    .option('--max-steps <n>', 'stop after N optimizer updates', positiveInt)
    .option('--max-epochs <n>', 'stop after N passes over the training data', positiveInt)
    .option('--max-time <minutes>', 'stop after this many minutes of training', positiveNumber)
    .option('--save-every <n>', 'save a checkpoint every N updates', positiveInt)
    .option('--valid-every <n>', 'validate (masked-token perplexity, accuracy) every N updates', positiveInt)
    .option('--log-every <n>', 'log training loss every N updates', positiveInt)
    .option('--seed <n>', 'random seed (init, shuffling, masking, dropout)', nonNegativeInt)
    .option('--lr <x>', 'peak learning rate', positiveNumber)
    .option('--warmup <n>', 'warm-up updates of the schedule', nonNegativeInt)
    .option('--max-tokens <n>', 'batch size in (padded) input tokens', positiveInt)
    .option('--update-freq <n>', 'accumulate gradients over N batches per update', positiveInt)
    .option('--clip-norm <x>', 'clip the global gradient norm (0 = off)', nonNegativeNumber)
    .option('--frobenius-decay <x>', 'Frobenius decay coefficient on factor products (0 = off)', nonNegativeNumber)
    .option('--weight-decay <x>', 'decoupled weight decay on non-factor weights', nonNegativeNumber)
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['adam', 'adamw', 'nag']))
    .option('--dropout <x>', 'residual/embedding dropout', nonNegativeNumber)
    .option('--rank-scale <x>', 'attention rank scale: per-head rank = floor(x * d / H)', positiveNumber)
    .option('--spectral-init', 'spectral initialization of the factors (preset default: on)')
    .option('--no-spectral-init', 'plain random initialization of the factors')
    .option('--max-length <n>', 'tokens per packed sequence (consecutive sentences)', positiveInt)
    .option('--whole-word-masking', 'mask whole words (SentencePiece ▁ / WordPiece ## boundaries)')
    .option('--set <key=value>', 'set any config key, e.g. --set model.normFirst=true (repeatable)', collect)
    .addOption(new Option('--progress <mode>', 'progress display (default: a bar on a terminal, lines otherwise)').choices(['auto', 'bar', 'lines', 'none']))
    .action(async (flags: TrainMlmFlags) => {
      const summary = await trainMlm({
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
      });
      const v = summary.validation;
      const scores = v
        ? `valid masked-token perplexity ${v.perplexity.toFixed(2)} (unigram baseline ${v.unigramPerplexity.toFixed(2)}), accuracy ${(100 * v.accuracy).toFixed(1)} %`
        : 'no validation';
      io.stdout(`trained ${summary.steps} steps in ${summary.wallSeconds.toFixed(0)} s; ${scores}; checkpoints in ${summary.outDir}\n`);
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
