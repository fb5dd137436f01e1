/**
 * The training flags every `train <task>` command shares (budgets, intervals, the optimizer
 * recipe and the factorization knobs), and how they map onto the task config. Task commands add
 * their own flags around these.
 */
import { Option, type Command } from 'commander';
import { collect, nonNegativeInt, nonNegativeNumber, positiveInt, positiveNumber } from './options.ts';

/** The shared flags as commander parses them (undefined = not given). */
export interface CommonTrainFlags {
  resume?: boolean;
  initFrom?: string;
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
  progress?: 'auto' | 'bar' | 'lines' | 'none';
}

/** What differs between tasks in the shared flags' help texts. */
export interface TrainFlagTexts {
  /** What a validation computes, e.g. 'loss, perplexity, BLEU on a sample'. */
  validates: string;
  /** What the seed drives, e.g. 'init, shuffling, dropout'. */
  seeds: string;
  /** How --max-tokens counts, e.g. 'batch size in target tokens'. */
  maxTokens: string;
  /** An example for --set. */
  setExample: string;
}

/** Adds the budget and interval flags (and --resume). */
export function addBudgetFlags(command: Command, texts: TrainFlagTexts): Command {
  return command
    .option('--resume', 'continue the run in --out from its last checkpoint (its config.json wins; stopping rules may be extended)')
    .option('--max-steps <n>', 'stop after N optimizer updates', positiveInt)
    .option('--max-epochs <n>', 'stop after N passes over the training data', positiveInt)
    .option('--max-time <minutes>', 'stop after this many minutes of training', positiveNumber)
    .option('--save-every <n>', 'save a checkpoint every N updates', positiveInt)
    .option('--valid-every <n>', `validate (${texts.validates}) every N updates`, positiveInt)
    .option('--log-every <n>', 'log training loss every N updates', positiveInt);
}

/** Adds --init-from (for tasks that can start from a trained checkpoint's model). */
export function addInitFromFlag(command: Command): Command {
  return command.option(
    '--init-from <dir>',
    "start from this checkpoint's model (architecture, weights, tokenizer; e.g. a `compress` output): a new run with its own optimizer and recipe; model flags other than --dropout are refused",
  );
}

/** Adds the optimizer recipe and factorization flags. */
export function addRecipeFlags(command: Command, texts: TrainFlagTexts): Command {
  return command
    .option('--seed <n>', `random seed (${texts.seeds})`, nonNegativeInt)
    .option('--lr <x>', 'peak learning rate', positiveNumber)
    .option('--warmup <n>', 'warm-up updates of the schedule', nonNegativeInt)
    .option('--max-tokens <n>', texts.maxTokens, positiveInt)
    .option('--update-freq <n>', 'accumulate gradients over N batches per update', positiveInt)
    .option('--clip-norm <x>', 'clip the global gradient norm (0 = off)', nonNegativeNumber)
    .option('--frobenius-decay <x>', 'Frobenius decay coefficient on factor products (0 = off)', nonNegativeNumber)
    .option('--weight-decay <x>', 'decoupled weight decay on non-factor weights', nonNegativeNumber)
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['adam', 'adamw', 'nag']))
    .option('--dropout <x>', 'residual/embedding dropout', nonNegativeNumber)
    .option('--rank-scale <x>', 'attention rank scale: per-head rank = floor(x * d / H)', positiveNumber)
    .option('--spectral-init', 'spectral initialization of the factors (preset default: on)')
    .option('--no-spectral-init', 'plain random initialization of the factors');
}

/** Adds --set and --progress (last in the help). */
export function addOutputFlags(command: Command, texts: TrainFlagTexts): Command {
  return command
    .option('--set <key=value>', `set any config key, e.g. ${texts.setExample} (repeatable)`, collect)
    .addOption(new Option('--progress <mode>', 'progress display (default: a bar on a terminal, lines otherwise)').choices(['auto', 'bar', 'lines', 'none']));
}

/** The config keys the shared flags set (undefined = keep the config's value). */
export function commonOverridesFromFlags(f: CommonTrainFlags) {
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
  };
}
