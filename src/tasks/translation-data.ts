/**
 * The translation task's data: a split of a fairseq-layout corpus encoded with the run's
 * tokenizer, filtered by the length rule of the config, and served as token-bounded batches by
 * (epoch, index) so the trainer can resume at any batch.
 */
import { UserError } from '../errors.ts';
import { filterByMaxPositions, makeTranslationBatch, sentenceSizes, TokenBatcher, type TranslationBatch } from '../text/batching.ts';
import { encodeParallelCorpus, readParallelCorpus } from '../text/corpus.ts';
import type { Tokenizer } from '../text/tokenizer.ts';
import type { BatchSource } from '../train/trainer.ts';

export type { TranslationBatch };
import type { TranslationConfig } from './translation-config.ts';

export interface EncodedSplit {
  /** Token ids per sentence, without BOS/EOS. */
  source: Int32Array[];
  target: Int32Array[];
  /** The raw lines (only for splits that are decoded and scored; empty arrays for train). */
  sourceText: string[];
  targetText: string[];
}

/** The raw text pairs of a split, in order. */
export async function readSplitText(dir: string, split: string, sourceLang: string, targetLang: string): Promise<{ source: string[]; target: string[] }> {
  const source: string[] = [];
  const target: string[] = [];
  for await (const pair of readParallelCorpus(dir, split, sourceLang, targetLang)) {
    source.push(pair.source);
    target.push(pair.target);
  }
  return { source, target };
}

/**
 * Encodes `dir/split.{S,T}`, checking it when the run starts so that nothing in the data can stop
 * a run later (at its first validation, say): invalid UTF-8 and files of different lengths are
 * errors naming file and line (readLines / encodeParallelCorpus). Pairs longer than
 * data.maxLength tokens (either side) are dropped with a count in the log (longLines 'skip') or
 * stop the run naming file and line ('error'). `keepAll` (evaluation: every sentence is scored)
 * turns the length rule off.
 *
 * Empty lines (no tokens): in train, a pair with an empty side has nothing to learn from and is
 * dropped, with a count and the first file:line in the log (as corpus cleaning does, e.g. Moses'
 * clean-corpus-n with min length 1). In valid and test every pair is kept, so scores cover the whole
 * split: an empty target is an empty reference, which BLEU/chrF score as sacreBLEU 2.6.0 does
 * (a valid reference of length zero), and an empty source translates to an empty hypothesis.
 */
export async function encodeSplit(
  dir: string,
  split: string,
  config: TranslationConfig,
  tokenizer: Tokenizer,
  log: (line: string) => void,
  keepAll = false,
): Promise<EncodedSplit> {
  const corpus = await encodeParallelCorpus(dir, split, config.sourceLang, config.targetLang, tokenizer);
  const withText = split !== 'train';
  const text = withText ? await readSplitText(dir, split, config.sourceLang, config.targetLang) : { source: [], target: [] };
  const out: EncodedSplit = { source: [], target: [], sourceText: [], targetText: [] };
  const maxLength = config.data.maxLength;
  // Which pairs fit data.maxLength (tokens before BOS/EOS, hence no extra tokens), and the error
  // for the first that does not under longLines 'error' (naming file, line and the config keys):
  // the text layer's rule.
  const sides = [
    { path: corpus.sourcePath, ids: corpus.source },
    { path: corpus.targetPath, ids: corpus.target },
  ];
  const fits = new Set(
    keepAll
      ? corpus.source.keys()
      : filterByMaxPositions(sides, {
          maxPositions: maxLength,
          policy: config.data.longLines,
          extraTokens: 0,
          keys: { maxPositions: 'data.maxLength', policy: 'data.longLines' },
        }).kept,
  );
  let skipped = 0;
  let empty = 0;
  let firstEmpty = '';
  for (let i = 0; i < corpus.source.length; i++) {
    const src = corpus.source[i];
    const tgt = corpus.target[i];
    if (src.length === 0 || tgt.length === 0) {
      empty++;
      firstEmpty ||= `${src.length === 0 ? corpus.sourcePath : corpus.targetPath}:${i + 1}`;
      if (split === 'train') continue;
    }
    if (!fits.has(i)) {
      skipped++;
      continue;
    }
    out.source.push(src);
    out.target.push(tgt);
    if (withText) {
      out.sourceText.push(text.source[i]);
      out.targetText.push(text.target[i]);
    }
  }
  if (skipped > 0) log(`${split}: skipped ${skipped} of ${corpus.source.length} pairs longer than data.maxLength ${maxLength} tokens`);
  if (empty > 0) {
    log(
      split === 'train'
        ? `${split}: skipped ${empty} of ${corpus.source.length} pairs with an empty side (the first at ${firstEmpty})`
        : `${split}: ${empty} of ${corpus.source.length} pairs have an empty side (the first at ${firstEmpty}); kept: an empty reference is scored as sacreBLEU does`,
    );
  }
  if (out.source.length === 0) {
    throw new UserError(`${corpus.sourcePath}: no usable sentence pairs (of ${corpus.source.length}: ${skipped} longer than data.maxLength ${maxLength}, ${empty} with an empty side)`);
  }
  return out;
}

/** An encoded split served as token-bounded batches by (epoch, index): the trainer's BatchSource. */
export class TranslationBatches implements BatchSource<TranslationBatch> {
  private readonly batcher: TokenBatcher;

  constructor(
    private readonly split: EncodedSplit,
    private readonly specials: { padId: number; bosId: number; eosId: number },
    opts: { maxTokens: number; shuffle: boolean; seed: number },
  ) {
    // Each side takes one special position (source + EOS; BOS + target, or target + EOS).
    this.batcher = new TokenBatcher({ source: sentenceSizes(split.source), target: sentenceSizes(split.target) }, opts);
  }

  numBatches(epoch: number): number {
    return this.batcher.numBatches(epoch);
  }

  *batches(epoch: number, startIndex: number): Generator<TranslationBatch> {
    const all = this.batcher.epochBatches(epoch);
    for (let b = startIndex; b < all.length; b++) {
      const indices = all[b];
      yield makeTranslationBatch(
        indices.map((i) => this.split.source[i]),
        indices.map((i) => this.split.target[i]),
        this.specials,
      );
    }
  }
}
