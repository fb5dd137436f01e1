/**
 * Parameter counts computed from a config alone — what `model.countParams()` of the built model
 * gives, without building it (building allocates and initializes every weight, and spectral
 * initialization runs SVDs). Mirrors the weights the layers create: a change there must change
 * this file too; test/models.test.ts compares both for every kind of layer.
 */
import { attentionRankOf, type TransformerFields } from './architecture.ts';
import type { BertConfig } from './bert-config.ts';
import type { Seq2SeqConfig } from './config.ts';

/** The rank of a factorized [m, n] layer with this scale (src/factorized/rank.ts's rule). */
function factorRank(scale: number, m: number, n: number): number {
  return Math.max(1, Math.floor(scale * Math.min(m, n)));
}

/** A dense [in, out] kernel, or U [in, r] · V [r, out] when factorized; plus the bias. */
function projection(inDim: number, outDim: number, bias: boolean, rankScale: number | null): number {
  const kernel = rankScale === null ? inDim * outDim : factorRank(rankScale, inDim, outDim) * (inDim + outDim);
  return kernel + (bias ? outDim : 0);
}

/** The token table [V, d] (or its factors), plus a learned position table [maxPositions, d]. */
function tokenEmbedding(vocabSize: number, d: number, rankScale: number | null, learnedPositions: boolean, maxPositions: number): number {
  const table = rankScale === null ? vocabSize * d : factorRank(rankScale, vocabSize, d) * (vocabSize + d);
  return table + (learnedPositions ? maxPositions * d : 0);
}

const layerNorm = (d: number): number => 2 * d;

/** Factors Wq, Wk, Wv [H, d, r] and Wo [H, r, d]; biases [H, r] × 3 and [d]. */
function attention(d: number, heads: number, rank: number, bias: boolean): number {
  return 4 * heads * d * rank + (bias ? 3 * heads * rank + d : 0);
}

type BlockShape = Pick<TransformerFields, 'modelDim' | 'numHeads' | 'ffnDim' | 'attentionBias' | 'linearRankScale'>;

/** One encoder block (self-attention) or decoder block (plus cross-attention), each sublayer with its LayerNorm. */
function block(c: BlockShape, rank: number, decoder: boolean): number {
  const d = c.modelDim;
  const attentions = decoder ? 2 : 1;
  const ffn = projection(d, c.ffnDim, true, c.linearRankScale) + projection(c.ffnDim, d, true, c.linearRankScale);
  return attentions * (attention(d, c.numHeads, rank, c.attentionBias) + layerNorm(d)) + ffn + layerNorm(d);
}

/** Parameters of `new TransformerSeq2Seq(config)`. */
export function countSeq2SeqParameters(c: Seq2SeqConfig): number {
  const d = c.modelDim;
  const rank = attentionRankOf(c);
  const learned = c.positions === 'learned';
  const embeddings = c.shareEmbeddings
    ? tokenEmbedding(c.srcVocabSize, d, c.embeddingRankScale, learned, c.maxPositions)
    : tokenEmbedding(c.srcVocabSize, d, c.embeddingRankScale, learned, c.maxPositions) +
      tokenEmbedding(c.tgtVocabSize, d, c.embeddingRankScale, learned, c.maxPositions);
  const blocks = c.encoderLayers * block(c, rank, false) + c.decoderLayers * block(c, rank, true);
  const finalNorms = c.normFirst ? 2 * layerNorm(d) : 0;
  // fairseq's output projection has no bias.
  const output = c.tieOutput ? 0 : projection(d, c.tgtVocabSize, false, c.linearRankScale);
  return embeddings + blocks + finalNorms + output;
}

/** Parameters of `buildBertForMaskedLM(config).model` (encoder and MLM head). */
export function countBertParameters(c: BertConfig): number {
  const d = c.modelDim;
  const embeddings = tokenEmbedding(c.vocabSize, d, c.embeddingRankScale, true, c.maxPositions) + c.typeVocabSize * d;
  // Post-norm normalizes the embeddings, pre-norm the last block's output: one LayerNorm either way.
  const norm = layerNorm(d);
  const blocks = c.numLayers * block(c, attentionRankOf(c), false);
  // The head: a d × d GELU transform with bias, its LayerNorm, the tied projection's vocabulary bias.
  const head = d * d + d + layerNorm(d) + c.vocabSize;
  return embeddings + norm + blocks + head;
}

/** The same architecture with every factor at full rank: the dense model it compresses. */
export function fullRankArchitecture<T extends Pick<TransformerFields, 'attentionRank' | 'attentionRankScale' | 'linearRankScale' | 'embeddingRankScale'>>(c: T): T {
  return { ...c, attentionRank: null, attentionRankScale: 1, linearRankScale: null, embeddingRankScale: null };
}
