/**
 * BERT-style encoder for masked-LM pretraining: token + learned position (+ segment) embeddings,
 * a stack of the models' Transformer encoder blocks (post- or pre-norm, GELU FFN, dense or
 * factorized), and the MLM head of ./mlm-head.ts tied to the token embedding.
 *
 * Everything is a functional tf.LayersModel of registered layers, so a checkpoint's
 * model.json + weights.bin load with tf.loadLayersModel, and the encoder can be cut out of a
 * trained MLM model as a feature extractor (`encoderFromMaskedLM`). The config lives in
 * ./bert-config.ts; loading checkpoints is the MLM task's (src/tasks/bert-checkpoint.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { globalRandom } from '../random.ts';
import { collectFactorPairs, type FactorPair } from '../factorized/frobenius.ts';
import { attentionRankOf } from './architecture.ts';
import type { BertConfig } from './bert-config.ts';
import { MaskedLMHead } from './mlm-head.ts';
import { TokenEmbedding } from './embedding.ts';
import { layerNorm } from './sublayers.ts';
import { FactorizedMultiHeadAttention } from '../attention/index.ts';
import { TransformerEncoderBlock } from './blocks.ts';

/** Input and output names of the models built here (stable: users feed them by name). */
export const BERT_INPUTS = { tokens: 'token_ids', segments: 'segment_ids', positions: 'masked_positions' } as const;
/** Name of the layer whose output is the encoder's final hidden states. */
export const ENCODER_OUTPUT_LAYER = 'encoder_output';

/**
 * The BERT encoder as a set of layers: `apply(tokenIds, segmentIds?)` gives symbolic hidden states
 * `[B, T, d]`. Holds the token embedding so that the MLM head can tie its projection to it.
 */
export class BertEncoder {
  readonly config: BertConfig;
  /** Token lookup + learned positions; applied to hidden states it is the tied output projection. */
  readonly tokenEmbedding: TokenEmbedding;
  readonly segmentEmbedding: tf.layers.Layer | null;
  readonly embeddingNorm: tf.layers.Layer;
  readonly finalNorm: tf.layers.Layer | null;
  readonly blocks: TransformerEncoderBlock[];

  constructor(config: BertConfig) {
    this.config = config;
    this.tokenEmbedding = new TokenEmbedding({
      vocabSize: config.vocabSize,
      modelDim: config.modelDim,
      padId: config.padId,
      scaleEmbedding: false, // BERT adds unscaled token, position and segment vectors
      positions: 'learned',
      maxPositions: config.maxPositions,
      dropout: config.dropout,
      rankScale: config.embeddingRankScale,
      spectralInit: config.spectralInit.embedding,
      name: 'embeddings',
    });
    this.segmentEmbedding =
      config.typeVocabSize > 0
        ? tf.layers.embedding({
            inputDim: config.typeVocabSize,
            outputDim: config.modelDim,
            embeddingsInitializer: tf.initializers.truncatedNormal({ stddev: 0.02, seed: globalRandom.nextSeed() }),
            name: 'segment_embeddings',
          })
        : null;
    this.embeddingNorm = layerNorm('embeddings_norm');
    this.finalNorm = config.normFirst ? layerNorm('final_norm') : null;
    this.blocks = Array.from(
      { length: config.numLayers },
      (_, i) =>
        new TransformerEncoderBlock({
          name: `encoder_layer_${i}`,
          modelDim: config.modelDim,
          numHeads: config.numHeads,
          ffnDim: config.ffnDim,
          dropout: config.dropout,
          attentionDropout: config.attentionDropout,
          activationDropout: config.activationDropout,
          activation: config.activation,
          normFirst: config.normFirst,
          attentionRank: attentionRankOf(config),
          linearRankScale: config.linearRankScale,
          spectralInit: config.spectralInit,
          attentionBias: config.attentionBias,
          padId: config.padId,
        }),
    );
  }

  /** Symbolic inputs for a model of this encoder: token ids, and segment ids when configured. */
  makeInputs(): tf.SymbolicTensor[] {
    const inputs = [tf.input({ shape: [null], dtype: 'int32', name: BERT_INPUTS.tokens })];
    if (this.segmentEmbedding) inputs.push(tf.input({ shape: [null], dtype: 'int32', name: BERT_INPUTS.segments }));
    return inputs;
  }

  apply(tokenIds: tf.SymbolicTensor, segmentIds?: tf.SymbolicTensor): tf.SymbolicTensor {
    const c = this.config;
    let x = this.tokenEmbedding.apply(tokenIds) as tf.SymbolicTensor;
    if (this.segmentEmbedding) {
      if (!segmentIds) throw new Error('BertEncoder: this config has segment embeddings; pass segment ids');
      x = tf.layers.add({ name: 'add_segment_embeddings' }).apply([x, this.segmentEmbedding.apply(segmentIds) as tf.SymbolicTensor]) as tf.SymbolicTensor;
    }
    // Post-norm (BERT) normalizes the embeddings before the first block; pre-norm normalizes the
    // last block's output instead (its blocks leave the residual stream unnormalized).
    if (!c.normFirst) x = this.embeddingNorm.apply(x) as tf.SymbolicTensor;
    for (const block of this.blocks) x = block.apply([x, tokenIds]) as tf.SymbolicTensor;
    if (c.normFirst) x = this.finalNorm!.apply(x) as tf.SymbolicTensor;
    // A named identity, so the hidden states can be found (and cut out) in a loaded model.
    return tf.layers.activation({ activation: 'linear', name: ENCODER_OUTPUT_LAYER }).apply(x) as tf.SymbolicTensor;
  }

  /** The standalone attention layers, one per block (for reuse in other models). */
  attentionLayers(): FactorizedMultiHeadAttention[] {
    return this.blocks.map((b) => b.selfAttention);
  }
}

/** BERT initializes its embedding tables with standard deviation 0.02. */
const BERT_EMBEDDING_STD = 0.02;

/**
 * Rescales the (fairseq-initialized, std 1/√d) token and position tables to BERT's std 0.02. It
 * matters because the output projection is tied: with std 1/√d the untrained head adds logit
 * noise of std ≈ 1 on top of its bias, with 0.02 about 0.02·√d (0.3 at d = 256).
 */
function useBertEmbeddingScale(embedding: TokenEmbedding): void {
  const scale = BERT_EMBEDDING_STD * Math.sqrt(embedding.modelDim);
  const rescale = (v: tf.LayerVariable | null, factor: number) => {
    if (!v) return;
    const scaled = tf.tidy(() => tf.mul(v.read(), factor));
    v.write(scaled);
    scaled.dispose();
  };
  rescale(embedding.embeddings, scale);
  // Factorized (E = U Vᵀ): √scale on each factor keeps them balanced.
  rescale(embedding.embeddingU, Math.sqrt(scale));
  rescale(embedding.embeddingV, Math.sqrt(scale));
  rescale(embedding.positionEmbeddings, scale);
}

/** A BERT masked-LM model and the encoder sharing its layers. */
export interface BertForMaskedLM {
  /** Inputs `[token_ids, (segment_ids,) masked_positions]` → logits `[B, P, V]`. */
  model: tf.LayersModel;
  /** Inputs `[token_ids, (segment_ids)]` → hidden states `[B, T, d]` (same layers, same weights). */
  encoder: tf.LayersModel;
  config: BertConfig;
  /** The layers of the encoder and of the head (e.g. `head.setOutputBias`, `encoderLayers.attentionLayers()`). */
  encoderLayers: BertEncoder;
  head: MaskedLMHead;
  factorPairs(): FactorPair[];
}

/** Builds the MLM model (for training) and its encoder (for features) from one config. */
export function buildBertForMaskedLM(config: BertConfig): BertForMaskedLM {
  const encoderLayers = new BertEncoder(config);
  const inputs = encoderLayers.makeInputs();
  const hidden = encoderLayers.apply(inputs[0], inputs[1]);
  const positions = tf.input({ shape: [null], dtype: 'int32', name: BERT_INPUTS.positions });
  const head = new MaskedLMHead({ modelDim: config.modelDim }, encoderLayers.tokenEmbedding);
  const logits = head.apply(hidden, positions);
  const model = tf.model({ inputs: [...inputs, positions], outputs: logits, name: 'bert_mlm' });
  useBertEmbeddingScale(encoderLayers.tokenEmbedding);
  const encoder = tf.model({ inputs, outputs: hidden, name: 'bert_encoder' });
  return { model, encoder, config, encoderLayers, head, factorPairs: () => collectFactorPairs(model.layers) };
}

/**
 * Disposes an MLM model's weights. `model.dispose()` alone leaves the token embedding's weights
 * alive: tfjs counts one reference per application of a layer, and the tied embedding is applied
 * twice (lookup and output projection) but released once.
 */
export function disposeBertModel(model: tf.LayersModel): void {
  model.dispose();
  for (const layer of model.layers) {
    for (let extra = layer.inboundNodes.length - 1; extra > 0; extra--) layer.dispose();
  }
}

/**
 * The encoder part of a (loaded) MLM model: a tfjs model from its token (and segment) inputs to
 * the hidden states, sharing the MLM model's layers and weights.
 */
export function encoderFromMaskedLM(model: tf.LayersModel): tf.LayersModel {
  const inputs = model.inputs.filter((i) => !i.name.startsWith(BERT_INPUTS.positions));
  let output: tf.SymbolicTensor;
  try {
    output = model.getLayer(ENCODER_OUTPUT_LAYER).output as tf.SymbolicTensor;
  } catch {
    throw new UserError(`model '${model.name}' has no '${ENCODER_OUTPUT_LAYER}' layer: not a masked-LM model of this package`);
  }
  return tf.model({ inputs, outputs: output, name: 'bert_encoder' });
}
