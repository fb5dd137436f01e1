/**
 * Pretrained parts of a masked-LM checkpoint for use in other models: the encoder as a feature
 * extractor, and the self-attention layers with their trained factors. Checkpoint loading is the
 * task layer's (src/train/checkpoint.ts); the model layer (src/models/bert.ts) knows no files.
 */
import type * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';
import { FactorizedMultiHeadAttention } from '../attention/index.ts';
import { disposeBertModel, encoderFromMaskedLM } from '../models/bert.ts';
import { TransformerEncoderBlock } from '../models/blocks.ts';
import { loadCheckpoint } from '../train/checkpoint.ts';
import { resolveCheckpointDir } from './run.ts';

/**
 * Loads the encoder of a masked-LM checkpoint as a feature extractor: a tf.LayersModel from
 * `token_ids [B, T]` (int32; plus `segment_ids` when the model has segments) to the final hidden
 * states `[B, T, d]`. Padding (the tokenizer's pad id) is masked as attention keys.
 * `dir` is a checkpoint folder or a run folder (its checkpoint_best, else checkpoint_last).
 */
export async function loadEncoder(dir: string): Promise<tf.LayersModel> {
  const model = await (await loadCheckpoint(resolveCheckpointDir(dir))).loadModel();
  return encoderFromMaskedLM(model);
}

/**
 * The self-attention layers of a masked-LM checkpoint, one per encoder block, as fresh standalone
 * `FactorizedMultiHeadAttention` layers holding the pretrained factors: use `attend(x, null, {
 * keyPaddingMask })` directly or `apply([x])` in your own functional model (they share no weights
 * with the checkpoint's model, which is disposed).
 */
export async function loadPretrainedAttention(dir: string): Promise<FactorizedMultiHeadAttention[]> {
  const model = await (await loadCheckpoint(resolveCheckpointDir(dir))).loadModel();
  try {
    const blocks = model.layers.filter((l): l is TransformerEncoderBlock => l instanceof TransformerEncoderBlock);
    if (blocks.length === 0) throw new UserError(`${dir}: the model has no encoder blocks`);
    return blocks.map((block, i) => {
      const source = block.selfAttention;
      const config = source.getConfig();
      const layer = new FactorizedMultiHeadAttention({
        numHeads: source.numHeads,
        modelDim: source.modelDim,
        rank: source.rank,
        useBias: source.useBias,
        dropout: source.dropout,
        causal: source.causal,
        spectralInit: false, // the weights are overwritten with the pretrained ones below
        name: `pretrained_self_attn_${i}`,
        trainable: config.trainable as boolean | undefined,
      });
      layer.build([[null, null, source.modelDim!]]);
      layer.setWeights(source.getWeights());
      return layer;
    });
  } finally {
    disposeBertModel(model);
  }
}
