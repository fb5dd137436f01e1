/**
 * FactorizedMultiHeadAttention: multi-head attention written as per-head factor products
 * (docs/ARCHITECTURE.md §1.2): logits_h = Xq Wq_h Wk_hᵀ Xkvᵀ / √r, out = Σ_h softmax(logits_h) Xkv Wv_h Wo_h.
 * At r = d/H it is exactly a dense MHA; the rank r is free (rank or rankScale).
 *
 * Errors: a bad option is the user's (UserError); a tensor of the wrong shape reaching the layer is
 * a broken contract of the calling code (InternalError), never a user mistake.
 *
 * Weights (in getWeights() order): queryFactor [H, d, r], keyFactor [H, d, r],
 * valueFactor [H, d, r], outputFactor [H, r, d]; with useBias also queryBias [H, r],
 * keyBias [H, r], valueBias [H, r], outputBias [d].
 *
 * Two entry points: `apply(query)` / `apply([query])` / `apply([query, memory])` in functional
 * models, and `attend(query, memory, { keyPaddingMask, causal, training, cache })` for direct use.
 *
 * Keras masks (keras-mask.ts): in a functional model the layer consumes the masks of its inputs,
 * e.g. from `tf.layers.embedding({ maskZero: true })`. The key/memory input's mask (the query's
 * for self-attention) masks padded keys, combined with the `causal` flag; the output carries the
 * query's mask (`computeMask`). Outputs at masked query positions are computed but meaningless,
 * as in Keras. For `[query, memory]`, tfjs' `predict`/`fit` hand a layer only its first input's
 * mask: the memory's mask is then read from the memory tensor (`kerasMask`), which tfjs sets on
 * outputs of masking layers (Embedding with maskZero, and our layers, this one included) but not
 * on those of tfjs layers that merely pass masks on (dense, add, dropout, …); put such a layer
 * before the memory and its mask is lost — mask the keys with `attend`'s `keyPaddingMask`, or a
 * TransformerDecoderBlock's source ids, instead.
 */
import * as tf from '@tensorflow/tfjs';
import type { LayerArgs } from '../layer-args.ts';
import { InternalError, UserError } from '../errors.ts';
import { seededDropout, globalRandom } from '../random.ts';
import { writeFactorPair } from '../factorized/dense.ts';
import { hostRandomUniform } from '../factorized/host-random.ts';
import type { FactorPair } from '../factorized/frobenius.ts';
import type { AttentionCache } from './cache.ts';
import { ATTENTION_MASK_VALUE, fusedAttention, hasFusedAttention } from '../backend/kernels/attention.ts';
import { asComputedMask, checkedInputMask, paddingFromMasks, takeMask } from './keras-mask.ts';

export interface FactorizedMultiHeadAttentionConfig {
  numHeads: number;
  /** Model width d; inferred from the query when the layer is built if absent. */
  modelDim?: number;
  /** Per-head rank r. Exclusive with rankScale. */
  rank?: number;
  /**
   * The name `rank` had in model.json files written before it was renamed (it called r the head
   * dim of the dense attention it replaces); read, never written.
   */
  headDim?: number;
  /** r = max(1, floor(rankScale · d / H)). Exclusive with rank. Default: r = d / H. */
  rankScale?: number;
  /** Biases on the per-head query/key/value projections and the output. Default true. */
  useBias?: boolean;
  /** Dropout rate on the attention probabilities (training only). Default 0. */
  dropout?: number;
  /** Causal self-attention (each position sees itself and the past only). Default false. */
  causal?: boolean;
  /**
   * Balance the initial factor pairs (QK, OV) by spectral initialization: both (true), neither
   * (false), or per pair. Default true.
   */
  spectralInit?: boolean | { qk: boolean; ov: boolean };
}

export interface AttendOptions {
  /** [B, S], 1 (or true) = padding: that key gets zero attention weight. */
  keyPaddingMask?: tf.Tensor2D;
  /** Overrides the layer's `causal` config for this call. */
  causal?: boolean;
  /** Enables attention dropout. Default false. */
  training?: boolean;
  /** Incremental-decoding cache (see cache.ts). Inference only: with a cache the query/key/value
   * weights are reused in a precomputed layout, so no gradient reaches them. */
  cache?: AttentionCache;
}

/** Added to masked logits: large enough to zero a softmax weight exactly in float32, finite so an
 * all-masked row gives a uniform distribution instead of NaN. The fused kernel adds the same value. */
const MASK_VALUE = ATTENTION_MASK_VALUE;

type Kwargs = Record<string, unknown>;

function positiveInt(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new UserError(`FactorizedMultiHeadAttention: option '${option}' must be a positive integer; got ${String(value)}`);
  }
  return value;
}

export class FactorizedMultiHeadAttention extends tf.layers.Layer {
  static className = 'FactorizedMultiHeadAttention';

  readonly numHeads: number;
  /** The configured per-head rank, if given as a rank (see `rank` for the resolved one). */
  readonly rankOption: number | undefined;
  readonly rankScale: number | undefined;
  readonly useBias: boolean;
  readonly dropout: number;
  readonly causal: boolean;
  readonly spectralInit: boolean | { qk: boolean; ov: boolean };
  /** Model width d (known after build, or from the config). */
  modelDim: number | undefined;
  /** Per-head rank r (after build). */
  rank = 0;

  queryFactor!: tf.LayerVariable;
  keyFactor!: tf.LayerVariable;
  valueFactor!: tf.LayerVariable;
  outputFactor!: tf.LayerVariable;
  queryBias: tf.LayerVariable | null = null;
  keyBias: tf.LayerVariable | null = null;
  valueBias: tf.LayerVariable | null = null;
  outputBias: tf.LayerVariable | null = null;
  /**
   * Projection weights in their [d, H·r] matmul layout, reused across incremental-decoding steps
   * (where re-laying out the weights each step would cost as much as the step's own matmuls).
   * Keyed by the variables' data ids, which change whenever a weight is assigned.
   */
  private decodeLayouts: { ids: unknown[]; query: tf.Tensor2D; key: tf.Tensor2D; value: tf.Tensor2D; queryBias: tf.Tensor | null } | null =
    null;

  constructor(config: FactorizedMultiHeadAttentionConfig & LayerArgs) {
    super(config);
    if (config == null) throw new UserError('FactorizedMultiHeadAttention: a config with numHeads is required');
    this.numHeads = positiveInt(config.numHeads, 'numHeads');
    this.modelDim = config.modelDim == null ? undefined : positiveInt(config.modelDim, 'modelDim');
    const rank = config.rank ?? config.headDim;
    if (rank != null && config.rankScale != null) {
      throw new UserError(`FactorizedMultiHeadAttention: give either 'rank' or 'rankScale', not both`);
    }
    this.rankOption = rank == null ? undefined : positiveInt(rank, 'rank');
    if (config.rankScale != null && !(typeof config.rankScale === 'number' && config.rankScale > 0 && Number.isFinite(config.rankScale))) {
      throw new UserError(`FactorizedMultiHeadAttention: option 'rankScale' must be a number > 0; got ${String(config.rankScale)}`);
    }
    this.rankScale = config.rankScale ?? undefined;
    this.useBias = config.useBias ?? true;
    this.dropout = config.dropout ?? 0;
    if (!(this.dropout >= 0 && this.dropout < 1)) {
      throw new UserError(`FactorizedMultiHeadAttention: option 'dropout' must be in [0, 1); got ${String(config.dropout)}`);
    }
    this.causal = config.causal ?? false;
    this.spectralInit = config.spectralInit ?? true;
    this.supportsMasking = true;
    if (this.modelDim !== undefined) this.rank = this.rankFor(this.modelDim);
  }

  /** The per-head rank this config gives for model width d. */
  private rankFor(d: number): number {
    if (this.rankOption !== undefined) return this.rankOption;
    if (this.rankScale !== undefined) return Math.max(1, Math.floor((this.rankScale * d) / this.numHeads));
    if (d % this.numHeads !== 0) {
      throw new UserError(
        `FactorizedMultiHeadAttention: modelDim ${d} is not divisible by numHeads ${this.numHeads}; set 'rank' or 'rankScale'`,
      );
    }
    return d / this.numHeads;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shapes = (Array.isArray(inputShape[0]) ? inputShape : [inputShape]) as tf.Shape[];
    const d = shapes[0][shapes[0].length - 1];
    if (d == null) throw new InternalError(`FactorizedMultiHeadAttention '${this.name}': the query's last dimension must be known`);
    for (const s of shapes) {
      if (s.length !== 3 || s[s.length - 1] !== d) {
        throw new InternalError(`FactorizedMultiHeadAttention '${this.name}': inputs must be [B, T, ${d}]; got [${s}]`);
      }
    }
    if (this.modelDim !== undefined && this.modelDim !== d) {
      throw new InternalError(`FactorizedMultiHeadAttention '${this.name}': modelDim is ${this.modelDim} but the input has width ${d}`);
    }
    this.modelDim = d;
    const H = this.numHeads;
    const r = (this.rank = this.rankFor(d));
    // Scale so each head's products QK_h, OV_h have the entry variance a Glorot-uniform dense
    // [d, d] layer gives at r = d/H (dh/d² with dh = d/H): factor variance √(dh/r)/d.
    const dh = d / H;
    const limit = Math.sqrt((3 * Math.sqrt(dh / r)) / d);
    // Drawn on the host (= tf.initializers.randomUniform with these seeds, in this order) so that
    // spectral init needs no read-back, which GPU backends cannot do synchronously: host-random.ts.
    const draw = (shape: number[]) => hostRandomUniform(shape, -limit, limit, globalRandom.nextSeed());
    const wq = draw([H, d, r]);
    const wk = draw([H, d, r]);
    const wv = draw([H, d, r]);
    const wo = draw([H, r, d]);
    const zeros = () => tf.initializers.zeros();
    this.queryFactor = this.addWeight('queryFactor', [H, d, r], 'float32', zeros());
    this.keyFactor = this.addWeight('keyFactor', [H, d, r], 'float32', zeros());
    this.valueFactor = this.addWeight('valueFactor', [H, d, r], 'float32', zeros());
    this.outputFactor = this.addWeight('outputFactor', [H, r, d], 'float32', zeros());
    if (this.useBias) {
      this.queryBias = this.addWeight('queryBias', [H, r], 'float32', tf.initializers.zeros());
      this.keyBias = this.addWeight('keyBias', [H, r], 'float32', tf.initializers.zeros());
      this.valueBias = this.addWeight('valueBias', [H, r], 'float32', tf.initializers.zeros());
      this.outputBias = this.addWeight('outputBias', [d], 'float32', tf.initializers.zeros());
    }
    // Spectral initialization of (Wq, Wk) and (Wv, Woᵀ): same products, balanced factors.
    const si = typeof this.spectralInit === 'boolean' ? { qk: this.spectralInit, ov: this.spectralInit } : this.spectralInit;
    writeFactorPair(this.queryFactor, this.keyFactor, wq, wk, { heads: H, m: d, n: d, r, vTransposed: false }, si.qk);
    writeFactorPair(this.valueFactor, this.outputFactor, wv, wo, { heads: H, m: d, n: d, r, vTransposed: true }, si.ov);
    this.built = true;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const shapes = (Array.isArray(inputShape[0]) ? inputShape : [inputShape]) as tf.Shape[];
    const q = shapes[0];
    return [...q.slice(0, -1), this.modelDim ?? q[q.length - 1]];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    if (list.length < 1 || list.length > 2) {
      throw new InternalError(`FactorizedMultiHeadAttention '${this.name}': expects [query] or [query, memory]; got ${list.length} inputs`);
    }
    const training = kwargs?.training === true;
    const where = `FactorizedMultiHeadAttention '${this.name}'`;
    const masks = takeMask(kwargs);
    return tf.tidy(() => {
      // Keys come from the memory when there is one, else from the query: so does their mask.
      const keyMask = checkedInputMask(where, list, masks, list.length - 1);
      const keyPaddingMask = paddingFromMasks([keyMask]) ?? undefined;
      return this.attend(list[0] as tf.Tensor3D, (list[1] as tf.Tensor3D | undefined) ?? null, { training, keyPaddingMask });
    });
  }

  /** Output position t is query position t: the output has the query's mask. */
  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return asComputedMask(checkedInputMask(`FactorizedMultiHeadAttention '${this.name}'`, inputs, mask, 0));
  }

  /** A factor [H, d, r] laid out as [d, H·r] (one matmul projects all heads), times `scale`. */
  private headLayout(factor: tf.LayerVariable, scale = 1): tf.Tensor2D {
    const [H, d, r] = factor.shape as number[];
    const w = tf.reshape(tf.transpose(factor.read(), [1, 0, 2]), [d, H * r]) as tf.Tensor2D;
    return scale === 1 ? w : tf.mul(w, scale);
  }

  private biasLayout(bias: tf.LayerVariable | null, scale = 1): tf.Tensor | null {
    if (!bias) return null;
    const flat = tf.reshape(bias.read(), [this.numHeads * this.rank]);
    return scale === 1 ? flat : tf.mul(flat, scale);
  }

  /** [B, T, d] → [B, H, T, r] given the weight in its [d, H·r] layout. */
  private projectHeads(x: tf.Tensor3D, w: tf.Tensor2D, bias: tf.Tensor | null): tf.Tensor4D {
    const [B, T, d] = x.shape;
    let y: tf.Tensor2D = tf.matMul(tf.reshape(x, [B * T, d]), w);
    if (bias) y = tf.add(y, bias);
    return tf.transpose(tf.reshape(y, [B, T, this.numHeads, this.rank]), [0, 2, 1, 3]);
  }

  /** The projection layouts for incremental decoding, rebuilt only after a weight changed. */
  private layoutsForDecoding(): NonNullable<FactorizedMultiHeadAttention['decodeLayouts']> {
    const ids = [this.queryFactor, this.keyFactor, this.valueFactor, this.queryBias].map((v) => v?.read().dataId ?? null);
    const cached = this.decodeLayouts;
    if (cached && cached.ids.every((id, i) => id === ids[i])) return cached;
    this.disposeDecodeLayouts();
    const scale = 1 / Math.sqrt(this.rank);
    // Kept outside any caller's tf.tidy: they live until the weights change or the layer is disposed.
    const keep = <T extends tf.Tensor>(make: () => T): T => tf.keep(tf.tidy(make));
    const queryBias = this.queryBias;
    const layouts = {
      ids,
      query: keep(() => this.headLayout(this.queryFactor, scale)),
      key: keep(() => this.headLayout(this.keyFactor)),
      value: keep(() => this.headLayout(this.valueFactor)),
      queryBias: queryBias ? keep(() => this.biasLayout(queryBias, scale) as tf.Tensor) : null,
    };
    this.decodeLayouts = layouts;
    return layouts;
  }

  private disposeDecodeLayouts(): void {
    const c = this.decodeLayouts;
    if (c) tf.dispose([c.query, c.key, c.value, ...(c.queryBias ? [c.queryBias] : [])]);
    this.decodeLayouts = null;
  }

  private checkInputs(query: tf.Tensor, memory: tf.Tensor | null, opts: AttendOptions): void {
    const where = `FactorizedMultiHeadAttention '${this.name}'`;
    if (query.rank !== 3) throw new InternalError(`${where}: query must be [B, T, d]; got shape [${query.shape}]`);
    const d = this.modelDim ?? query.shape[2];
    if (query.shape[2] !== d) throw new InternalError(`${where}: query width ${query.shape[2]} != modelDim ${d}`);
    if (memory) {
      if (memory.rank !== 3 || memory.shape[0] !== query.shape[0] || memory.shape[2] !== d) {
        throw new InternalError(`${where}: memory must be [${query.shape[0]}, S, ${d}]; got shape [${memory.shape}]`);
      }
    }
    if (opts.cache?.static && !opts.cache.key && !memory) {
      throw new InternalError(`${where}: the first call with an empty static (cross-attention) cache needs the memory`);
    }
  }

  /**
   * Attention of `query [B, T, d]` over `memory [B, S, d]` (null = self-attention) → `[B, T, d]`.
   * With a cache, keys/values come from (and are appended to) the cache; causal masking then
   * lets query row i see key positions ≤ i + (S − T), i.e. the past plus itself.
   */
  attend(query: tf.Tensor3D, memory: tf.Tensor3D | null, opts: AttendOptions = {}): tf.Tensor3D {
    this.checkInputs(query, memory, opts);
    if (!this.built) this.build(memory ? [query.shape, memory.shape] : [query.shape]);
    return tf.tidy(() => {
      const [B, T, d] = query.shape;
      const H = this.numHeads;
      const r = this.rank;
      // With a cache we are decoding (never differentiated): reuse the laid-out weights. Otherwise
      // lay them out per call, so gradients flow to the variables.
      const layouts = opts.cache ? this.layoutsForDecoding() : null;
      // 1/√r folded into the (small) query weight instead of the [B, H, T, S] logits.
      const scale = 1 / Math.sqrt(r);
      const q = this.projectHeads(
        query,
        layouts ? layouts.query : this.headLayout(this.queryFactor, scale),
        layouts ? layouts.queryBias : this.biasLayout(this.queryBias, scale),
      );
      const { key, value } = this.keysAndValues(query, memory, opts.cache, layouts);
      const context = this.weightedValues(q, key as tf.Tensor4D, value as tf.Tensor4D, opts); // [B, H, T, r]
      const merged = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [B * T, H * r]);
      let out: tf.Tensor2D = tf.matMul(merged, tf.reshape(this.outputFactor.read(), [H * r, d]));
      if (this.outputBias) out = tf.add(out, this.outputBias.read());
      return tf.reshape(out, [B, T, d]);
    });
  }

  private keysAndValues(
    query: tf.Tensor3D,
    memory: tf.Tensor3D | null,
    cache: AttentionCache | undefined,
    layouts: { key: tf.Tensor2D; value: tf.Tensor2D } | null,
  ): { key: tf.Tensor; value: tf.Tensor } {
    if (cache?.static && cache.key && cache.value) {
      if (cache.key.shape[0] !== query.shape[0]) {
        throw new InternalError(`FactorizedMultiHeadAttention '${this.name}': cache batch ${cache.key.shape[0]} != query batch ${query.shape[0]}`);
      }
      return { key: cache.key, value: cache.value };
    }
    const source = memory ?? query;
    let key: tf.Tensor = this.projectHeads(source, layouts ? layouts.key : this.headLayout(this.keyFactor), this.biasLayout(this.keyBias));
    let value: tf.Tensor = this.projectHeads(source, layouts ? layouts.value : this.headLayout(this.valueFactor), this.biasLayout(this.valueBias));
    if (!cache) return { key, value };
    if (!cache.static && cache.key && cache.value) {
      if (cache.key.shape[0] !== key.shape[0]) {
        throw new InternalError(`FactorizedMultiHeadAttention '${this.name}': cache batch ${cache.key.shape[0]} != input batch ${key.shape[0]}`);
      }
      const oldKey = cache.key;
      const oldValue = cache.value;
      key = tf.concat([oldKey, key], 2);
      value = tf.concat([oldValue, value], 2);
      oldKey.dispose();
      oldValue.dispose();
    }
    cache.key = tf.keep(key);
    cache.value = tf.keep(value);
    return { key, value };
  }

  /**
   * softmax(q·kᵀ + M) (with attention dropout in training) · v, per head: q [B, H, T, r] (already
   * scaled), k and v [B, H, S, r] → [B, H, T, r]. On an engine with the fused kernel
   * (backend/kernels/attention.ts: wasm with the native addon, cpu) one kernel that keeps no
   * [B, H, T, S] tensor for the backward pass; elsewhere (tensorflow, webgpu, wasm without the
   * addon) the ops below. Both draw one dropout seed from the process-wide stream when they drop,
   * so fusing leaves every other random draw of a run where it was.
   */
  private weightedValues(q: tf.Tensor4D, key: tf.Tensor4D, value: tf.Tensor4D, opts: AttendOptions): tf.Tensor4D {
    const [B, , T] = q.shape;
    const S = key.shape[2];
    const padding = this.paddingMask(B, S, opts);
    const causal = opts.causal ?? this.causal;
    const dropping = opts.training === true && this.dropout > 0;
    if (hasFusedAttention()) {
      return fusedAttention(q, key, value, {
        keyPadding: padding ?? undefined,
        causal,
        dropout: dropping ? this.dropout : 0,
        seed: dropping ? globalRandom.nextSeed() : 0,
      });
    }
    let logits: tf.Tensor4D = tf.matMul(q, key, false, true); // [B, H, T, S]
    const mask = this.additiveMask(B, T, S, padding, causal);
    if (mask) logits = tf.add(logits, mask);
    const probs = seededDropout(tf.softmax(logits), this.dropout, opts.training === true);
    return tf.matMul(probs, value);
  }

  /** The key-padding mask as float32 [B, S] (1 = pad), or null when there is none. */
  private paddingMask(B: number, S: number, opts: AttendOptions): tf.Tensor2D | null {
    const m = opts.keyPaddingMask;
    if (!m) return null;
    if (m.rank !== 2 || m.shape[0] !== B || m.shape[1] !== S) {
      throw new InternalError(`FactorizedMultiHeadAttention '${this.name}': keyPaddingMask must be [${B}, ${S}] (1 = pad); got [${m.shape}]`);
    }
    return tf.cast(m, 'float32');
  }

  /** Key-padding and causal masks as one additive tensor broadcastable to [B, H, T, S], or null. */
  private additiveMask(B: number, T: number, S: number, padding: tf.Tensor2D | null, causal: boolean): tf.Tensor | null {
    let mask: tf.Tensor | null = null;
    if (padding) mask = tf.mul(tf.reshape(padding, [B, 1, 1, S]), MASK_VALUE);
    if (causal) {
      const rows = tf.reshape(tf.range(S - T, S, 1, 'int32'), [T, 1]);
      const cols = tf.reshape(tf.range(0, S, 1, 'int32'), [1, S]);
      const future = tf.mul(tf.cast(tf.greater(cols, rows), 'float32'), MASK_VALUE).reshape([1, 1, T, S]);
      mask = mask ? tf.minimum(mask, future) : future;
    }
    return mask;
  }

  /** The layer's factor pairs for Frobenius decay: QK = (Wq, Wk), OV = (Wv, Woᵀ). */
  factorPairs(): FactorPair[] {
    if (!this.built) return [];
    return [
      { name: `${this.name}/qk`, kind: 'qk', u: this.queryFactor, v: this.keyFactor, vTransposed: false },
      { name: `${this.name}/ov`, kind: 'ov', u: this.valueFactor, v: this.outputFactor, vTransposed: true },
    ];
  }

  /** tfjs only lets layers that went through apply() be disposed; attend() users may dispose too. */
  override dispose(): ReturnType<tf.layers.Layer['dispose']> {
    if (this._refCount === null) this._refCount = 1;
    const result = super.dispose();
    if (result.refCountAfterDispose === 0) this.disposeDecodeLayouts();
    return result;
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      numHeads: this.numHeads,
      modelDim: this.modelDim ?? null,
      rank: this.rankOption ?? null,
      rankScale: this.rankScale ?? null,
      useBias: this.useBias,
      dropout: this.dropout,
      causal: this.causal,
      spectralInit: this.spectralInit,
    };
    return { ...super.getConfig(), ...config };
  }
}

tf.serialization.registerClass(FactorizedMultiHeadAttention);
