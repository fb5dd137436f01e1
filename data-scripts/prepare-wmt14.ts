/**
 * WMT14 en→de (or de→en) in the fairseq layout, with a joint SentencePiece model:
 *   npx tsx data-scripts/prepare-wmt14.ts [--out data/wmt14.en-de] [--source-lang en --target-lang de]
 *        [--archives DIR] [--vocab-size 32000] [--spm-sample 4000000] [--no-spm]
 * Downloads four archives (≈1.7 GB, size + sha256 checked) into --archives (default OUT/orig; files
 * already there are verified and re-used), extracts what it needs, and writes
 * OUT/{train,valid,test}.{src,tgt}: train = Europarl v7 + Common Crawl + News Commentary v9,
 * valid = newstest2013, test = newstest2014 (conventions: data-scripts/lib/wmt14.ts).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { UserError } from '../src/errors.ts';
import { DATA_DIR } from '../src/text/defaults.ts';
import { trainSentencePiece } from '../src/text/train-sentencepiece.ts';
import { extractZip } from './lib/archive.ts';
import { positiveInt } from './lib/args.ts';
import { download } from './lib/download.ts';
import { runScript } from './lib/script.ts';
import { WMT14_ARCHIVES, prepareWmt14, wmt14Members, type Wmt14Lang } from './lib/wmt14.ts';

await runScript(async () => {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      'source-lang': { type: 'string', default: 'en' },
      'target-lang': { type: 'string', default: 'de' },
      archives: { type: 'string' },
      'vocab-size': { type: 'string', default: '32000' },
      'spm-sample': { type: 'string', default: '4000000' },
      'no-spm': { type: 'boolean', default: false },
    },
  });
  const src = values['source-lang'] as Wmt14Lang;
  const tgt = values['target-lang'] as Wmt14Lang;
  for (const [opt, lang] of [['--source-lang', src], ['--target-lang', tgt]] as const) {
    if (lang !== 'en' && lang !== 'de') throw new UserError(`${opt} must be en or de, got "${lang}"`);
  }
  const out = resolve(values.out ?? join(DATA_DIR, `wmt14.${src}-${tgt}`));
  const archives = resolve(values.archives ?? join(out, 'orig'));
  mkdirSync(out, { recursive: true });
  const members = wmt14Members(src, tgt);
  const extracted = join(out, 'orig', 'extracted');
  const files: Record<string, string> = {};
  for (const key of Object.keys(WMT14_ARCHIVES) as (keyof typeof WMT14_ARCHIVES)[]) {
    const remote = WMT14_ARCHIVES[key];
    const archive = await download(remote, join(archives, basename(new URL(remote.url).pathname)));
    console.log(`extracting ${members[key].join(', ')} from ${archive} ...`);
    Object.assign(files, await extractZip(archive, extracted, members[key]));
  }
  console.log('preparing train/valid/test ...');
  const counts = await prepareWmt14(files, out, src, tgt, { log: console.log, expectStandardSizes: true });
  rmSync(extracted, { recursive: true, force: true });
  console.log(
    `wrote ${out}/{train,valid,test}.{${src},${tgt}}: ${counts.train} / ${counts.valid} / ${counts.test} pairs (${counts.dropped} training pairs dropped by the length/ratio rule)`,
  );
  if (!values['no-spm']) {
    const vocabSize = positiveInt(values['vocab-size']!, '--vocab-size');
    console.log(`training joint ${src}-${tgt} SentencePiece (unigram, ${vocabSize}, on a seeded sample) ...`);
    const model = await trainSentencePiece({
      input: [join(out, `train.${src}`), join(out, `train.${tgt}`)],
      modelPrefix: join(out, 'spm'),
      vocabSize,
      sampleSentences: positiveInt(values['spm-sample']!, '--spm-sample'),
    });
    console.log(`wrote ${model}`);
  }
});
