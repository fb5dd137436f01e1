/**
 * Compressing a trained translation model: the same model at a lower attention rank (and, with
 * `linear`, factorized FFN and output projection), each factorized layer set to the best low-rank
 * approximation of the trained one — per attention head the truncated SVD of its QK and OV
 * products (fromDenseAttention), per linear layer the truncated SVD of its kernel
 * (fromDenseKernel) — and every other weight copied. The result is a run folder with a
 * checkpoint_last that `train translation --init-from` fine-tunes, and that evaluate/translate read
 * like any checkpoint (Khodak et al.'s BERT compression experiment, in spirit).
 *
 * No math of its own: the conversions are src/attention/from-dense.ts and src/factorized/from-dense.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InternalError, UserError } from '../errors.ts';
import { FactorizedMultiHeadAttention } from '../attention/factorized-attention.ts';
import { fromDenseAttention } from '../attention/from-dense.ts';
import { FactorizedDense } from '../factorized/dense.ts';
import { fromDenseKernel } from '../factorized/from-dense.ts';
import { attentionRankOf } from '../models/architecture.ts';
import { TransformerSeq2Seq } from '../models/seq2seq.ts';
import { setGlobalSeed } from '../random.ts';
import { saveCheckpoint } from '../train/checkpoint.ts';
import { acquireOutputLock } from '../train/lock.ts';
import { LAST_CHECKPOINT } from '../train/run-folder.ts';
import { mergeConfig } from './config.ts';
import { checkTranslationConfig, seq2seqModelConfig, type TranslationConfig } from './translation-config.ts';
import { encodeSplit, TranslationBatches } from './translation-data.ts';
import { loadTranslator, teacherForcedLoss, type LoadedTranslator } from './translation.ts';

export interface CompressOptions {
  /** The trained model: a checkpoint folder, or a run folder (its checkpoint_best, else checkpoint_last). */
  checkpoint: string;
  /** Attention rank scale of the compressed model (per-head rank floor(S · d / H)), in (0, 1]. */
  rankScale: number;
  /** New run folder for the compressed model; must not exist or be empty. */
  out: string;
  /** Also factorize the FFN and an untied output projection at linearRankScale = rankScale. */
  linear?: boolean;
  /** Corpus folder (the checkpoint's languages): the validation loss before and after. */
  data?: string;
  log?: (line: string) => void;
}

/** ‖W − W_r‖_F / ‖W‖_F over the layers of one type (per layer; for attention, over its heads). */
export interface LayerTypeError {
  layers: number;
  mean: number;
  max: number;
}

export interface CompressSummary {
  /** The checkpoint folder that was compressed. */
  source: string;
  outDir: string;
  checkpointDir: string;
  rankScale: number;
  linear: boolean;
  /** Per-head attention rank. */
  attentionRank: { before: number; after: number };
  parameters: { before: number; after: number };
  /** By layer type: 'attention QK', 'attention OV', 'FFN', 'output projection' (those converted). */
  errors: Record<string, LayerTypeError>;
  /** Mean NLL per target token on the valid split (with `data`), before and after. */
  validLoss: { before: number; after: number } | null;
  /** The compressed model's config (config.json of its checkpoint). */
  config: TranslationConfig;
}

/** `out` must be new or an empty folder: compress never replaces anything. */
function checkNewFolder(out: string): void {
  if (!existsSync(out)) return;
  if (!statSync(out).isDirectory()) throw new UserError(`\`out\` ${out}: is a file, not a folder`);
  if (readdirSync(out).length > 0) throw new UserError(`\`out\` ${out}: already exists and is not empty; choose a new folder (compress never overwrites)`);
}

/** The compressed model's config: the source's, at the new rank scale(s); no `initFrom` (its weights are the source's). */
export function compressedConfig(source: TranslationConfig, rankScale: number, linear: boolean): TranslationConfig {
  if (!(typeof rankScale === 'number' && Number.isFinite(rankScale) && rankScale > 0 && rankScale <= 1)) {
    throw new UserError(`\`rankScale\`: must be a number in (0, 1]; got ${String(rankScale)}`);
  }
  const { initFrom: _initFrom, ...rest } = source;
  const model: Partial<TranslationConfig['model']> = { attentionRankScale: rankScale, attentionRank: null };
  if (linear) model.linearRankScale = rankScale;
  const config = mergeConfig(rest, { model });
  checkTranslationConfig(config, '`rankScale`');
  const before = attentionRankOf(source.model, 'checkpoint');
  const after = attentionRankOf(config.model, '`rankScale`');
  if (after > before) {
    throw new UserError(`\`rankScale\` ${rankScale}: gives per-head attention rank ${after}, above the checkpoint's ${before}; compress only lowers the rank`);
  }
  const linearBefore = source.model.linearRankScale;
  if (linear && linearBefore != null && rankScale > linearBefore) {
    throw new UserError(`\`rankScale\` ${rankScale}: above the checkpoint's linear rank scale ${linearBefore}; compress only lowers the rank`);
  }
  return config;
}

/** Collects relative errors by layer type. */
class ErrorTable {
  private readonly byType = new Map<string, number[]>();
  add(type: string, error: number): void {
    this.byType.set(type, [...(this.byType.get(type) ?? []), error]);
  }
  summary(): Record<string, LayerTypeError> {
    const out: Record<string, LayerTypeError> = {};
    for (const [type, xs] of this.byType) out[type] = { layers: xs.length, mean: xs.reduce((a, b) => a + b, 0) / xs.length, max: Math.max(...xs) };
    return out;
  }
}

/**
 * Sets `target` (rank r') to the per-head truncated SVD of `source`'s QK and OV products. The
 * trained factors are handed to fromDenseAttention as the dense projections of a model whose head
 * dim is the source rank r: its logits are scaled by 1/√r exactly as the source's, so the
 * products (and the √(r'/r) logit-scale correction) are the right ones at any source rank.
 */
async function compressAttention(source: FactorizedMultiHeadAttention, target: FactorizedMultiHeadAttention, errors: ErrorTable): Promise<void> {
  const H = source.numHeads;
  const r = source.rank;
  const [qf, kf, vf, of, qb, kb, vb, ob] = source.getWeights();
  const d = qf.shape[1] as number;
  // [H, d, r] → [d, H·r]: head h's columns are h·r … (h+1)·r, as in a dense projection.
  const dense = tf.tidy(() => {
    const columns = (f: tf.Tensor) => tf.reshape(tf.transpose(f, [1, 0, 2]), [d, H * r]) as tf.Tensor2D;
    return {
      wq: columns(qf),
      wk: columns(kf),
      wv: columns(vf),
      wo: tf.reshape(of, [H * r, d]) as tf.Tensor2D,
      ...(source.useBias
        ? {
            bq: tf.reshape(qb, [H * r]) as tf.Tensor1D,
            bk: tf.reshape(kb, [H * r]) as tf.Tensor1D,
            bv: tf.reshape(vb, [H * r]) as tf.Tensor1D,
            bo: tf.clone(ob) as tf.Tensor1D,
          }
        : {}),
    };
  });
  try {
    const { layer, relativeErrors } = await fromDenseAttention({ ...dense, numHeads: H, rank: target.rank });
    target.setWeights(layer.getWeights());
    for (const v of layer.weights) v.dispose(); // a temporary, never applied: Layer.dispose() refuses it
    errors.add('attention QK', relativeErrors.qk);
    errors.add('attention OV', relativeErrors.ov);
  } finally {
    tf.dispose(Object.values(dense));
  }
}

/** Sets the FactorizedDense `target` to the truncated SVD of `source`'s kernel (dense, or a factor product). */
async function compressLinear(source: tf.layers.Layer, target: FactorizedDense, type: string, errors: ErrorTable): Promise<void> {
  const w = source.getWeights();
  const factorized = source instanceof FactorizedDense;
  const kernel = (factorized ? tf.matMul(w[0] as tf.Tensor2D, w[1] as tf.Tensor2D) : tf.clone(w[0])) as tf.Tensor2D;
  const bias = (factorized ? (source.useBias ? w[2] : undefined) : w[1]) as tf.Tensor1D | undefined;
  try {
    const { layer, relativeError } = await fromDenseKernel({ kernel, bias, rank: target.rank });
    target.setWeights(layer.getWeights());
    for (const v of layer.weights) v.dispose(); // a temporary, never applied: Layer.dispose() refuses it
    errors.add(type, relativeError);
  } finally {
    kernel.dispose();
  }
}

/** Corresponding layers of two models of the same shape, in weight order, with the type of each FFN/output layer. */
function layerPairs(a: TransformerSeq2Seq, b: TransformerSeq2Seq): { source: tf.layers.Layer; target: tf.layers.Layer; linear?: string }[] {
  const pairs: { source: tf.layers.Layer; target: tf.layers.Layer; linear?: string }[] = [{ source: a.sourceEmbedding, target: b.sourceEmbedding }];
  if (!a.config.shareEmbeddings) pairs.push({ source: a.targetEmbedding, target: b.targetEmbedding });
  const blocks = [...a.encoderBlocks, ...a.decoderBlocks];
  const targets = [...b.encoderBlocks, ...b.decoderBlocks];
  blocks.forEach((block, i) => {
    const theirs = targets[i].sublayers();
    block.sublayers().forEach((layer, j) => {
      const isFfn = layer.name === 'ffn_in' || layer.name === 'ffn_out';
      pairs.push({ source: layer, target: theirs[j], ...(isFfn ? { linear: 'FFN' } : {}) });
    });
  });
  for (const [x, y] of [
    [a.encoderNorm, b.encoderNorm],
    [a.decoderNorm, b.decoderNorm],
  ] as const) {
    if (x && y) pairs.push({ source: x, target: y });
  }
  if (a.outputProjection && b.outputProjection) pairs.push({ source: a.outputProjection, target: b.outputProjection, linear: 'output projection' });
  return pairs;
}

/**
 * Fills `target` (the compressed architecture) from `source`: attention by truncated SVD, linear
 * layers by truncated SVD where `target`'s are factorized at another rank or were dense, the rest
 * copied. Returns the relative errors by layer type.
 */
export async function transferWeights(source: TransformerSeq2Seq, target: TransformerSeq2Seq): Promise<Record<string, LayerTypeError>> {
  const errors = new ErrorTable();
  const written = new Set<tf.LayerVariable>();
  for (const { source: a, target: b, linear } of layerPairs(source, target)) {
    if (a instanceof FactorizedMultiHeadAttention && b instanceof FactorizedMultiHeadAttention) {
      await compressAttention(a, b, errors);
    } else if (linear && b instanceof FactorizedDense && !(a instanceof FactorizedDense && a.rank === b.rank)) {
      await compressLinear(a, b, linear, errors);
    } else {
      b.setWeights(a.getWeights());
    }
    for (const w of b.weights) written.add(w);
  }
  const missed = target.model.weights.filter((w) => !written.has(w));
  if (missed.length > 0) throw new InternalError(`compress: weights not transferred: ${missed.map((w) => w.name).join(', ')}`);
  return errors.summary();
}

async function validLoss(translator: LoadedTranslator, data: string, model: TransformerSeq2Seq, log: (line: string) => void): Promise<number> {
  const { config, tokenizer } = translator;
  const valid = await encodeSplit(data, 'valid', config, tokenizer, log);
  const batches = new TranslationBatches(valid, tokenizer, { maxTokens: config.train.maxTokens, shuffle: false, seed: 0 });
  return (await teacherForcedLoss(model, batches, tokenizer.padId)).loss;
}

/** Compresses a trained translation checkpoint into a new run folder; see CompressOptions. */
export async function compressTranslation(opts: CompressOptions): Promise<CompressSummary> {
  const log = opts.log ?? (() => undefined);
  const out = resolve(opts.out);
  checkNewFolder(out);
  if (opts.data !== undefined && !(existsSync(opts.data) && statSync(opts.data).isDirectory())) {
    throw new UserError(`\`data\`: folder '${opts.data}' does not exist`);
  }
  const linear = opts.linear ?? false;
  const translator = await loadTranslator(opts.checkpoint);
  let compressed: TransformerSeq2Seq | null = null;
  try {
    const config = compressedConfig(translator.config, opts.rankScale, linear);
    // The new model's initial draws are overwritten; seeded only so that nothing depends on the clock.
    setGlobalSeed(config.train.seed);
    compressed = new TransformerSeq2Seq(seq2seqModelConfig(config, translator.tokenizer));
    const errors = await transferWeights(translator.model, compressed);
    const loss = opts.data === undefined ? null : {
      before: await validLoss(translator, opts.data, translator.model, log),
      after: await validLoss(translator, opts.data, compressed, log),
    };
    mkdirSync(out, { recursive: true });
    const checkpointDir = join(out, LAST_CHECKPOINT);
    const lock = acquireOutputLock(out);
    try {
      await saveCheckpoint(checkpointDir, { model: compressed.model, config, tokenizerFiles: translator.tokenizer.files() });
    } finally {
      lock.release();
    }
    return {
      source: translator.dir,
      outDir: out,
      checkpointDir,
      rankScale: opts.rankScale,
      linear,
      attentionRank: { before: attentionRankOf(translator.config.model), after: attentionRankOf(config.model) },
      parameters: { before: translator.model.numParameters(), after: compressed.numParameters() },
      errors,
      validLoss: loss,
      config,
    };
  } finally {
    compressed?.dispose();
    translator.dispose();
  }
}

/** The summary as the CLI prints it (a few lines). */
export function formatCompressSummary(s: CompressSummary): string {
  const lines = [
    `compressed ${s.source} → ${s.checkpointDir}`,
    `attention rank per head ${s.attentionRank.before} → ${s.attentionRank.after}${s.linear ? `; FFN/output projection at rank scale ${s.rankScale}` : ''}`,
    `parameters ${s.parameters.before.toLocaleString('en-US')} → ${s.parameters.after.toLocaleString('en-US')} (${((100 * s.parameters.after) / s.parameters.before).toFixed(1)} %)`,
  ];
  for (const [type, e] of Object.entries(s.errors)) {
    lines.push(`relative Frobenius error, ${type}: mean ${e.mean.toFixed(4)}, max ${e.max.toFixed(4)} over ${e.layers} layers`);
  }
  if (s.validLoss) lines.push(`valid loss ${s.validLoss.before.toFixed(4)} → ${s.validLoss.after.toFixed(4)}`);
  return lines.join('\n');
}
