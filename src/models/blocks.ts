/**
 * Transformer encoder and decoder blocks as serializable tfjs layers that own their sublayers:
 * FactorizedMultiHeadAttention (self, causal self, cross), LayerNorms and a feed-forward network
 * (dense or FactorizedDense). Pre- or post-norm, relu or gelu, residual/attention/activation
 * dropout from the seeded stream. The encoder block is reused by the BERT encoder.
 *
 * Functional inputs carry ids, not masks: the key-padding mask is derived inside the block from
 * the ids (`ids == padId`), so a saved graph needs no mask tensors. Keras masks on the inputs (a
 * user's `tf.layers.embedding({ maskZero: true })`) are honoured too, combined with the ids' mask:
 * see attention/keras-mask.ts for how tfjs delivers them.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerArgs } from '../layer-args.ts';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { seededDropout } from '../random.ts';
import { FactorizedMultiHeadAttention } from '../attention/index.ts';
import type { AttentionCache } from '../attention/index.ts';
import { asComputedMask, checkedInputMask, paddingFromMasks, takeMask } from '../attention/keras-mask.ts';
import type { FactorPair } from '../factorized/index.ts';
import type { FactorSpectralInit } from '../factorized/spectral.ts';
import { activate, buildSublayer, layerNorm, paddingMask, projection, sublayerWeights } from './sublayers.ts';
import type { LayerNorm } from './layer-norm.ts';
import { attentionRankOf, transformerFields } from './architecture.ts';
import { nonNegativeInt, spectralInitChoiceSchema, validateConfig } from './schema.ts';

type Kwargs = Record<string, unknown>;

/** A block's residual stream, `base + delta`, with the add left for the next LayerNorm to fuse (delta null: none pending). */
interface ResidualStream {
  base: tf.Tensor3D;
  delta: tf.Tensor3D | null;
}

/** The block's settings: the Transformer fields of architecture.ts, with the block's defaults. */
const blockConfigSchema = z.object({
  modelDim: transformerFields.modelDim,
  numHeads: transformerFields.numHeads,
  ffnDim: transformerFields.ffnDim,
  dropout: transformerFields.dropout.default(0),
  attentionDropout: transformerFields.attentionDropout.default(0),
  activationDropout: transformerFields.activationDropout.default(0),
  activation: transformerFields.activation.default('relu'),
  normFirst: transformerFields.normFirst.default(false),
  attentionRank: transformerFields.attentionRank.default(null),
  attentionRankScale: transformerFields.attentionRankScale.nullable().default(null),
  linearRankScale: transformerFields.linearRankScale.default(null),
  // Not strict: a model's full per-type choice may be passed; a block uses its three pair types.
  spectralInit: z.object(spectralInitChoiceSchema.shape).partial().default({}),
  attentionBias: transformerFields.attentionBias.default(true),
  padId: nonNegativeInt.default(0),
});

/**
 * A block's settings (the Transformer fields of architecture.ts; defaults: no dropout, relu,
 * post-norm, full-rank attention, dense FFN, spectral init on, attention biases, pad id 0).
 * `attentionRankScale` is what model.json files written before `attentionRank` existed hold;
 * new code passes the rank.
 */
export type BlockConfig = z.input<typeof blockConfigSchema>;

type ResolvedBlockConfig = Omit<z.output<typeof blockConfigSchema>, 'attentionRank' | 'attentionRankScale' | 'spectralInit'> & {
  /** Per-head attention rank r. */
  attentionRank: number;
  spectralInit: { qk: boolean; ov: boolean; linear: FactorSpectralInit };
};

function resolveBlockConfig(c: BlockConfig, where: string): ResolvedBlockConfig {
  if (c == null) throw new UserError(`${where}: a config is required`);
  const { attentionRank, attentionRankScale, spectralInit, ...rest } = validateConfig(blockConfigSchema, c, where);
  return {
    ...rest,
    attentionRank: attentionRankOf({ ...rest, attentionRank, attentionRankScale: attentionRankScale ?? 1 }, where),
    spectralInit: { qk: spectralInit.qk ?? true, ov: spectralInit.ov ?? true, linear: spectralInit.linear ?? true },
  };
}

function makeAttention(name: string, c: ResolvedBlockConfig, causal: boolean): FactorizedMultiHeadAttention {
  return new FactorizedMultiHeadAttention({
    name,
    numHeads: c.numHeads,
    modelDim: c.modelDim,
    rank: c.attentionRank,
    useBias: c.attentionBias,
    dropout: c.attentionDropout,
    causal,
    // Balanced at build, per pair, from host-drawn values (no read-back: see factorized/host-random.ts).
    spectralInit: { qk: c.spectralInit.qk, ov: c.spectralInit.ov },
  });
}

/** Shared parts of both blocks: config, FFN, residual wiring, weight bookkeeping. */
abstract class TransformerBlockBase extends tf.layers.Layer {
  readonly blockConfig: ResolvedBlockConfig;
  protected readonly ffnIn: tf.layers.Layer;
  protected readonly ffnOut: tf.layers.Layer;
  protected readonly ffnNorm: LayerNorm;

  constructor(config: BlockConfig & LayerArgs, where: string) {
    super(config);
    this.blockConfig = resolveBlockConfig(config, `${where} '${this.name}'`);
    const c = this.blockConfig;
    this.ffnIn = projection('ffn_in', c.ffnDim, true, c.linearRankScale, c.spectralInit.linear);
    this.ffnOut = projection('ffn_out', c.modelDim, true, c.linearRankScale, c.spectralInit.linear);
    this.ffnNorm = layerNorm('ffn_norm');
    this.supportsMasking = true;
  }

  /** Every sublayer but attention is per-position: the output has the first input's mask. */
  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return asComputedMask(checkedInputMask(`${this.getClassName()} '${this.name}'`, inputs, mask, 0));
  }

  /** The key-padding mask (1 = pad) of the given inputs' Keras masks and the pad ids in `ids`. */
  protected keyPadding(list: tf.Tensor[], masks: ReturnType<typeof takeMask>, indices: number[], ids: tf.Tensor | undefined): tf.Tensor2D | undefined {
    const where = `${this.getClassName()} '${this.name}'`;
    const real = indices.map((i) => checkedInputMask(where, list, masks, i));
    const fromIds = ids ? paddingMask(ids, this.blockConfig.padId) : null;
    const fromMasks = paddingFromMasks(real);
    if (fromIds && fromMasks) return tf.maximum(fromIds, fromMasks) as tf.Tensor2D;
    return fromIds ?? fromMasks ?? undefined;
  }

  /** The sublayers in weight order. */
  abstract sublayers(): tf.layers.Layer[];

  protected buildFeedForward(): void {
    const d = this.blockConfig.modelDim;
    buildSublayer(this.ffnIn, [[null, d]]);
    buildSublayer(this.ffnOut, [[null, this.blockConfig.ffnDim]]);
    buildSublayer(this.ffnNorm, [[null, d]]);
  }

  /**
   * One sublayer with its residual connection: x + dropout(sublayer(norm(x))) for pre-norm,
   * norm(x + dropout(sublayer(x))) for post-norm. The residual add is fused into a LayerNorm
   * (LayerNorm.normalize(x, residual), one kernel on wasm and cpu): post-norm adds inside its own
   * norm; pre-norm leaves its add pending in the stream (`delta`), and the next sublayer's norm
   * performs it and returns the sum. `finish` adds what is still pending at the block's end.
   */
  protected residual(x: ResidualStream, norm: LayerNorm, training: boolean, sublayer: (h: tf.Tensor3D) => tf.Tensor3D): ResidualStream {
    const c = this.blockConfig;
    if (c.normFirst) {
      const { y: h, sum } = norm.normalize(x.base, x.delta);
      return { base: (sum ?? x.base) as tf.Tensor3D, delta: seededDropout(sublayer(h as tf.Tensor3D), c.dropout, training) as tf.Tensor3D };
    }
    const base = x.delta ? (tf.add(x.base, x.delta) as tf.Tensor3D) : x.base;
    const update = seededDropout(sublayer(base), c.dropout, training);
    return { base: norm.normalize(base, update).y as tf.Tensor3D, delta: null };
  }

  /** The stream's value: base + delta. */
  protected finish(x: ResidualStream): tf.Tensor3D {
    return x.delta ? (tf.add(x.base, x.delta) as tf.Tensor3D) : x.base;
  }

  protected feedForward(h: tf.Tensor3D, training: boolean): tf.Tensor3D {
    const c = this.blockConfig;
    const inner = seededDropout(activate(this.ffnIn.apply(h) as tf.Tensor, c.activation), c.activationDropout, training);
    return this.ffnOut.apply(inner) as tf.Tensor3D;
  }

  override get trainableWeights(): tf.LayerVariable[] {
    return this.trainable ? sublayerWeights(this.sublayers(), true) : [];
  }
  override set trainableWeights(_weights: tf.LayerVariable[]) {
    // Weights belong to the sublayers; tfjs never assigns this for a built layer.
  }
  override get nonTrainableWeights(): tf.LayerVariable[] {
    const subs = this.sublayers();
    return this.trainable ? sublayerWeights(subs, false) : [...sublayerWeights(subs, true), ...sublayerWeights(subs, false)];
  }
  override set nonTrainableWeights(_weights: tf.LayerVariable[]) {
    // See trainableWeights.
  }
  override get trainable(): boolean {
    return super.trainable;
  }
  override set trainable(value: boolean) {
    super.trainable = value;
    // Called by the base constructor before the sublayers exist.
    for (const layer of this.sublayersIfBuilt()) layer.trainable = value;
  }
  private sublayersIfBuilt(): tf.layers.Layer[] {
    return this.ffnNorm ? this.sublayers() : [];
  }

  /** FactorizedDense pairs of the FFN, if factorized. */
  protected ffnFactorPairs(prefix: string): FactorPair[] {
    const out: FactorPair[] = [];
    for (const [layer, label] of [[this.ffnIn, 'ffn_in'], [this.ffnOut, 'ffn_out']] as const) {
      const pairs = (layer as unknown as { factorPairs?: () => FactorPair[] }).factorPairs?.() ?? [];
      for (const p of pairs) out.push({ ...p, name: `${prefix}/${label}` });
    }
    return out;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const s = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    return s;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const c = this.blockConfig;
    return {
      ...super.getConfig(),
      modelDim: c.modelDim,
      numHeads: c.numHeads,
      ffnDim: c.ffnDim,
      dropout: c.dropout,
      attentionDropout: c.attentionDropout,
      activationDropout: c.activationDropout,
      activation: c.activation,
      normFirst: c.normFirst,
      attentionRank: c.attentionRank,
      linearRankScale: c.linearRankScale,
      spectralInit: { ...c.spectralInit },
      attentionBias: c.attentionBias,
      padId: c.padId,
    };
  }
}

/**
 * Encoder block: self-attention over the sequence (padding keys masked) + FFN.
 * Functional inputs: `[x [B, S, d], ids [B, S]]` (ids give the padding mask) or `[x]` (no padding).
 */
export class TransformerEncoderBlock extends TransformerBlockBase {
  static className = 'TransformerEncoderBlock';
  readonly selfAttention: FactorizedMultiHeadAttention;
  private readonly selfAttentionNorm: LayerNorm;

  constructor(config: BlockConfig & LayerArgs) {
    super(config, 'TransformerEncoderBlock');
    this.selfAttention = makeAttention('self_attn', this.blockConfig, false);
    this.selfAttentionNorm = layerNorm('self_attn_norm');
  }

  sublayers(): tf.layers.Layer[] {
    return [this.selfAttention, this.selfAttentionNorm, this.ffnIn, this.ffnOut, this.ffnNorm];
  }

  override build(_inputShape: tf.Shape | tf.Shape[]): void {
    const d = this.blockConfig.modelDim;
    buildSublayer(this.selfAttention, [[null, d]]);
    buildSublayer(this.selfAttentionNorm, [[null, d]]);
    this.buildFeedForward();
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const masks = takeMask(kwargs);
    return tf.tidy(() => {
      const mask = this.keyPadding(list, masks, list.length > 1 ? [0, 1] : [0], list[1]);
      return this.forward(list[0] as tf.Tensor3D, mask, kwargs?.training === true);
    });
  }

  /** x [B, S, d], keyPaddingMask [B, S] (1 = pad) → [B, S, d]. */
  forward(x: tf.Tensor3D, keyPaddingMask: tf.Tensor2D | undefined, training: boolean): tf.Tensor3D {
    if (!this.built) this.build([x.shape]);
    return tf.tidy(() => {
      const y = this.residual({ base: x, delta: null }, this.selfAttentionNorm, training, (h) =>
        this.selfAttention.attend(h, null, { keyPaddingMask, training }));
      return this.finish(this.residual(y, this.ffnNorm, training, (h) => this.feedForward(h, training)));
    });
  }

  /** Pairs named `<prefix>/self_attn/qk|ov`, `<prefix>/ffn_in|ffn_out`. */
  factorPairs(prefix = this.name): FactorPair[] {
    return [
      ...this.selfAttention.factorPairs().map((p) => ({ ...p, name: `${prefix}/self_attn/${p.kind}` })),
      ...this.ffnFactorPairs(prefix),
    ];
  }
}

/** Per-layer incremental state of a decoder block. */
export interface DecoderBlockCache {
  self: AttentionCache;
  cross: AttentionCache;
}

/**
 * Decoder block: causal self-attention, cross-attention over the encoder output (source padding
 * masked), FFN. Functional inputs: `[y [B, T, d], memory [B, S, d], sourceIds [B, S]]`.
 */
export class TransformerDecoderBlock extends TransformerBlockBase {
  static className = 'TransformerDecoderBlock';
  readonly selfAttention: FactorizedMultiHeadAttention;
  readonly crossAttention: FactorizedMultiHeadAttention;
  private readonly selfAttentionNorm: LayerNorm;
  private readonly crossAttentionNorm: LayerNorm;

  constructor(config: BlockConfig & LayerArgs) {
    super(config, 'TransformerDecoderBlock');
    this.selfAttention = makeAttention('self_attn', this.blockConfig, true);
    this.selfAttentionNorm = layerNorm('self_attn_norm');
    this.crossAttention = makeAttention('cross_attn', this.blockConfig, false);
    this.crossAttentionNorm = layerNorm('cross_attn_norm');
  }

  sublayers(): tf.layers.Layer[] {
    return [this.selfAttention, this.selfAttentionNorm, this.crossAttention, this.crossAttentionNorm, this.ffnIn, this.ffnOut, this.ffnNorm];
  }

  override build(_inputShape: tf.Shape | tf.Shape[]): void {
    const d = this.blockConfig.modelDim;
    buildSublayer(this.selfAttention, [[null, d]]);
    buildSublayer(this.selfAttentionNorm, [[null, d]]);
    buildSublayer(this.crossAttention, [[null, d], [null, d]]);
    buildSublayer(this.crossAttentionNorm, [[null, d]]);
    this.buildFeedForward();
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length < 2) throw new UserError(`TransformerDecoderBlock '${this.name}': expects [target, memory, sourceIds?]`);
    const masks = takeMask(kwargs);
    return tf.tidy(() => {
      const targetMask = this.keyPadding(list, masks, [0], undefined);
      const sourceMask = this.keyPadding(list, masks, list.length > 2 ? [1, 2] : [1], list[2]);
      return this.forward(list[0] as tf.Tensor3D, list[1] as tf.Tensor3D, sourceMask, kwargs?.training === true, undefined, targetMask);
    });
  }

  /**
   * Teacher-forced (no cache) or incremental (with cache: `y` holds only the new positions, the
   * cache the past; the cross-attention cache holds the projected memory after the first step).
   */
  forward(
    y: tf.Tensor3D,
    memory: tf.Tensor3D,
    sourcePadMask: tf.Tensor2D | undefined,
    training: boolean,
    cache?: DecoderBlockCache,
    targetPadMask?: tf.Tensor2D,
  ): tf.Tensor3D {
    if (!this.built) this.build([y.shape, memory.shape]);
    return tf.tidy(() => {
      let x = this.residual({ base: y, delta: null }, this.selfAttentionNorm, training, (h) =>
        this.selfAttention.attend(h, null, { causal: true, keyPaddingMask: targetPadMask, training, cache: cache?.self }));
      x = this.residual(x, this.crossAttentionNorm, training, (h) =>
        this.crossAttention.attend(h, memory, { keyPaddingMask: sourcePadMask, training, cache: cache?.cross }));
      return this.finish(this.residual(x, this.ffnNorm, training, (h) => this.feedForward(h, training)));
    });
  }

  /** Pairs named `<prefix>/self_attn/qk|ov`, `<prefix>/cross_attn/qk|ov`, `<prefix>/ffn_in|ffn_out`. */
  factorPairs(prefix = this.name): FactorPair[] {
    return [
      ...this.selfAttention.factorPairs().map((p) => ({ ...p, name: `${prefix}/self_attn/${p.kind}` })),
      ...this.crossAttention.factorPairs().map((p) => ({ ...p, name: `${prefix}/cross_attn/${p.kind}` })),
      ...this.ffnFactorPairs(prefix),
    ];
  }
}

tf.serialization.registerClass(TransformerEncoderBlock);
tf.serialization.registerClass(TransformerDecoderBlock);
