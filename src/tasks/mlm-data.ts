/**
 * The masked-LM task's data: DIR/{train,valid,test}.txt (one sentence per line, consecutive
 * sentences in running order) tokenized and packed into sequences of up to `data.maxLength`
 * tokens, the maskers of training and evaluation, and the batches the trainer reads by
 * (epoch, index) with masks re-drawn every epoch (dynamic masking).
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { SeededRandom } from '../random.ts';
import type { BertConfig } from '../models/bert-config.ts';
import { ensureDefaultMlmCorpus } from '../text/defaults.ts';
import { encodeMonolingualCorpus } from '../text/corpus.ts';
import { makeMaskedLmBatch, maskingRandom, packSentences, TokenMasker, UnigramModel, wordStartTable, type MaskedLmBatch } from '../text/masking.ts';
import type { Tokenizer } from '../text/tokenizer.ts';
import type { BatchSource } from '../train/trainer.ts';
import { MLM_DATA_DEFAULTS, type MlmDataSection } from './mlm-config.ts';

export type MlmSplit = 'train' | 'valid' | 'test';

/** The ids masking must leave alone: pad, unk, bos/[CLS], eos/[SEP] and the mask token. */
export function specialIdsOf(tokenizer: Tokenizer): number[] {
  return [tokenizer.padId, tokenizer.unkId, tokenizer.bosId, tokenizer.eosId, tokenizer.maskId ?? -1].filter((id) => id >= 0);
}

/**
 * Tokenizes DIR/SPLIT.txt and packs it into sequences of at most `maxLength` tokens. The corpus
 * reader of src/text does the reading (strict UTF-8 with errors naming file and line, CRLF line
 * ends and a leading BOM dropped) and caches the token ids next to the text.
 */
export async function loadPackedSplit(dir: string, split: MlmSplit, tokenizer: Tokenizer, maxLength: number): Promise<Int32Array[]> {
  const { ids } = await encodeMonolingualCorpus(dir, split, tokenizer);
  return packSentences(ids, { maxLength, clsId: tokenizer.bosId, sepId: tokenizer.eosId });
}

/**
 * The masker of validation and `evaluate mlm`: always BERT's standard 15 % with 80/10/10 on single
 * tokens, whatever masking the run trained with, so that perplexities compare between runs.
 */
export function evaluationMasker(tokenizer: Tokenizer, where = 'tokenizer'): TokenMasker {
  return maskerFor(tokenizer, { ...MLM_DATA_DEFAULTS, wholeWordMasking: false }, where);
}

/** Builds the masker for a tokenizer, failing clearly when it has no mask token. */
export function maskerFor(tokenizer: Tokenizer, data: MlmDataSection, where = 'tokenizer'): TokenMasker {
  if (tokenizer.maskId === undefined) {
    throw new UserError(`${where}: the tokenizer has no mask token (<mask> or [MASK]); masked-LM needs one`);
  }
  return new TokenMasker({
    maskId: tokenizer.maskId,
    vocabSize: tokenizer.vocabSize,
    specialIds: specialIdsOf(tokenizer),
    selectProbability: data.maskProbability,
    maskTokenProbability: data.maskTokenProbability,
    randomTokenProbability: data.randomTokenProbability,
    wordStarts: data.wholeWordMasking ? wordStartTable(tokenizer) : undefined,
  });
}

/** The unigram log-probabilities as an output bias; specials (never predicted) get the smallest value. */
export function unigramBias(unigram: UnigramModel): Float32Array {
  let floor = 0;
  for (const v of unigram.logProbs) if (Number.isFinite(v)) floor = Math.min(floor, v);
  return Float32Array.from(unigram.logProbs, (v) => (Number.isFinite(v) ? v : floor));
}

/** Consecutive groups of sequence indices with at most `maxTokens` padded tokens each. */
export function batchIndices(sequences: readonly Int32Array[], maxTokens: number, order?: number[]): number[][] {
  const indices = order ?? sequences.map((_, i) => i);
  const batches: number[][] = [];
  let current: number[] = [];
  let longest = 0;
  for (const i of indices) {
    const len = sequences[i].length;
    if (current.length > 0 && Math.max(longest, len) * (current.length + 1) > maxTokens) {
      batches.push(current);
      current = [];
      longest = 0;
    }
    current.push(i);
    longest = Math.max(longest, len);
  }
  if (current.length) batches.push(current);
  return batches;
}

/** Masks the listed sequences for `epoch` (dynamic masking: a fresh draw per epoch) and pads them. */
export function maskedBatch(
  sequences: readonly Int32Array[],
  indices: readonly number[],
  masker: TokenMasker,
  seed: number,
  epoch: number,
  padId: number,
): MaskedLmBatch {
  return makeMaskedLmBatch(
    indices.map((i) => masker.mask(sequences[i], maskingRandom(seed, epoch, i))),
    padId,
  );
}

/** The tensors a batch feeds the MLM model, in the model's input order. */
export function batchInputs(batch: MaskedLmBatch, bert: { config: BertConfig }): tf.Tensor[] {
  const tokens = tf.tensor2d(batch.tokens, batch.tokensShape, 'int32');
  const inputs: tf.Tensor[] = [tokens];
  if (bert.config.typeVocabSize > 0) inputs.push(tf.zeros(batch.tokensShape, 'int32'));
  inputs.push(tf.tensor2d(batch.positions, batch.positionsShape, 'int32'));
  return inputs;
}

/**
 * Where the data and tokenizer come from. Data: `data`, or the embedded Moby-Dick corpus.
 * Tokenizer: `tokenizer`, else the data folder's `tokenizer.json` or single `*.model`, else the
 * English SentencePiece model shipped with the embedded corpus (it has a `<mask>` piece).
 */
export async function resolveMlmData(
  dataDir?: string,
  tokenizerPath?: string,
  log: (line: string) => void = () => {},
): Promise<{ dataDir: string; tokenizerPath: string }> {
  if (dataDir !== undefined && !(existsSync(dataDir) && statSync(dataDir).isDirectory())) {
    throw new UserError(`\`data\`: folder ${dataDir} does not exist`);
  }
  const corpus = dataDir === undefined || tokenizerPath === undefined ? await ensureDefaultMlmCorpus() : null;
  if (tokenizerPath === undefined && dataDir !== undefined) {
    const models = readdirSync(dataDir).filter((f) => f.endsWith('.model'));
    if (existsSync(join(dataDir, 'tokenizer.json')) || models.length === 1) tokenizerPath = dataDir;
    else {
      tokenizerPath = corpus!.tokenizerPath;
      log(`mlm: ${dataDir} has no tokenizer.json or *.model; using the shipped English SentencePiece model ${tokenizerPath}`);
    }
  }
  return { dataDir: dataDir ?? corpus!.dir, tokenizerPath: tokenizerPath ?? corpus!.tokenizerPath };
}

/**
 * Training batches by (epoch, index): each epoch shuffles the sequence order (seeded) and re-draws
 * the masks (dynamic masking), both functions of (seed, epoch), so a resumed run reads exactly
 * the batches an uninterrupted one would.
 */
export class MaskedLmBatchSource implements BatchSource<MaskedLmBatch> {
  private cachedEpoch = -1;
  private cachedBatches: number[][] = [];

  constructor(
    private readonly sequences: readonly Int32Array[],
    private readonly masker: TokenMasker,
    private readonly opts: { seed: number; maxTokens: number; padId: number },
  ) {
    if (sequences.length === 0) throw new UserError('training data: the train split has no sequences');
  }

  private epochBatches(epoch: number): number[][] {
    if (epoch !== this.cachedEpoch) {
      const order = new SeededRandom(maskingRandom(this.opts.seed, epoch, -1).nextSeed()).shuffle(this.sequences.map((_, i) => i));
      this.cachedBatches = batchIndices(this.sequences, this.opts.maxTokens, order);
      this.cachedEpoch = epoch;
    }
    return this.cachedBatches;
  }

  numBatches(epoch: number): number {
    return this.epochBatches(epoch).length;
  }

  *batches(epoch: number, startIndex: number): Iterable<MaskedLmBatch> {
    const batches = this.epochBatches(epoch);
    for (let b = startIndex; b < batches.length; b++) {
      yield maskedBatch(this.sequences, batches[b], this.masker, this.opts.seed, epoch, this.opts.padId);
    }
  }
}
