/**
 * Builds the embedded default corpora in data/ from the source texts:
 *   npx tsx data-scripts/prepare-default.ts [--from ../shared/data]
 * 1. compresses web-rv1909.en-es.tsv and moby-dick.en.txt into data/*.gz;
 * 2. splits them into the fairseq layout (split by book / contiguous chunks, see src/text/defaults.ts);
 * 3. trains their SentencePiece models (joint en–es unigram 4000; Moby-Dick unigram 8000) on the
 *    train splits with spm_train, deterministically, into data/*.spm.model.
 * Without --from it re-uses the .gz files already in data/ and only re-trains the models.
 */
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import {
  BIBLE_TOKENIZER,
  DATA_DIR,
  BIBLE_TSV_GZ,
  MOBY_TOKENIZER,
  MOBY_TXT_GZ,
  writeBibleLayout,
  writeMobyLayout,
} from '../src/text/defaults.ts';
import { trainSentencePiece } from '../src/text/train-sentencepiece.ts';
import { runScript } from './lib/script.ts';

/**
 * 4,000 joint pieces for the Bible: in a CPU budget of minutes a small vocabulary learns far faster
 * (every piece is seen more often; measured in docs/quickstart-recipe.md). Moby-Dick keeps 8,000.
 */
export const DEFAULT_BIBLE_VOCAB_SIZE = 4000;
export const DEFAULT_MOBY_VOCAB_SIZE = 8000;
/**
 * nmt_nfkc changes no line of either corpus (every line of every split round-trips exactly), and
 * folds tabs, no-break spaces and compatibility forms in user input instead of mapping them to <unk>.
 */
const NORMALIZATION = 'nmt_nfkc';

await runScript(async () => {
  const { values } = parseArgs({ options: { from: { type: 'string' }, 'vocab-size': { type: 'string' } } });
  const vocabOverride = values['vocab-size'] ? Number(values['vocab-size']) : undefined;
  if (values.from) {
    const from = resolve(values.from);
    for (const [name, out] of [
      ['web-rv1909.en-es.tsv', BIBLE_TSV_GZ],
      ['moby-dick.en.txt', MOBY_TXT_GZ],
    ] as const) {
      const src = join(from, name);
      if (!existsSync(src)) throw new Error(`--from ${from}: ${name} not found`);
      writeFileSync(out, gzipSync(readFileSync(src), { level: 9 }));
      console.log(`wrote ${out} (${statSync(out).size} bytes, from ${src})`);
    }
  }
  // A fixed work folder: spm_train records its input paths in the model, and the models should be byte-identical on every rebuild.
  const work = join(DATA_DIR, '.cache', 'prepare-default');
  rmSync(work, { recursive: true, force: true });
  try {
    const bible = join(work, 'web-rv1909');
    writeBibleLayout(BIBLE_TSV_GZ, bible);
    console.log(`split ${BIBLE_TSV_GZ} by book into ${bible}/{train,valid,test}.{en,es}`);
    const bibleVocab = vocabOverride ?? DEFAULT_BIBLE_VOCAB_SIZE;
    console.log(`training joint en-es SentencePiece (unigram, ${bibleVocab}) ...`);
    const biblePrefix = BIBLE_TOKENIZER.replace(/\.model$/, '');
    await trainSentencePiece({ input: [join(bible, 'train.en'), join(bible, 'train.es')], modelPrefix: biblePrefix, vocabSize: bibleVocab, normalization: NORMALIZATION });
    console.log(`wrote ${biblePrefix}.model and .vocab`);

    const moby = join(work, 'moby-dick');
    writeMobyLayout(MOBY_TXT_GZ, moby);
    console.log(`split ${MOBY_TXT_GZ} into ${moby}/{train,valid,test}.txt`);
    const mobyVocab = vocabOverride ?? DEFAULT_MOBY_VOCAB_SIZE;
    console.log(`training Moby-Dick SentencePiece (unigram, ${mobyVocab}) ...`);
    const mobyPrefix = MOBY_TOKENIZER.replace(/\.model$/, '');
    await trainSentencePiece({ input: join(moby, 'train.txt'), modelPrefix: mobyPrefix, vocabSize: mobyVocab, normalization: NORMALIZATION });
    console.log(`wrote ${mobyPrefix}.model and .vocab`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
