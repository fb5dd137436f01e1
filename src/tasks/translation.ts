/**
 * The translation task: wires config → tokenizer → corpus and batches → model → trainer →
 * validation (loss, perplexity, BLEU on a sample) → checkpoints, and evaluation / translation
 * from a checkpoint. No math of its own: every computation is a src/ library call.
 *
 * Source sequences are `tokens + EOS`; decoder input is `BOS + tokens`, decoder output
 * `tokens + EOS` (fairseq's convention), the same at training, evaluation and translation.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { setGlobalSeed } from '../random.ts';
import { beamSearch } from '../decode/beam-search.ts';
import { greedyDecode } from '../decode/greedy.ts';
import { openDecoder, type DecodeEngine, type OpenedDecoder } from '../decode/engine.ts';
import { corpusBleu } from '../metrics/bleu.ts';
import { corpusChrf } from '../metrics/chrf.ts';
import { perplexity } from '../metrics/perplexity.ts';
import { countSeq2SeqParameters, fullRankArchitecture } from '../models/parameters.ts';
import { TransformerSeq2Seq } from '../models/seq2seq.ts';
import { loadTokenizer, type Tokenizer } from '../text/tokenizer.ts';
import { trainSentencePiece } from '../text/train-sentencepiece.ts';
import { loadCheckpoint } from '../train/checkpoint.ts';
import { trainerOptionsFromSection } from '../train/config.ts';
import { labelSmoothedCrossEntropy } from '../train/losses.ts';
import { signalHandlingEnabled } from '../train/signals.ts';
import type { ProgressMode } from '../train/progress.ts';
import { Trainer, type BatchSource } from '../train/trainer.ts';
import { commandLineLayer } from './config.ts';
import {
  checkTranslationConfig,
  parseStoredTranslationConfig,
  resolveInitFromConfig,
  resolveTranslationConfig,
  seq2seqModelConfig,
  translationConfigFileSchema,
  type TranslationConfig,
  type TranslationConfigOverrides,
} from './translation-config.ts';
import { encodeSplit, TranslationBatches, type EncodedSplit, type TranslationBatch } from './translation-data.ts';
import { checkResumeTokenizer, checkSameRunData, describeRunData, readRunData, writeRunData } from './run-data.ts';
import { loadCheckpointTokenizer, openRunFolder, readCheckpointConfig, resolveCheckpointDir, resumedConfig, runSummary, type RunSummary } from './run.ts';
import { removeStaleScratch } from '../text/scratch.ts';

export interface TranslationTrainOptions {
  /** Corpus folder in fairseq layout: {train,valid,test}.{sourceLang,targetLang}. */
  data: string;
  /** Output folder: checkpoint_last, checkpoint_best, metrics.jsonl. */
  out: string;
  sourceLang?: string;
  targetLang?: string;
  /** Task preset (default transformer_small). */
  preset?: string;
  /** JSON config file: any subset of the config keys. */
  configFile?: string;
  /** SentencePiece .model or tokenizer.json; default: the data folder's, else one trained on train. */
  tokenizer?: string;
  /** Config values from flags / code, applied last. */
  overrides?: TranslationConfigOverrides;
  /** `set` overrides (`key=value`). */
  set?: string[];
  /** Continue the run in `out` from checkpoint_last. */
  resume?: boolean;
  /**
   * Start from this checkpoint's model (a checkpoint folder or a run folder, e.g. a `compress`
   * output): its architecture, weights and tokenizer; everything else (optimizer, step 0, the
   * recipe from preset/config/overrides) is a new run. Recorded as the config's `initFrom`.
   */
  initFrom?: string;
  progress?: ProgressMode;
  /** Status lines (tokenizer, corpus sizes, skipped lines); default: none. */
  log?: (line: string) => void;
}

export interface TrainSummary extends RunSummary<TranslationConfig> {
  /** Final validation results (loss, perplexity, bleu when sampled). */
  lastValidation: Record<string, number> | null;
  /** Mean training loss per token of the last update. */
  lastTrainLoss: number;
}

function checkDataFolder(data: string): void {
  if (!existsSync(data)) throw new UserError(`\`data\`: folder '${data}' does not exist`);
  if (!statSync(data).isDirectory()) throw new UserError(`\`data\`: '${data}' is not a folder`);
}

/** True when the folder holds a tokenizer loadTokenizer can pick (tokenizer.json or *.model). */
function folderHasTokenizer(dir: string): boolean {
  return readdirSync(dir).some((f) => f === 'tokenizer.json' || f.endsWith('.model'));
}

/** The checkpoint a run starts from (`initFrom`), resolved; it must not lie in `out` (the run would replace it). */
function initSource(initFrom: string, out: string): { dir: string; config: TranslationConfig } {
  const dir = resolve(resolveCheckpointDir(initFrom, 'initFrom'));
  const rel = relative(out, dir);
  if (rel === '' || !(rel.startsWith('..') || isAbsolute(rel))) {
    throw new UserError(`\`initFrom\` ${initFrom}: lies in \`out\` ${out}, whose checkpoints the run replaces; choose another \`out\``);
  }
  return { dir, config: readCheckpointConfig(dir, parseStoredTranslationConfig) };
}

/** The config of a resumed run: the stored one, where only the resume policy's keys may change (run.ts). */
function resumeConfig(lastDir: string, opts: TranslationTrainOptions): TranslationConfig {
  const stored = readCheckpointConfig(lastDir, parseStoredTranslationConfig);
  // A restart loop passes the same `initFrom` again: fine when it names the run's own source.
  if (opts.initFrom !== undefined) {
    const given = resolve(resolveCheckpointDir(opts.initFrom, 'initFrom'));
    if (stored.initFrom !== given) {
      const was = stored.initFrom === undefined ? 'was not started from a checkpoint' : `was started from ${stored.initFrom}`;
      throw new UserError(`\`resume\`: the run in '${opts.out}' ${was}, not from \`initFrom\` ${given}`);
    }
  }
  if (opts.configFile) throw new UserError('`resume`: `configFile` cannot be combined with `resume` (the run keeps its stored config)');
  if (opts.preset && opts.preset !== stored.preset) throw new UserError(`\`resume\`: the run in '${opts.out}' uses preset '${stored.preset}', not '${opts.preset}'`);
  for (const [key, value, storedValue] of [
    ['sourceLang', opts.sourceLang, stored.sourceLang],
    ['targetLang', opts.targetLang, stored.targetLang],
  ] as const) {
    if (value !== undefined && value !== storedValue) throw new UserError(`\`resume\`: \`${key}\` ${value} differs from the run's ${storedValue}`);
  }
  const config = resumedConfig(stored, commandLineLayer(translationConfigFileSchema, opts.overrides, opts.set), opts.out);
  checkTranslationConfig(config, 'command line');
  return config;
}

/** The tokenizer for a new run: `tokenizer`, else the data folder's, else trained on the train split. */
async function chooseTokenizer(
  opts: TranslationTrainOptions,
  config: TranslationConfig,
  scratch: string,
  log: (line: string) => void,
): Promise<Tokenizer> {
  if (opts.tokenizer) {
    if (!existsSync(opts.tokenizer)) throw new UserError(`\`tokenizer\`: '${opts.tokenizer}' does not exist`);
    return loadTokenizer(opts.tokenizer);
  }
  if (folderHasTokenizer(opts.data)) return loadTokenizer(opts.data);
  const inputs = [config.sourceLang, config.targetLang].map((lang) => join(opts.data, `train.${lang}`));
  for (const f of inputs) if (!existsSync(f)) throw new UserError(`\`data\`: '${f}' does not exist (expected train.${config.sourceLang} and train.${config.targetLang})`);
  log(`training a ${config.data.vocabSize}-piece ${config.data.tokenizerModelType} SentencePiece model on ${inputs.join(' + ')}`);
  mkdirSync(scratch, { recursive: true });
  const modelPath = await trainSentencePiece({
    input: inputs,
    modelPrefix: join(scratch, 'spm'),
    vocabSize: config.data.vocabSize,
    modelType: config.data.tokenizerModelType,
    seed: config.train.seed,
    // Ctrl-C stops spm_train too, but only where the program opted in (the CLI does).
    handleSignals: signalHandlingEnabled(),
  });
  return loadTokenizer(modelPath);
}

/**
 * Mean NLL per target token and perplexity over a whole encoded split (teacher forcing). One
 * `await data()` per batch: GPU backends cannot read synchronously.
 */
export async function teacherForcedLoss(
  model: TransformerSeq2Seq,
  batches: TranslationBatches,
  padId: number,
): Promise<{ loss: number; perplexity: number; tokens: number }> {
  let nll = 0;
  let tokens = 0;
  for (const batch of batches.batches(0, 0)) {
    const sum = tf.tidy(() => {
      const { source, targetIn, targetOut } = batchTensors(batch);
      const logits = model.forward(source, targetIn, false);
      return labelSmoothedCrossEntropy(logits, targetOut, { smoothing: 0, padId, targetIds: batch.targetOut }).nllLoss;
    });
    nll += (await sum.data())[0];
    sum.dispose();
    tokens += batch.numTokens;
  }
  return { loss: tokens > 0 ? nll / tokens : NaN, perplexity: tokens > 0 ? perplexity(nll, tokens) : NaN, tokens };
}

function batchTensors(batch: TranslationBatch): { source: tf.Tensor2D; targetIn: tf.Tensor2D; targetOut: tf.Tensor2D } {
  return {
    source: tf.tensor2d(batch.source, batch.sourceShape, 'int32'),
    targetIn: tf.tensor2d(batch.targetIn, batch.targetShape, 'int32'),
    targetOut: tf.tensor2d(batch.targetOut, batch.targetShape, 'int32'),
  };
}

/** Source ids as the model sees them: tokens + EOS, cut to the model's positions. */
export function sourceForModel(tokens: ArrayLike<number>, eosId: number, maxPositions: number): number[] {
  const ids = Array.from(tokens).slice(0, Math.max(0, maxPositions - 1));
  ids.push(eosId);
  return ids;
}

export interface DecodeOptions {
  beam: number;
  lenPenalty: number;
  maxLenA: number;
  maxLenB: number;
  /** Sentences decoded together (default 32). */
  batchSize?: number;
  /** Inference engine (decode/engine.ts); default 'auto'. */
  engine?: DecodeEngine;
}

/** Decodes token sequences (without EOS) into detokenized text, batching sentences of similar length. */
export async function decodeSentences(model: TransformerSeq2Seq, tokenizer: Tokenizer, sources: ArrayLike<number>[], opts: DecodeOptions): Promise<string[]> {
  return (await decodeSentencesOn(model, tokenizer, sources, opts)).texts;
}

/** decodeSentences, also saying which engine decoded (`auto` resolves at open time), for evaluation records. */
async function decodeSentencesOn(
  model: TransformerSeq2Seq,
  tokenizer: Tokenizer,
  sources: ArrayLike<number>[],
  opts: DecodeOptions,
): Promise<{ texts: string[]; engine: OpenedDecoder['engine'] }> {
  const out: string[] = new Array(sources.length).fill('');
  const order = sources.map((s, i) => ({ i, n: s.length })).filter((x) => x.n > 0);
  order.sort((a, b) => a.n - b.n || a.i - b.i);
  // Rows per decoder step = sentences × beam: keep it near 64-160 for the wasm/cpu engines.
  const batchSize = opts.batchSize ?? (opts.beam === 1 ? 64 : 32);
  const { decoder, engine, dispose } = await openDecoder(model, opts.engine ?? 'auto');
  try {
    for (let start = 0; start < order.length; start += batchSize) {
      const chunk = order.slice(start, start + batchSize);
      const ids = chunk.map((x) => sourceForModel(sources[x.i], model.eosId, model.config.maxPositions));
      const lengths = { maxLenA: opts.maxLenA, maxLenB: opts.maxLenB };
      const best =
        opts.beam === 1
          ? await greedyDecode(decoder, ids, { ...lengths, lenPenalty: opts.lenPenalty })
          : (await beamSearch(decoder, ids, { ...lengths, beamSize: opts.beam, lenPenalty: opts.lenPenalty })).map((h) => h[0]);
      chunk.forEach((x, k) => {
        out[x.i] = tokenizer.decode(best[k].tokens);
      });
    }
  } finally {
    await dispose();
  }
  return { texts: out, engine };
}

/** Trains (or resumes) a translation model; see TranslationTrainOptions. */
export async function trainTranslation(opts: TranslationTrainOptions): Promise<TrainSummary> {
  const log = opts.log ?? (() => undefined);
  checkDataFolder(opts.data);
  const out = resolve(opts.out);
  const { resume, lastDir } = openRunFolder(out, opts.resume, log);
  const layers = {
    preset: opts.preset,
    configFile: opts.configFile,
    flags: opts.overrides,
    set: opts.set,
    sourceLang: opts.sourceLang,
    targetLang: opts.targetLang,
  };
  // A resumed run's model comes from its checkpoint_last, not from `initFrom` (resumeConfig checks it is the same run).
  const init = !resume && opts.initFrom !== undefined ? initSource(opts.initFrom, out) : null;
  if (init && opts.tokenizer) throw new UserError(`\`tokenizer\`: cannot be combined with \`initFrom\` (the model's vocabulary is its checkpoint's tokenizer)`);
  const config = resume ? resumeConfig(lastDir, opts) : init ? resolveInitFromConfig(layers, init.config, init.dir) : resolveTranslationConfig(layers);

  // Tokenizer-training folders of runs killed outright (kill -9, OOM): their process is gone.
  removeStaleScratch(out, '.tokenizer-');
  const scratch = join(out, `.tokenizer-${process.pid}`);
  // What the run trains on: a resumed run must read the same training data (see run-data.ts).
  const trainFiles = [config.sourceLang, config.targetLang].map((lang) => join(opts.data, `train.${lang}`));
  const runData = trainFiles.every((f) => existsSync(f)) ? await describeRunData(opts.data, trainFiles) : null;
  if (resume && runData) checkSameRunData(opts.out, readRunData(out), runData, 'data');
  try {
    const tokenizer = resume ? await loadCheckpointTokenizer(lastDir) : init ? await loadCheckpointTokenizer(init.dir) : await chooseTokenizer(opts, config, scratch, log);
    if (resume && opts.tokenizer) await checkResumeTokenizer(opts.tokenizer, tokenizer, opts.out);
    const train = await encodeSplit(opts.data, 'train', config, tokenizer, log);
    const valid = await encodeSplit(opts.data, 'valid', config, tokenizer, log);
    log(`corpus: ${train.source.length} train pairs, ${valid.source.length} valid pairs; vocabulary ${tokenizer.vocabSize}; backend ${tf.getBackend()}`);

    setGlobalSeed(config.train.seed);
    const modelConfig = seq2seqModelConfig(config, tokenizer);
    const model = new TransformerSeq2Seq(modelConfig);
    if (init) {
      log(`initial model: ${init.dir}`);
      try {
        (await loadCheckpoint(init.dir)).restoreWeightsInto(model.model);
      } catch (err) {
        model.dispose();
        throw err;
      }
    }
    const trainBatches = new TranslationBatches(train, tokenizer, { maxTokens: config.train.maxTokens, shuffle: true, seed: config.train.seed });
    const validBatches = new TranslationBatches(valid, tokenizer, { maxTokens: config.train.maxTokens, shuffle: false, seed: 0 });
    const bleuSample = valid.source.slice(0, config.decode.validBleuSamples);
    const bleuRefs = valid.targetText.slice(0, bleuSample.length);
    const smoothing = config.train.labelSmoothing;
    const padId = tokenizer.padId;
    const t = config.train;

    const trainer = new Trainer<TranslationBatch>({
      model: { model: model.model, factorPairs: () => model.factorPairs() },
      data: trainBatches as BatchSource<TranslationBatch>,
      lossFn: (batch, { training }) => {
        const { source, targetIn, targetOut } = batchTensors(batch);
        const logits = model.forward(source, targetIn, training);
        const { loss, nllLoss, numTokens } = labelSmoothedCrossEntropy(logits, targetOut, { smoothing, padId, targetIds: batch.targetOut });
        return { loss, nllLoss, numTokens };
      },
      validate: async () => {
        const { loss, perplexity: ppl } = await teacherForcedLoss(model, validBatches, padId);
        const results: Record<string, number> = { loss, perplexity: ppl };
        if (bleuSample.length > 0) {
          const hyps = await decodeSentences(model, tokenizer, bleuSample, { ...config.decode, beam: config.decode.validBeam });
          results.bleu = corpusBleu(hyps, [bleuRefs]).score;
        }
        return results;
      },
      outDir: out,
      config,
      tokenizerFiles: tokenizer.files(),
      ...trainerOptionsFromSection(t),
      resume,
      progress: opts.progress,
    });
    if (!resume && runData) {
      mkdirSync(out, { recursive: true });
      writeRunData(out, runData);
    }
    try {
      const result = await trainer.train();
      const parameters = { numParameters: model.numParameters(), fullRankParameters: countSeq2SeqParameters(fullRankArchitecture(modelConfig)) };
      return { ...runSummary(out, result, parameters, config), lastValidation: result.lastValidation, lastTrainLoss: result.lastLoss };
    } finally {
      trainer.dispose();
      model.dispose();
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** A trained translation model with its tokenizer and config, ready to decode. */
export interface LoadedTranslator {
  dir: string;
  config: TranslationConfig;
  tokenizer: Tokenizer;
  model: TransformerSeq2Seq;
  dispose(): void;
}

/** Loads a checkpoint written by trainTranslation (DIR, or DIR/checkpoint_best|last). */
export async function loadTranslator(checkpoint: string): Promise<LoadedTranslator> {
  const dir = resolveCheckpointDir(checkpoint);
  // Checksums first (loadCheckpoint), so that damage is reported as such.
  const ckpt = await loadCheckpoint(dir);
  const config = readCheckpointConfig(dir, parseStoredTranslationConfig);
  const tokenizer = await loadCheckpointTokenizer(dir);
  const model = new TransformerSeq2Seq(seq2seqModelConfig(config, tokenizer));
  try {
    ckpt.restoreWeightsInto(model.model);
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { dir, config, tokenizer, model, dispose: () => model.dispose() };
}

export interface TranslateOptions {
  beam?: number;
  lenPenalty?: number;
  batchSize?: number;
  /** Inference engine; default: the checkpoint config's decode.engine (auto). */
  engine?: DecodeEngine;
}

/** Translates raw lines (detokenized in, detokenized out). Characters outside the vocabulary become unk. */
export async function translateLines(checkpoint: string | LoadedTranslator, lines: string[], opts: TranslateOptions = {}): Promise<string[]> {
  const translator = typeof checkpoint === 'string' ? await loadTranslator(checkpoint) : checkpoint;
  try {
    const d = translator.config.decode;
    const sources = lines.map((line) => translator.tokenizer.encode(line.trim()));
    return await decodeSentences(translator.model, translator.tokenizer, sources, {
      beam: opts.beam ?? d.beam,
      lenPenalty: opts.lenPenalty ?? d.lenPenalty,
      maxLenA: d.maxLenA,
      maxLenB: d.maxLenB,
      batchSize: opts.batchSize,
      engine: opts.engine ?? d.engine,
    });
  } finally {
    if (typeof checkpoint === 'string') translator.dispose();
  }
}

export interface EvaluateTranslationOptions {
  /** Checkpoint folder (DIR, or a run folder with checkpoint_best/last). */
  checkpoint: string;
  data: string;
  split?: string;
  /** Default: the checkpoint's languages. */
  sourceLang?: string;
  targetLang?: string;
  beam?: number;
  lenPenalty?: number;
  /** Inference engine; default: the checkpoint config's decode.engine (auto). */
  engine?: DecodeEngine;
  /** Only the first N sentences. */
  limit?: number;
  log?: (line: string) => void;
}

export interface TranslationEvaluation {
  split: string;
  numSentences: number;
  beam: number;
  /** The engine that decoded the hypotheses (what `auto` chose). */
  engine: OpenedDecoder['engine'];
  bleu: number;
  /** sacreBLEU signature, e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0. */
  signature: string;
  /** sacreBLEU's verbose part: precisions, BP, ratio, lengths. */
  bleuVerbose: string;
  chrf: number;
  chrfSignature: string;
  /** Token-level perplexity of the references under the model (teacher forcing). */
  perplexity: number;
  /** Mean NLL per target token (natural log). */
  loss: number;
  sources: string[];
  references: string[];
  hypotheses: string[];
}

/** Translates a split with beam search and scores it against its references. */
export async function evaluateTranslation(opts: EvaluateTranslationOptions): Promise<TranslationEvaluation> {
  checkDataFolder(opts.data);
  const split = opts.split ?? 'test';
  const translator = await loadTranslator(opts.checkpoint);
  try {
    const config: TranslationConfig = {
      ...translator.config,
      sourceLang: opts.sourceLang ?? translator.config.sourceLang,
      targetLang: opts.targetLang ?? translator.config.targetLang,
    };
    let encoded = await encodeSplit(opts.data, split, config, translator.tokenizer, opts.log ?? (() => undefined), true);
    if (opts.limit !== undefined) encoded = limitSplit(encoded, opts.limit);
    // Perplexity is scored on what fits the model: sentences past its positions are cut.
    const fit = translator.model.config.maxPositions - 1;
    const scored: EncodedSplit = { ...encoded, source: encoded.source.map((s) => s.subarray(0, fit)), target: encoded.target.map((t) => t.subarray(0, fit)) };
    const beam = opts.beam ?? config.decode.beam;
    const { texts: hypotheses, engine } = await decodeSentencesOn(translator.model, translator.tokenizer, encoded.source, {
      ...config.decode,
      beam,
      lenPenalty: opts.lenPenalty ?? config.decode.lenPenalty,
      engine: opts.engine ?? config.decode.engine,
    });
    const bleu = corpusBleu(hypotheses, [encoded.targetText]);
    const chrf = corpusChrf(hypotheses, [encoded.targetText]);
    const maxTokens = Math.max(config.train.maxTokens, translator.model.config.maxPositions);
    const batches = new TranslationBatches(scored, translator.tokenizer, { maxTokens, shuffle: false, seed: 0 });
    const { loss, perplexity: ppl } = await teacherForcedLoss(translator.model, batches, translator.tokenizer.padId);
    return {
      split,
      numSentences: hypotheses.length,
      beam,
      engine,
      bleu: bleu.score,
      signature: bleu.signature,
      bleuVerbose: bleu.verbose,
      chrf: chrf.score,
      chrfSignature: chrf.signature,
      perplexity: ppl,
      loss,
      sources: encoded.sourceText,
      references: encoded.targetText,
      hypotheses,
    };
  } finally {
    translator.dispose();
  }
}

function limitSplit(s: EncodedSplit, n: number): EncodedSplit {
  return { source: s.source.slice(0, n), target: s.target.slice(0, n), sourceText: s.sourceText.slice(0, n), targetText: s.targetText.slice(0, n) };
}

/** Human-readable scores, sacreBLEU style. */
export function formatEvaluation(e: TranslationEvaluation): string {
  return [
    `BLEU|${e.signature} = ${e.bleu.toFixed(2)} ${e.bleuVerbose}`,
    `chrF2|${e.chrfSignature} = ${e.chrf.toFixed(2)}`,
    `perplexity = ${e.perplexity.toFixed(2)} (token-level, ${e.split} split, ${e.numSentences} sentences, beam ${e.beam}, decoded by ${e.engine})`,
  ].join('\n');
}

