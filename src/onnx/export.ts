/**
 * ONNX graphs of a TransformerSeq2Seq for inference (issue 17: ONNX Runtime as a candidate
 * decoding engine), built in memory from the model's variables at load time: the tfjs checkpoint
 * stays the one source of truth, no .onnx file is written.
 *
 * Two graphs (opset 17), computing what `encode` and `decodeStep` compute (docs/ARCHITECTURE.md
 * §1.2, §1.5, §8):
 *
 * - encoder: `source_ids` int32 [B, S] → `memory` [B, S, d], `source_pad_mask` [B, S] (1 = pad),
 *   and per decoder layer i the cross-attention keys/values projected once from the memory,
 *   `cross_key_i`, `cross_value_i` [B, H, S, r] (what the tfjs static cross cache holds).
 * - decoder step: `tokens` int32 [N], `position` int32 [1] (= tokens fed so far), `source_pad_mask`
 *   [N, S], per layer `past_key_i`, `past_value_i` [N, H, t, r] (t may be 0) and `cross_key_i`,
 *   `cross_value_i` [N, H, S, r] → `log_probs` [N, V] and `present_key_i`, `present_value_i`
 *   [N, H, t + 1, r].
 *
 * Covered: factorized attention with any per-head rank r, with or without biases (the 1/√r folded
 * into the query weight and bias as the layer does), pre- and post-norm, relu or exact-erf gelu,
 * sinusoidal or learned positions, the √d embedding scale, shared/separate embeddings, tied or
 * untied output, dense or factorized (FactorizedDense) FFN and output projection, dense or
 * factorized token embeddings. Not covered (refused with a UserError): any other layer type in
 * those places, a dense/factorized projection with its own activation. Not exported: the
 * teacher-forced training graph (dropout, gradients) and the BERT/MLM model.
 */
import * as tf from '@tensorflow/tfjs';
import { InternalError, UserError } from '../errors.ts';
import { FactorizedDense } from '../factorized/index.ts';
import { FactorizedMultiHeadAttention } from '../attention/index.ts';
import { LayerNorm } from '../models/layer-norm.ts';
import { sinusoidalValues, TokenEmbedding } from '../models/embedding.ts';
import type { TransformerSeq2Seq } from '../models/seq2seq.ts';
import type { TransformerDecoderBlock, TransformerEncoderBlock } from '../models/blocks.ts';
import { GraphBuilder } from './graph.ts';
import { ATTENTION_MASK_VALUE } from '../backend/kernels/attention.ts';

/** Graph input/output names (shared by the exporter and the runtime). */
export const ONNX_NAMES = {
  sourceIds: 'source_ids',
  memory: 'memory',
  sourcePadMask: 'source_pad_mask',
  tokens: 'tokens',
  position: 'position',
  logProbs: 'log_probs',
  crossKey: (i: number) => `cross_key_${i}`,
  crossValue: (i: number) => `cross_value_${i}`,
  pastKey: (i: number) => `past_key_${i}`,
  pastValue: (i: number) => `past_value_${i}`,
  presentKey: (i: number) => `present_key_${i}`,
  presentValue: (i: number) => `present_value_${i}`,
};

/** The additive logit for a padded or future key: the tfjs layer's own (one declaration). */
const MASK_VALUE = ATTENTION_MASK_VALUE;

export interface Seq2SeqOnnxGraphs {
  /** Serialized ModelProto of the encoder graph. */
  encoder: Uint8Array;
  /** Serialized ModelProto of one decoder step. */
  decoderStep: Uint8Array;
  /** Shapes the runtime needs to lay out its caches. */
  dims: { decoderLayers: number; numHeads: number; rank: number; modelDim: number; vocabSize: number; maxPositions: number; positions: boolean };
}

/**
 * Builds both graphs from the model's current weights. The weights are read first, all at once
 * and asynchronously (`await data()`: no synchronous read on any engine); the graphs are then
 * built synchronously from that snapshot.
 */
export async function exportSeq2SeqToOnnx(model: TransformerSeq2Seq): Promise<Seq2SeqOnnxGraphs> {
  const c = model.config;
  const attention = model.decoderBlocks[0]?.crossAttention;
  if (!attention) throw new UserError('ONNX export: the model has no decoder layers');
  const variables = model.model.weights;
  const read = await Promise.all(variables.map((v) => v.read().data() as Promise<Float32Array>));
  weightSnapshot = new Map(variables.map((v, i) => [v, read[i]]));
  try {
    return {
      encoder: encoderGraph(model).encode(),
      decoderStep: decoderStepGraph(model).encode(),
      dims: {
        decoderLayers: model.decoderBlocks.length,
        numHeads: attention.numHeads,
        rank: attention.rank,
        modelDim: c.modelDim,
        vocabSize: c.tgtVocabSize,
        maxPositions: model.targetEmbedding.maxPositions,
        positions: model.targetEmbedding.positions !== 'none',
      },
    };
  } finally {
    weightSnapshot = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Weights

/** The values of every model variable while a (synchronous) graph build runs; see exportSeq2SeqToOnnx. */
let weightSnapshot: Map<tf.LayerVariable, Float32Array> | null = null;

function values(v: tf.LayerVariable | null, what: string): Float32Array {
  if (!v) throw new InternalError(`ONNX export: ${what} is missing`);
  const snapshot = weightSnapshot?.get(v);
  if (!snapshot) throw new InternalError(`ONNX export: ${what} (${v.name}) was not read before the graph build`);
  return snapshot;
}

/** factor [H, d, r] → [d, H·r] (the layer's headLayout), times `scale` in float32 as tf.mul does. */
function headLayout(factor: Float32Array, H: number, d: number, r: number, scale = 1): Float32Array {
  const out = new Float32Array(d * H * r);
  const s = Math.fround(scale);
  for (let h = 0; h < H; h++) {
    for (let k = 0; k < d; k++) {
      for (let j = 0; j < r; j++) {
        const w = factor[(h * d + k) * r + j];
        out[k * H * r + h * r + j] = scale === 1 ? w : Math.fround(w * s);
      }
    }
  }
  return out;
}

function scaled(data: Float32Array, scale: number): Float32Array {
  const s = Math.fround(scale);
  return data.map((x) => Math.fround(x * s));
}

/** [m, n] → [n, m]. */
function transposed(data: Float32Array, m: number, n: number): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[j * m + i] = data[i * n + j];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Building blocks (x is [rows, d] in the step graph, [B, S, d] in the encoder graph)

/** One attention layer's weights as initializers, in the layouts its attend() uses. */
interface AttentionInGraph {
  H: number;
  r: number;
  wq: string;
  bq: string | null;
  wk: string;
  bk: string | null;
  wv: string;
  bv: string | null;
  wo: string;
  bo: string | null;
}

type AttentionPart = 'query' | 'key' | 'value' | 'output';

/**
 * Adds the `parts` of `att` a graph uses (the encoder graph projects the cross-attention keys and
 * values, the step graph its queries and output); the others are left out ('' in the result).
 */
function attentionWeights(g: GraphBuilder, att: tf.layers.Layer, prefix: string, parts: AttentionPart[]): AttentionInGraph {
  if (!(att instanceof FactorizedMultiHeadAttention)) throw new UserError(`ONNX export: ${prefix} is a ${att.getClassName()}, not a FactorizedMultiHeadAttention`);
  const H = att.numHeads;
  const r = att.rank;
  const d = att.modelDim;
  if (!d || !r) throw new InternalError(`ONNX export: ${prefix} is not built`);
  const scale = 1 / Math.sqrt(r);
  const has = (part: AttentionPart) => parts.includes(part);
  const factor = (part: AttentionPart, v: tf.LayerVariable, name: string, s = 1) =>
    has(part) ? g.float(`${prefix}/${name}`, headLayout(values(v, name), H, d, r, s), [d, H * r]) : '';
  const bias = (part: AttentionPart, v: tf.LayerVariable | null, name: string, s = 1) =>
    has(part) && v ? g.float(`${prefix}/${name}`, scaled(values(v, name), s), [H * r]) : null;
  return {
    H,
    r,
    wq: factor('query', att.queryFactor, 'wq', scale),
    bq: bias('query', att.queryBias, 'bq', scale),
    wk: factor('key', att.keyFactor, 'wk'),
    bk: bias('key', att.keyBias, 'bk'),
    wv: factor('value', att.valueFactor, 'wv'),
    bv: bias('value', att.valueBias, 'bv'),
    // outputFactor [H, r, d] is already [H·r, d] row-major.
    wo: has('output') ? g.float(`${prefix}/wo`, values(att.outputFactor, 'outputFactor'), [H * r, d]) : '',
    bo: has('output') && att.outputBias ? g.float(`${prefix}/bo`, values(att.outputBias, 'outputBias'), [d]) : null,
  };
}

function affine(g: GraphBuilder, x: string, w: string, b: string | null): string {
  const y = g.node('MatMul', [x, w]);
  return b ? g.node('Add', [y, b]) : y;
}

/**
 * Projects x to per-head rows: step graph [N, d] → [N, H, 1, r]; encoder graph [B, S, d] →
 * [B, H, S, r].
 */
function projectHeads(g: GraphBuilder, x: string, w: string, b: string | null, a: AttentionInGraph, step: boolean): string {
  const y = affine(g, x, w, b);
  if (step) return g.node('Reshape', [y, g.ints(`shape_${y}`, [0, a.H, 1, a.r])]);
  const split = g.node('Reshape', [y, g.ints(`shape_${y}`, [0, 0, a.H, a.r])]);
  return g.node('Transpose', [split], { perm: [0, 2, 1, 3] });
}

/** softmax(q kᵀ + mask) v, merged over heads and projected: [N, d] (step) or [B, S, d]. */
function attendAndProject(g: GraphBuilder, q: string, k: string, v: string, mask: string | null, a: AttentionInGraph, step: boolean): string {
  let logits = g.node('MatMul', [q, g.node('Transpose', [k], { perm: [0, 1, 3, 2] })]);
  if (mask) logits = g.node('Add', [logits, mask]);
  const context = g.node('MatMul', [g.node('Softmax', [logits], { axis: -1 }), v]);
  const merged = step
    ? g.node('Reshape', [context, g.ints(`shape_${context}`, [0, a.H * a.r])]) // [N, H, 1, r] is [N, H·r] in memory
    : g.node('Reshape', [g.node('Transpose', [context], { perm: [0, 2, 1, 3] }), g.ints(`shape_${context}`, [0, 0, a.H * a.r])]);
  return affine(g, merged, a.wo, a.bo);
}

/** [rows, S] 1 = pad → additive [rows, 1, 1, S]. */
function additiveMask(g: GraphBuilder, padMask: string): string {
  const shaped = g.node('Reshape', [padMask, g.ints('mask_shape', [0, 1, 1, -1])]);
  return g.node('Mul', [shaped, g.scalar('mask_value', MASK_VALUE)]);
}

function layerNorm(g: GraphBuilder, x: string, layer: tf.layers.Layer, prefix: string): string {
  if (!(layer instanceof LayerNorm)) throw new UserError(`ONNX export: ${prefix} is a ${layer.getClassName()}, not a LayerNorm`);
  const d = layer.gamma.shape[0] as number;
  const gamma = g.float(`${prefix}/gamma`, values(layer.gamma, 'gamma'), [d]);
  const beta = g.float(`${prefix}/beta`, values(layer.beta, 'beta'), [d]);
  return g.node('LayerNormalization', [x, gamma, beta], { axis: -1, epsilon: { float: layer.epsilon } });
}

/** A position-wise projection: tf.layers.dense or FactorizedDense, without its own activation. */
function linear(g: GraphBuilder, x: string, layer: tf.layers.Layer, prefix: string): string {
  if (layer instanceof FactorizedDense) {
    if (layer.activation !== 'linear') throw new UserError(`ONNX export: ${prefix} has activation '${layer.activation}'; only linear projections are exported`);
    const [inDim, r] = layer.inputFactor.shape as number[];
    const u = g.float(`${prefix}/u`, values(layer.inputFactor, 'inputFactor'), [inDim, r]);
    const vs = g.float(`${prefix}/vs`, values(layer.outputFactor, 'outputFactor'), [r, layer.units]);
    const b = layer.bias ? g.float(`${prefix}/b`, values(layer.bias, 'bias'), [layer.units]) : null;
    return affine(g, g.node('MatMul', [x, u]), vs, b);
  }
  if (layer.getClassName() === 'Dense') {
    const config = layer.getConfig();
    if (config.activation !== 'linear') throw new UserError(`ONNX export: ${prefix} has activation '${String(config.activation)}'; only linear projections are exported`);
    const find = (suffix: string) => layer.weights.find((w) => w.originalName.endsWith(`/${suffix}`)) ?? null;
    const kernel = find('kernel');
    if (!kernel) throw new InternalError(`ONNX export: ${prefix} has no kernel`);
    const [inDim, units] = kernel.shape as number[];
    const bias = config.useBias ? find('bias') : null;
    const w = g.float(`${prefix}/kernel`, values(kernel, 'kernel'), [inDim, units]);
    return affine(g, x, w, bias ? g.float(`${prefix}/bias`, values(bias, 'bias'), [units]) : null);
  }
  throw new UserError(`ONNX export: ${prefix} is a ${layer.getClassName()}; only Dense and FactorizedDense projections are exported`);
}

function activation(g: GraphBuilder, x: string, kind: string): string {
  if (kind === 'relu') return g.node('Relu', [x]);
  if (kind === 'gelu') {
    // Exact GELU as applyActivation computes it: x · 0.5 · (1 + erf(x / √2)).
    const half = g.node('Mul', [x, g.scalar(`half_${x}`, 0.5)]);
    const erf = g.node('Erf', [g.node('Mul', [x, g.scalar(`rsqrt2_${x}`, Math.SQRT1_2)])]);
    return g.node('Mul', [half, g.node('Add', [g.scalar(`one_${x}`, 1), erf])]);
  }
  throw new UserError(`ONNX export: activation '${kind}' is not exported (relu, gelu)`);
}

/** x + sublayer(norm?(x)), then the norm for post-norm (TransformerBlockBase.residual, no dropout). */
function residual(g: GraphBuilder, x: string, norm: tf.layers.Layer, normFirst: boolean, prefix: string, sublayer: (h: string) => string): string {
  const h = normFirst ? layerNorm(g, x, norm, prefix) : x;
  const y = g.node('Add', [x, sublayer(h)]);
  return normFirst ? y : layerNorm(g, y, norm, prefix);
}

function feedForward(g: GraphBuilder, h: string, ffnIn: tf.layers.Layer, ffnOut: tf.layers.Layer, kind: string, prefix: string): string {
  return linear(g, activation(g, linear(g, h, ffnIn, `${prefix}/ffn_in`), kind), ffnOut, `${prefix}/ffn_out`);
}

/** The token vectors of `ids` (any shape) → [..., d], before scale and positions. */
function lookup(g: GraphBuilder, ids: string, emb: TokenEmbedding, prefix: string): string {
  const d = emb.modelDim;
  if (emb.embeddings) return g.node('Gather', [g.float(`${prefix}/table`, values(emb.embeddings, 'embeddings'), [emb.vocabSize, d]), ids]);
  const r = emb.rank;
  const u = g.float(`${prefix}/u`, values(emb.embeddingU, 'embeddingU'), [emb.vocabSize, r]);
  const vt = g.float(`${prefix}/vt`, transposed(values(emb.embeddingV, 'embeddingV'), d, r), [r, d]);
  return g.node('MatMul', [g.node('Gather', [u, ids]), vt]);
}

/** The position table [maxPositions, d], or null without positions. */
function positionTable(g: GraphBuilder, emb: TokenEmbedding, prefix: string): string | null {
  if (emb.positions === 'none') return null;
  const d = emb.modelDim;
  if (emb.positions === 'learned') return g.float(`${prefix}/positions`, values(emb.positionEmbeddings, 'positionEmbeddings'), [emb.maxPositions, d]);
  return g.float(`${prefix}/positions`, sinusoidalValues(emb.maxPositions, d), [emb.maxPositions, d]);
}

function scaleEmbedding(g: GraphBuilder, x: string, emb: TokenEmbedding, prefix: string): string {
  return emb.scaleEmbedding ? g.node('Mul', [x, g.scalar(`${prefix}/scale`, Math.sqrt(emb.modelDim))]) : x;
}

function checkEmbedding(emb: TokenEmbedding, what: string): void {
  if (!(emb instanceof TokenEmbedding) || !emb.built) throw new UserError(`ONNX export: the ${what} embedding is not a built TokenEmbedding`);
}

// ---------------------------------------------------------------------------------------------
// The two graphs

function encoderGraph(model: TransformerSeq2Seq): GraphBuilder {
  const c = model.config;
  const g = new GraphBuilder('encoder');
  const ids = g.input(ONNX_NAMES.sourceIds, 'int32', ['batch', 'source_len']);
  const padMask = g.node('Cast', [g.node('Equal', [ids, g.int32Scalar('pad_id', c.padId)])], { to: 1 });
  const mask = additiveMask(g, padMask);

  const emb = model.sourceEmbedding;
  checkEmbedding(emb, 'source');
  let x = scaleEmbedding(g, lookup(g, ids, emb, 'source_embedding'), emb, 'source_embedding');
  const table = positionTable(g, emb, 'source_embedding');
  if (table) {
    const length = g.node('Shape', [ids], { start: 1, end: 2 });
    const rows = g.node('Slice', [table, g.ints('zero', [0]), length, g.ints('axis0', [0])]);
    x = g.node('Add', [x, rows]);
  }

  model.encoderBlocks.forEach((block: TransformerEncoderBlock, i) => {
    const prefix = `encoder_${i}`;
    const [selfAttention, selfNorm, ffnIn, ffnOut, ffnNorm] = block.sublayers();
    const a = attentionWeights(g, selfAttention, `${prefix}/self_attn`, ['query', 'key', 'value', 'output']);
    const { normFirst, activation: kind } = block.blockConfig;
    x = residual(g, x, selfNorm, normFirst, `${prefix}/self_attn_norm`, (h) =>
      attendAndProject(g, projectHeads(g, h, a.wq, a.bq, a, false), projectHeads(g, h, a.wk, a.bk, a, false), projectHeads(g, h, a.wv, a.bv, a, false), mask, a, false));
    x = residual(g, x, ffnNorm, normFirst, `${prefix}/ffn_norm`, (h) => feedForward(g, h, ffnIn, ffnOut, kind, prefix));
  });
  if (model.encoderNorm) x = layerNorm(g, x, model.encoderNorm, 'encoder_norm');

  g.output(x, ONNX_NAMES.memory, 'float32', ['batch', 'source_len', c.modelDim]);
  g.output(padMask, ONNX_NAMES.sourcePadMask, 'float32', ['batch', 'source_len']);
  model.decoderBlocks.forEach((block: TransformerDecoderBlock, i) => {
    const a = attentionWeights(g, block.crossAttention, `decoder_${i}/cross_attn`, ['key', 'value']);
    g.output(projectHeads(g, x, a.wk, a.bk, a, false), ONNX_NAMES.crossKey(i), 'float32', ['batch', a.H, 'source_len', a.r]);
    g.output(projectHeads(g, x, a.wv, a.bv, a, false), ONNX_NAMES.crossValue(i), 'float32', ['batch', a.H, 'source_len', a.r]);
  });
  return g;
}

function decoderStepGraph(model: TransformerSeq2Seq): GraphBuilder {
  const c = model.config;
  const g = new GraphBuilder('decoder_step');
  const tokens = g.input(ONNX_NAMES.tokens, 'int32', ['rows']);
  const position = g.input(ONNX_NAMES.position, 'int32', [1]);
  const padMask = g.input(ONNX_NAMES.sourcePadMask, 'float32', ['rows', 'source_len']);
  const mask = additiveMask(g, padMask);

  const emb = model.targetEmbedding;
  checkEmbedding(emb, 'target');
  let x = scaleEmbedding(g, lookup(g, tokens, emb, 'target_embedding'), emb, 'target_embedding'); // [N, d]
  const table = positionTable(g, emb, 'target_embedding');
  if (table) x = g.node('Add', [x, g.node('Gather', [table, position])]); // + [1, d]

  model.decoderBlocks.forEach((block: TransformerDecoderBlock, i) => {
    const prefix = `decoder_${i}`;
    const [selfAttention, selfNorm, crossAttention, crossNorm, ffnIn, ffnOut, ffnNorm] = block.sublayers();
    const { normFirst, activation: kind } = block.blockConfig;
    const self = attentionWeights(g, selfAttention, `${prefix}/self_attn`, ['query', 'key', 'value', 'output']);
    const cross = attentionWeights(g, crossAttention, `${prefix}/cross_attn`, ['query', 'output']);
    const cacheDims = (len: string) => ['rows', self.H, len, self.r];
    const pastKey = g.input(ONNX_NAMES.pastKey(i), 'float32', cacheDims('past_len'));
    const pastValue = g.input(ONNX_NAMES.pastValue(i), 'float32', cacheDims('past_len'));
    const crossKey = g.input(ONNX_NAMES.crossKey(i), 'float32', ['rows', cross.H, 'source_len', cross.r]);
    const crossValue = g.input(ONNX_NAMES.crossValue(i), 'float32', ['rows', cross.H, 'source_len', cross.r]);

    x = residual(g, x, selfNorm, normFirst, `${prefix}/self_attn_norm`, (h) => {
      // One query per row sees every cached position and itself: no causal mask in a step.
      const key = g.node('Concat', [pastKey, projectHeads(g, h, self.wk, self.bk, self, true)], { axis: 2 });
      const value = g.node('Concat', [pastValue, projectHeads(g, h, self.wv, self.bv, self, true)], { axis: 2 });
      g.output(key, ONNX_NAMES.presentKey(i), 'float32', cacheDims('present_len'));
      g.output(value, ONNX_NAMES.presentValue(i), 'float32', cacheDims('present_len'));
      return attendAndProject(g, projectHeads(g, h, self.wq, self.bq, self, true), key, value, null, self, true);
    });
    x = residual(g, x, crossNorm, normFirst, `${prefix}/cross_attn_norm`, (h) =>
      attendAndProject(g, projectHeads(g, h, cross.wq, cross.bq, cross, true), crossKey, crossValue, mask, cross, true));
    x = residual(g, x, ffnNorm, normFirst, `${prefix}/ffn_norm`, (h) => feedForward(g, h, ffnIn, ffnOut, kind, prefix));
  });
  if (model.decoderNorm) x = layerNorm(g, x, model.decoderNorm, 'decoder_norm');

  let logits: string;
  if (model.outputProjection) logits = linear(g, x, model.outputProjection, 'output_projection');
  else if (emb.embeddings) {
    // Tied: x · Eᵀ with the same table the lookup gathers from (Gemm transposes it in place).
    logits = g.node('Gemm', [x, 'target_embedding/table'], { transB: 1 });
  } else {
    // Tied, factorized: (x · V) · Uᵀ, as TokenEmbedding.project.
    const v = g.float('target_embedding/v', values(emb.embeddingV, 'embeddingV'), [emb.modelDim, emb.rank]);
    logits = g.node('Gemm', [g.node('MatMul', [x, v]), 'target_embedding/u'], { transB: 1 });
  }
  g.output(g.node('LogSoftmax', [logits], { axis: -1 }), ONNX_NAMES.logProbs, 'float32', ['rows', c.tgtVocabSize]);
  return g;
}
