/**
 * Translation commands: `train translation`, `evaluate translation`, `translate`.
 * The commands only parse options and print; tasks/translation.ts does the work.
 */
import { DECODE_ENGINES, type DecodeEngine } from '../../decode/engine.ts';
import { Option, type Command } from 'commander';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { InterruptedError, UserError } from '../../errors.ts';
import { TRANSLATION_PRESETS, type TranslationConfigOverrides } from '../../tasks/translation-config.ts';
import { evaluateTranslation, formatEvaluation, trainTranslation, translateLines } from '../../tasks/translation.ts';
import { formatValidLoss } from '../../train/progress.ts';
import { commandGroup } from '../groups.ts';
import { addBudgetFlags, addInitFromFlag, addOutputFlags, addRecipeFlags, commonOverridesFromFlags, type CommonTrainFlags, type TrainFlagTexts } from '../train-flags.ts';
import type { CliIo } from '../io.ts';
import { fileSystemProblem } from '../report-error.ts';
import { finiteNumber, integer, nonNegativeInt, nonNegativeNumber, positiveInt } from '../options.ts';
import { checkOutFolderPath, checkOutputFile, cleanupCreatedOnFailure } from '../output-folder.ts';

/** Options of `train translation` as commander parses them (undefined = not given). */
interface TrainFlags extends CommonTrainFlags {
  data: string;
  out: string;
  sourceLang?: string;
  targetLang?: string;
  preset?: string;
  config?: string;
  tokenizer?: string;
  keepLast?: number;
  labelSmoothing?: number;
  rank?: number;
  vocabSize?: number;
  maxLength?: number;
  longLines?: 'skip' | 'error';
  validBleuSamples?: number;
  beam?: number;
  decodeEngine?: DecodeEngine;
}

/** The config keys that dedicated flags set. */
export function overridesFromFlags(f: TrainFlags): TranslationConfigOverrides {
  const common = commonOverridesFromFlags(f);
  return {
    model: { ...common.model, attentionRank: f.rank },
    train: { ...common.train, keepLast: f.keepLast, labelSmoothing: f.labelSmoothing },
    data: { vocabSize: f.vocabSize, maxLength: f.maxLength, longLines: f.longLines },
    decode: { validBleuSamples: f.validBleuSamples, beam: f.beam, engine: f.decodeEngine },
  };
}

const TRAIN_TEXTS: TrainFlagTexts = {
  validates: 'loss, perplexity, BLEU on a sample',
  seeds: 'init, shuffling, dropout',
  maxTokens: 'batch size in target tokens',
  setExample: '--set train.betas=[0.9,0.98]',
};

function registerTrain(program: Command, io: CliIo): void {
  const command = commandGroup(program, 'train')
    .command('translation')
    .description(
      'train a Transformer with factorized attention on a parallel corpus in fairseq layout ({train,valid,test}.{src,tgt} in --data); ' +
        'trains a SentencePiece model first when the folder has none and --tokenizer is not given',
    )
    .requiredOption('--data <dir>', 'corpus folder with train.<S>/train.<T>, valid.<S>/valid.<T> (one sentence per line)')
    .requiredOption('--out <dir>', 'output folder: checkpoints (checkpoint_last, checkpoint_best, checkpoint_<step>), metrics.jsonl')
    .option('--source-lang <S>', 'source language suffix, e.g. en (default on --resume: the checkpoint\'s)')
    .option('--target-lang <T>', 'target language suffix, e.g. es')
    .option('--preset <name>', `model + recipe preset: ${Object.keys(TRANSLATION_PRESETS).join(', ')} (default transformer_small)`)
    .option('--config <file>', 'JSON config: any subset of {model, train, data, decode} keys (see README "Configuration")')
    .option('--tokenizer <file>', 'SentencePiece .model or tokenizer.json to use instead of the data folder\'s or a newly trained one');
  addInitFromFlag(addBudgetFlags(command, TRAIN_TEXTS)).option('--keep-last <n>', 'also keep the last N checkpoint_<step> folders (for average-checkpoints)', positiveInt);
  addRecipeFlags(command, TRAIN_TEXTS)
    .option('--label-smoothing <x>', 'label smoothing epsilon', nonNegativeNumber)
    .option('--rank <r>', 'explicit per-head attention rank (overrides --rank-scale)', integer)
    .option('--vocab-size <n>', 'vocabulary size when a SentencePiece model is trained here', positiveInt)
    .option('--max-length <n>', 'longest training sentence in tokens (either side)', positiveInt)
    .addOption(new Option('--long-lines <what>', 'training pairs longer than --max-length: skip them (and report how many) or stop with an error').choices(['skip', 'error']))
    .option('--valid-bleu-samples <n>', 'BLEU on the first N valid sentences at each validation (0 = off)', nonNegativeInt)
    .option('--beam <n>', 'beam size stored with the model for evaluate/translate', positiveInt)
    .addOption(decodeEngineOption('inference engine of validation BLEU, stored with the model for evaluate/translate'));
  addOutputFlags(command, TRAIN_TEXTS)
    .action(async (flags: TrainFlags) => {
      checkOutFolderPath(flags.out);
      const summary = await cleanupCreatedOnFailure(flags.out, () => trainTranslation({
        data: flags.data,
        out: flags.out,
        sourceLang: flags.sourceLang,
        targetLang: flags.targetLang,
        preset: flags.preset,
        configFile: flags.config,
        tokenizer: flags.tokenizer,
        resume: flags.resume ?? false,
        initFrom: flags.initFrom,
        overrides: overridesFromFlags(flags),
        set: flags.set,
        progress: flags.progress,
        log: (line) => io.stderr(`${line}\n`),
      }));
      if (summary.config.initFrom) io.stdout(`initial model: ${summary.config.initFrom}\n`);
      io.stdout(
        `trained ${summary.steps} steps in ${summary.wallSeconds.toFixed(0)} s; ` +
          `${formatValidLoss(summary.finalValidLoss)}; checkpoint ${summary.outDir}\n`,
      );
      // Stopped by Ctrl-C or kill after saving checkpoint_last: exit 130/143, not success.
      if (summary.signal) throw new InterruptedError(summary.signal);
    });
}

interface EvaluateFlags {
  checkpoint: string;
  data: string;
  split: string;
  sourceLang?: string;
  targetLang?: string;
  beam?: number;
  lenPenalty?: number;
  decodeEngine?: DecodeEngine;
  limit?: number;
  output?: string;
  json?: boolean;
}

function registerEvaluate(program: Command, io: CliIo): void {
  commandGroup(program, 'evaluate')
    .command('translation')
    .description('translate a split with beam search and score it: BLEU (with its sacreBLEU signature), chrF, token-level perplexity')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder (e.g. checkpoints/NAME/checkpoint_best)')
    .requiredOption('--data <dir>', 'corpus folder in fairseq layout')
    .option('--split <name>', 'which split: files <split>.<S> and <split>.<T>', 'test')
    .option('--source-lang <S>', "source language suffix (default: the checkpoint's)")
    .option('--target-lang <T>', "target language suffix (default: the checkpoint's)")
    .option('--beam <n>', "beam size (default: the checkpoint's config, 5 for the presets)", positiveInt)
    .option('--len-penalty <x>', 'length penalty exponent (default: the checkpoint\'s config)', finiteNumber)
    .addOption(decodeEngineOption())
    .option('--limit <n>', 'only the first N sentences', positiveInt)
    .option('--output <file>', 'also write the translations, one per line')
    .option('--json', 'print the scores as one JSON object')
    .action(async (flags: EvaluateFlags) => {
      // Checked before the (long) decoding, so a typo in the path does not cost the evaluation.
      if (flags.output !== undefined) checkOutputFile(flags.output);
      const result = await evaluateTranslation({
        checkpoint: flags.checkpoint,
        data: flags.data,
        split: flags.split,
        sourceLang: flags.sourceLang,
        targetLang: flags.targetLang,
        beam: flags.beam,
        lenPenalty: flags.lenPenalty,
        engine: flags.decodeEngine,
        limit: flags.limit,
        log: (line) => io.stderr(`${line}\n`),
      });
      // Scores first: if writing the translations fails after all, the evaluation is not lost.
      if (flags.json) {
        const { hypotheses: _h, references: _r, sources: _s, ...scores } = result;
        io.stdout(`${JSON.stringify(scores)}\n`);
      } else {
        io.stdout(`${formatEvaluation(result)}\n`);
      }
      if (flags.output) {
        try {
          writeFileSync(flags.output, result.hypotheses.map((h) => `${h}\n`).join(''));
        } catch (err) {
          const problem = fileSystemProblem(err);
          if (problem === null) throw err;
          throw new UserError(`--output ${flags.output}: cannot write the translations: ${problem} (the scores above are complete)`);
        }
      }
    });
}

interface TranslateFlags {
  checkpoint: string;
  input?: string;
  beam?: number;
  lenPenalty?: number;
  decodeEngine?: DecodeEngine;
}

function registerTranslate(program: Command, io: CliIo): void {
  program
    .command('translate')
    .description('translate text, one sentence per line, from --input or stdin to stdout (detokenized)')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder')
    .option('--input <file>', 'read sentences from this file instead of stdin')
    .option('--beam <n>', "beam size (default: the checkpoint's config)", positiveInt)
    .option('--len-penalty <x>', "length penalty exponent (default: the checkpoint's config)", finiteNumber)
    .addOption(decodeEngineOption())
    .action(async (flags: TranslateFlags) => {
      let text: string;
      if (flags.input !== undefined) {
        if (!existsSync(flags.input)) throw new UserError(`--input: file '${flags.input}' does not exist`);
        if (statSync(flags.input).isDirectory()) throw new UserError(`--input: '${flags.input}' is a folder, not a text file`);
        text = readFileSync(flags.input, 'utf8');
      } else {
        text = await io.readStdin();
      }
      const lines = text.split(/\r?\n/);
      if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
      const translations = await translateLines(flags.checkpoint, lines, { beam: flags.beam, lenPenalty: flags.lenPenalty, engine: flags.decodeEngine });
      io.stdout(translations.map((t) => `${t}\n`).join(''));
    });
}

/** --decode-engine: which engine decodes (src/decode/engine.ts). */
function decodeEngineOption(what = "inference engine (default: the checkpoint's config, auto)"): Option {
  return new Option('--decode-engine <name>', `${what}: onnx = ONNX Runtime (onnxruntime-node), tfjs = the tfjs model, auto = onnx on a CPU engine when onnxruntime-node is installed`).choices([...DECODE_ENGINES]);
}

export function registerTranslationCommands(program: Command, io: CliIo): void {
  registerTrain(program, io);
  registerEvaluate(program, io);
  registerTranslate(program, io);
}
