/**
 * IWSLT14 de→en in the fairseq layout, with a joint SentencePiece model:
 *   npx tsx data-scripts/prepare-iwslt14.ts [--out data/iwslt14.de-en] [--archive de-en.tgz]
 *                                           [--sha256 HEX] [--vocab-size 10000] [--lowercase] [--no-spm]
 * Downloads fairseq's mirror of de-en.tgz (or uses --archive), checks it, extracts the members it
 * needs, and writes OUT/{train,valid,test}.{de,en} (conventions: data-scripts/lib/iwslt14.ts).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DATA_DIR } from '../src/text/defaults.ts';
import { trainSentencePiece } from '../src/text/train-sentencepiece.ts';
import { extractTgz } from './lib/archive.ts';
import { positiveInt } from './lib/args.ts';
import { download, verifyFile } from './lib/download.ts';
import { IWSLT14_ARCHIVE, IWSLT14_TEST_PAIRS, iwslt14Members, prepareIwslt14 } from './lib/iwslt14.ts';
import { runScript } from './lib/script.ts';

await runScript(async () => {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: join(DATA_DIR, 'iwslt14.de-en') },
      archive: { type: 'string' },
      sha256: { type: 'string' },
      'vocab-size': { type: 'string', default: '10000' },
      lowercase: { type: 'boolean', default: false },
      'no-spm': { type: 'boolean', default: false },
    },
  });
  const out = resolve(values.out!);
  mkdirSync(out, { recursive: true });
  const remote = { ...IWSLT14_ARCHIVE, sha256: values.sha256 ?? IWSLT14_ARCHIVE.sha256 };
  const archive = values.archive ? resolve(values.archive) : await download(remote, join(out, 'orig', 'de-en.tgz'));
  if (values.archive) {
    const got = await verifyFile(archive, { ...remote, url: archive });
    console.log(`using ${archive} (${got.size} bytes, sha256 ${got.sha256})`);
  }
  const extracted = join(out, 'orig', 'extracted');
  console.log(`extracting ${archive} ...`);
  const members = await extractTgz(archive, extracted, iwslt14Members());
  console.log('preparing train/valid/test ...');
  const counts = await prepareIwslt14(members, out, { lowercase: values.lowercase, log: console.log });
  rmSync(extracted, { recursive: true, force: true });
  console.log(
    `wrote ${out}/{train,valid,test}.{de,en}: ${counts.train} / ${counts.valid} / ${counts.test} pairs (${counts.dropped} training pairs dropped by the length/ratio rule)`,
  );
  if (counts.test !== IWSLT14_TEST_PAIRS) console.log(`warning: the standard test set has ${IWSLT14_TEST_PAIRS} pairs, this archive gave ${counts.test}`);
  if (!values['no-spm']) {
    const vocabSize = positiveInt(values['vocab-size']!, '--vocab-size');
    console.log(`training joint de-en SentencePiece (unigram, ${vocabSize}) ...`);
    const model = await trainSentencePiece({ input: [join(out, 'train.de'), join(out, 'train.en')], modelPrefix: join(out, 'spm'), vocabSize });
    console.log(`wrote ${model}`);
  }
});
