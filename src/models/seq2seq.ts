/**
 * TransformerSeq2Seq: the encoder–decoder Transformer with factorized attention.
 *
 * `model` is a functional tf.LayersModel, inputs `source_ids [B, S]` and `target_in_ids [B, T]`
 * (int32), output logits [B, T, V]; every layer is registered, so model.json + weights.bin load
 * back with tf.loadLayersModel (wrap the result with `TransformerSeq2Seq.fromModel`). Next to it,
 * the same layers serve incremental decoding (encode once, then one cached step per token).
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { createAttentionCache, disposeAttentionCache, reorderAttentionCache } from '../attention/index.ts';
import type { FactorPair } from '../factorized/index.ts';
import type { DecoderStepModel } from '../decode/types.ts';
import { resolveSeq2SeqConfig } from './config.ts';
import type { Seq2SeqConfig } from './config.ts';
import type { Seq2SeqOverrides } from './config.ts';
import { attentionRankOf } from './architecture.ts';
import { TokenEmbedding } from './embedding.ts';
import { TransformerDecoderBlock, TransformerEncoderBlock } from './blocks.ts';
import type { BlockConfig, DecoderBlockCache } from './blocks.ts';
import { layerNorm, paddingMask, projection } from './sublayers.ts';

export interface EncoderOutput {
  /** [B, S, d]. */
  memory: tf.Tensor3D;
  /** [B, S], 1 = padding. */
  sourcePadMask: tf.Tensor2D;
}

/** Incremental decoding state; owns its tensors (free with disposeDecoderState). */
export interface DecoderState {
  memory: tf.Tensor3D;
  sourcePadMask: tf.Tensor2D;
  caches: DecoderBlockCache[];
  /** Tokens fed so far (= position of the next one). */
  step: number;
  rows: number;
}

/** Layer names in the functional graph (the checkpoint format depends on them). */
const NAMES = {
  sourceInput: 'source_ids',
  targetInput: 'target_in_ids',
  sharedEmbedding: 'shared_embedding',
  sourceEmbedding: 'source_embedding',
  targetEmbedding: 'target_embedding',
  encoderNorm: 'encoder_norm',
  decoderNorm: 'decoder_norm',
  outputProjection: 'output_projection',
  encoderBlock: (i: number) => `encoder_${i}`,
  decoderBlock: (i: number) => `decoder_${i}`,
};

export class TransformerSeq2Seq implements DecoderStepModel<DecoderState> {
  readonly config: Seq2SeqConfig;
  readonly model: tf.LayersModel;
  readonly sourceEmbedding: TokenEmbedding;
  readonly targetEmbedding: TokenEmbedding;
  readonly encoderBlocks: TransformerEncoderBlock[];
  readonly decoderBlocks: TransformerDecoderBlock[];
  /** Final LayerNorms (pre-norm only). */
  readonly encoderNorm: tf.layers.Layer | null;
  readonly decoderNorm: tf.layers.Layer | null;
  /** Untied output projection, or null when tied to the target embedding. */
  readonly outputProjection: tf.layers.Layer | null;

  /**
   * Builds a freshly initialized model (initial weights drawn from the seeded global stream).
   * `model` is for `fromModel`: wrap already built layers instead of creating new ones.
   */
  constructor(config: Seq2SeqConfig | Seq2SeqOverrides, model?: tf.LayersModel) {
    const c = (this.config = resolveSeq2SeqConfig(config as Seq2SeqOverrides));
    if (model) {
      const get = <T extends tf.layers.Layer>(name: string, type: abstract new (...a: never[]) => T): T => {
        let layer: tf.layers.Layer;
        try {
          layer = model.getLayer(name);
        } catch {
          throw new UserError(`model: layer '${name}' is missing; the checkpoint does not match a Transformer with this config`);
        }
        if (!(layer instanceof type)) throw new UserError(`model: layer '${name}' has the wrong type (${layer.getClassName()})`);
        return layer as T;
      };
      this.model = model;
      this.sourceEmbedding = get(c.shareEmbeddings ? NAMES.sharedEmbedding : NAMES.sourceEmbedding, TokenEmbedding);
      this.targetEmbedding = c.shareEmbeddings ? this.sourceEmbedding : get(NAMES.targetEmbedding, TokenEmbedding);
      this.encoderBlocks = range(c.encoderLayers).map((i) => get(NAMES.encoderBlock(i), TransformerEncoderBlock));
      this.decoderBlocks = range(c.decoderLayers).map((i) => get(NAMES.decoderBlock(i), TransformerDecoderBlock));
      this.encoderNorm = c.normFirst ? get(NAMES.encoderNorm, tf.layers.Layer) : null;
      this.decoderNorm = c.normFirst ? get(NAMES.decoderNorm, tf.layers.Layer) : null;
      this.outputProjection = c.tieOutput ? null : get(NAMES.outputProjection, tf.layers.Layer);
      this.checkLoadedShapes();
      return;
    }

    const embeddingConfig = (name: string, vocabSize: number) => ({
      name,
      vocabSize,
      modelDim: c.modelDim,
      padId: c.padId,
      scaleEmbedding: c.scaleEmbedding,
      positions: c.positions,
      maxPositions: c.maxPositions,
      dropout: c.dropout,
      rankScale: c.embeddingRankScale,
      spectralInit: c.spectralInit.embedding,
    });
    if (c.shareEmbeddings) {
      this.sourceEmbedding = this.targetEmbedding = new TokenEmbedding(embeddingConfig(NAMES.sharedEmbedding, c.srcVocabSize));
    } else {
      this.sourceEmbedding = new TokenEmbedding(embeddingConfig(NAMES.sourceEmbedding, c.srcVocabSize));
      this.targetEmbedding = new TokenEmbedding(embeddingConfig(NAMES.targetEmbedding, c.tgtVocabSize));
    }
    const blockConfig: BlockConfig = {
      modelDim: c.modelDim,
      numHeads: c.numHeads,
      ffnDim: c.ffnDim,
      dropout: c.dropout,
      attentionDropout: c.attentionDropout,
      activationDropout: c.activationDropout,
      activation: c.activation,
      normFirst: c.normFirst,
      attentionRank: attentionRankOf(c),
      linearRankScale: c.linearRankScale,
      spectralInit: { qk: c.spectralInit.qk, ov: c.spectralInit.ov, linear: c.spectralInit.linear },
      attentionBias: c.attentionBias,
      padId: c.padId,
    };
    this.encoderBlocks = range(c.encoderLayers).map((i) => new TransformerEncoderBlock({ ...blockConfig, name: NAMES.encoderBlock(i) }));
    this.decoderBlocks = range(c.decoderLayers).map((i) => new TransformerDecoderBlock({ ...blockConfig, name: NAMES.decoderBlock(i) }));
    this.encoderNorm = c.normFirst ? layerNorm(NAMES.encoderNorm) : null;
    this.decoderNorm = c.normFirst ? layerNorm(NAMES.decoderNorm) : null;
    // fairseq's output projection has no bias.
    this.outputProjection = c.tieOutput ? null : projection(NAMES.outputProjection, c.tgtVocabSize, false, c.linearRankScale, c.spectralInit.linear);

    const sourceIds = tf.input({ shape: [null], dtype: 'int32', name: NAMES.sourceInput });
    const targetIds = tf.input({ shape: [null], dtype: 'int32', name: NAMES.targetInput });
    let x = this.sourceEmbedding.apply(sourceIds) as tf.SymbolicTensor;
    for (const block of this.encoderBlocks) x = block.apply([x, sourceIds]) as tf.SymbolicTensor;
    if (this.encoderNorm) x = this.encoderNorm.apply(x) as tf.SymbolicTensor;
    let y = this.targetEmbedding.apply(targetIds) as tf.SymbolicTensor;
    for (const block of this.decoderBlocks) y = block.apply([y, x, sourceIds]) as tf.SymbolicTensor;
    if (this.decoderNorm) y = this.decoderNorm.apply(y) as tf.SymbolicTensor;
    const logits = (this.outputProjection ?? this.targetEmbedding).apply(y) as tf.SymbolicTensor;
    this.model = tf.model({ inputs: [sourceIds, targetIds], outputs: logits, name: 'transformer_seq2seq' });
  }

  /** Wraps a loaded model (e.g. from tf.loadLayersModel); throws a UserError if it does not fit `config`. */
  static fromModel(model: tf.LayersModel, config: Seq2SeqConfig | Seq2SeqOverrides): TransformerSeq2Seq {
    return new TransformerSeq2Seq(config, model);
  }

  private checkLoadedShapes(): void {
    const c = this.config;
    const check = (what: string, got: number, want: number) => {
      if (got !== want) throw new UserError(`model: ${what} is ${got} in the checkpoint but ${want} in the config`);
    };
    check('source vocabulary size', this.sourceEmbedding.vocabSize, c.srcVocabSize);
    check('target vocabulary size', this.targetEmbedding.vocabSize, c.tgtVocabSize);
    check('modelDim', this.sourceEmbedding.modelDim, c.modelDim);
    check('maxPositions', this.targetEmbedding.maxPositions, c.maxPositions);
    for (const block of [...this.encoderBlocks, ...this.decoderBlocks]) {
      check(`${block.name} numHeads`, block.blockConfig.numHeads, c.numHeads);
      check(`${block.name} ffnDim`, block.blockConfig.ffnDim, c.ffnDim);
    }
  }

  get bosId(): number {
    return this.config.bosId;
  }
  get eosId(): number {
    return this.config.eosId;
  }
  get padId(): number {
    return this.config.padId;
  }
  get maxTargetPositions(): number {
    return this.config.maxPositions;
  }
  /** Variables the optimizer updates. */
  get trainableWeights(): tf.LayerVariable[] {
    return this.model.trainableWeights;
  }

  /** Teacher-forced logits [B, T, V] for source ids [B, S] and decoder inputs [B, T] (BOS-shifted targets). */
  forward(sourceIds: tf.Tensor2D, targetInIds: tf.Tensor2D, training: boolean): tf.Tensor3D {
    this.checkIds(sourceIds, 'sourceIds');
    this.checkIds(targetInIds, 'targetInIds');
    if (sourceIds.shape[0] !== targetInIds.shape[0]) {
      throw new UserError(`forward: sourceIds has batch ${sourceIds.shape[0]} but targetInIds has ${targetInIds.shape[0]}`);
    }
    return this.model.apply([sourceIds, targetInIds], { training }) as tf.Tensor3D;
  }

  private checkIds(ids: tf.Tensor, what: string): void {
    if (ids.rank !== 2 || ids.dtype !== 'int32') throw new UserError(`${what} must be an int32 [B, T] tensor; got ${ids.dtype} [${ids.shape}]`);
    const length = ids.shape[1] ?? 0;
    if (length > this.config.maxPositions) {
      throw new UserError(`${what} has ${length} positions, more than maxPositions ${this.config.maxPositions}`);
    }
  }

  /** Encoder output for source ids [B, S] (inference mode). The caller disposes it. */
  encode(sourceIds: tf.Tensor2D): EncoderOutput {
    this.checkIds(sourceIds, 'sourceIds');
    return tf.tidy(() => {
      const sourcePadMask = paddingMask(sourceIds, this.config.padId);
      let x = this.sourceEmbedding.embed(sourceIds, 0, false);
      for (const block of this.encoderBlocks) x = block.forward(x, sourcePadMask, false);
      if (this.encoderNorm) x = this.encoderNorm.apply(x) as tf.Tensor3D;
      return { memory: x, sourcePadMask };
    });
  }

  /** A fresh incremental state over `encoderOutput` (copied: the caller still owns and disposes it). */
  createDecoderState(encoderOutput: EncoderOutput): DecoderState {
    return {
      memory: tf.keep(encoderOutput.memory.clone()),
      sourcePadMask: tf.keep(encoderOutput.sourcePadMask.clone()),
      caches: this.decoderBlocks.map(() => ({ self: createAttentionCache(false), cross: createAttentionCache(true) })),
      step: 0,
      rows: encoderOutput.memory.shape[0],
    };
  }

  /** Pads `sourceIds` (checked against the vocabulary), encodes once, repeats each row `copies` times. */
  startDecoding(sourceIds: number[][], copies: number): DecoderState {
    const c = this.config;
    if (sourceIds.length === 0) throw new UserError('decode: no source sentences given');
    const maxLen = Math.max(...sourceIds.map((s) => s.length));
    if (maxLen > c.maxPositions) throw new UserError(`decode: a source sentence has ${maxLen} tokens, more than maxPositions ${c.maxPositions}`);
    const flat = new Int32Array(sourceIds.length * maxLen).fill(c.padId);
    sourceIds.forEach((sentence, i) => {
      if (sentence.length === 0) throw new UserError(`decode: source sentence ${i} is empty`);
      sentence.forEach((id, j) => {
        if (!Number.isInteger(id) || id < 0 || id >= c.srcVocabSize) {
          throw new UserError(`decode: source sentence ${i} has token id ${id} outside the vocabulary [0, ${c.srcVocabSize})`);
        }
        flat[i * maxLen + j] = id;
      });
    });
    const ids = tf.tensor2d(flat, [sourceIds.length, maxLen], 'int32');
    const encoded = this.encode(ids);
    ids.dispose();
    const state = this.createDecoderState(encoded);
    tf.dispose([encoded.memory, encoded.sourcePadMask]);
    if (copies > 1) {
      const rows = new Int32Array(sourceIds.length * copies);
      for (let i = 0; i < rows.length; i++) rows[i] = Math.floor(i / copies);
      this.reorderDecoderState(state, rows, false);
    }
    return state;
  }

  /** One decoding step: `tokens` [rows] at position state.step → next-token log-probs [rows, V]. */
  decodeStep(state: DecoderState, tokens: Int32Array | number[]): tf.Tensor2D {
    if (tokens.length !== state.rows) throw new UserError(`decodeStep: got ${tokens.length} tokens for ${state.rows} rows`);
    const V = this.config.tgtVocabSize;
    const logProbs = tf.tidy(() => {
      const ids = tf.tensor2d(Int32Array.from(tokens), [state.rows, 1], 'int32');
      let y = this.targetEmbedding.embed(ids, state.step, false);
      this.decoderBlocks.forEach((block, i) => {
        y = block.forward(y, state.memory, state.sourcePadMask, false, state.caches[i]);
      });
      if (this.decoderNorm) y = this.decoderNorm.apply(y) as tf.Tensor3D;
      const logits = this.outputProjection ? (this.outputProjection.apply(y) as tf.Tensor3D) : this.targetEmbedding.project(y);
      return tf.logSoftmax(tf.reshape(logits, [state.rows, V]) as tf.Tensor2D);
    });
    state.step += 1;
    return logProbs;
  }

  /** Keeps rows `rows` of every cache (one gather per cached tensor); see DecoderStepModel. */
  reorderDecoderState(state: DecoderState, rows: Int32Array | number[], sameSource = false): void {
    const indices = tf.tensor1d(Int32Array.from(rows), 'int32');
    for (const cache of state.caches) {
      reorderAttentionCache(cache.self, indices);
      if (!sameSource) reorderAttentionCache(cache.cross, indices);
    }
    if (!sameSource) {
      const { memory, sourcePadMask } = state;
      state.memory = tf.keep(tf.gather(memory, indices));
      state.sourcePadMask = tf.keep(tf.gather(sourcePadMask, indices));
      tf.dispose([memory, sourcePadMask]);
    }
    indices.dispose();
    state.rows = rows.length;
  }

  disposeDecoderState(state: DecoderState): void {
    for (const cache of state.caches) {
      disposeAttentionCache(cache.self);
      disposeAttentionCache(cache.cross);
    }
    tf.dispose([state.memory, state.sourcePadMask]);
  }

  /**
   * Every factor pair, labeled by kind and named by position: `encoder/0/self_attn/qk`,
   * `decoder/1/cross_attn/ov`, `decoder/0/ffn_in`, `embedding/shared|source|target`, `output_projection`.
   */
  factorPairs(): FactorPair[] {
    const pairs: FactorPair[] = [];
    if (this.config.shareEmbeddings) pairs.push(...this.sourceEmbedding.factorPairs('embedding/shared'));
    else {
      pairs.push(...this.sourceEmbedding.factorPairs('embedding/source'));
      pairs.push(...this.targetEmbedding.factorPairs('embedding/target'));
    }
    this.encoderBlocks.forEach((b, i) => pairs.push(...b.factorPairs(`encoder/${i}`)));
    this.decoderBlocks.forEach((b, i) => pairs.push(...b.factorPairs(`decoder/${i}`)));
    const out = this.outputProjection as unknown as { factorPairs?: () => FactorPair[] } | null;
    for (const p of out?.factorPairs?.() ?? []) pairs.push({ ...p, name: NAMES.outputProjection });
    return pairs;
  }

  /** Number of scalar parameters (shared matrices counted once). */
  numParameters(): number {
    const seen = new Set<string>();
    let total = 0;
    for (const w of this.model.weights) {
      if (seen.has(w.name)) continue;
      seen.add(w.name);
      total += w.shape.reduce((a: number, b) => a * (b ?? 1), 1);
    }
    return total;
  }

  /** Frees every weight (the model is unusable afterwards). */
  dispose(): void {
    this.model.dispose();
    // tfjs counts one reference per application of a layer and the model releases one; the
    // target embedding (input + tied output, and the source side when shared) has more.
    for (const layer of new Set([this.sourceEmbedding, this.targetEmbedding])) {
      let refs = (layer as unknown as { _refCount: number | null })._refCount ?? 0;
      while (refs > 0) refs = layer.dispose().refCountAfterDispose;
    }
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
