/**
 * IWSLT14 German–English (TED talks), prepared with the conventions of fairseq's
 * examples/translation/prepare-iwslt14.sh:
 * - train: `de-en/train.tags.de-en.{de,en}` without the `<url>`, `<talkid>`, `<keywords>` lines and
 *   with `<title>`/`<description>` tags stripped; pairs cleaned like clean-corpus-n (1–175 words,
 *   ratio ≤ 1.5);
 * - valid: every 23rd cleaned training pair (NR % 23 == 0), train keeps the rest;
 * - test: the `<seg>` texts of IWSLT14.TED.dev2010, IWSLT14.TEDX.dev2012, IWSLT14.TED.tst2010,
 *   tst2011 and tst2012, concatenated in that order (6,750 pairs).
 * Differences from fairseq, on purpose: no Moses tokenization and no lowercasing by default
 * (SentencePiece works on raw text and BLEU is computed sacreBLEU-style on detokenized text);
 * `--lowercase` restores the lowercasing.
 */
import { join } from 'node:path';
import { UserError } from '../../src/errors.ts';
import { readLinePairs } from '../../src/text/corpus.ts';
import type { RemoteFile } from './download.ts';
import { keepPair, LineWriter, normalizeSpaces, parseSegments, type CleanRule } from './text-io.ts';
import { readFileSync } from 'node:fs';

/** fairseq's mirror of the WIT3 release (the original wit3.fbk.eu address is gone). No checksum is published for it. */
export const IWSLT14_ARCHIVE: RemoteFile = {
  url: 'http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz',
  size: null,
  sha256: null,
};

export const IWSLT14_TEST_SETS = [
  'IWSLT14.TED.dev2010',
  'IWSLT14.TEDX.dev2012',
  'IWSLT14.TED.tst2010',
  'IWSLT14.TED.tst2011',
  'IWSLT14.TED.tst2012',
] as const;

/** The published size of the concatenated test set. */
export const IWSLT14_TEST_PAIRS = 6750;

export const IWSLT14_CLEAN: CleanRule = { minWords: 1, maxWords: 175, maxRatio: 1.5 };

/** The archive members the preparation reads, relative to the archive root. */
export function iwslt14Members(pair = 'de-en'): string[] {
  const [a, b] = pair.split('-');
  return [
    `${pair}/train.tags.${pair}.${a}`,
    `${pair}/train.tags.${pair}.${b}`,
    ...IWSLT14_TEST_SETS.flatMap((s) => [`${pair}/${s}.${pair}.${a}.xml`, `${pair}/${s}.${pair}.${b}.xml`]),
  ];
}

/** A training line without its metadata markup, or null for a metadata line fairseq drops. */
export function cleanIwsltTrainLine(line: string): string | null {
  if (line.includes('<url>') || line.includes('<talkid>') || line.includes('<keywords>')) return null;
  return line.replace(/<\/?title>/g, '').replace(/<\/?description>/g, '');
}

export interface PreparedCounts {
  train: number;
  valid: number;
  test: number;
  /** Training pairs dropped by the cleaning rule. */
  dropped: number;
}

/**
 * Writes OUT/{train,valid,test}.{de,en} from the extracted members (`members[name]` = path).
 */
export async function prepareIwslt14(
  members: Record<string, string>,
  outDir: string,
  opts: { lowercase?: boolean; log?: (m: string) => void } = {},
): Promise<PreparedCounts> {
  const log = opts.log ?? (() => {});
  const pair = 'de-en';
  const [src, tgt] = ['de', 'en'];
  const finish = (s: string) => (opts.lowercase ? s.toLowerCase() : s);
  const writers = {
    train: [new LineWriter(join(outDir, `train.${src}`)), new LineWriter(join(outDir, `train.${tgt}`))],
    valid: [new LineWriter(join(outDir, `valid.${src}`)), new LineWriter(join(outDir, `valid.${tgt}`))],
    test: [new LineWriter(join(outDir, `test.${src}`)), new LineWriter(join(outDir, `test.${tgt}`))],
  };
  const srcTrain = members[`${pair}/train.tags.${pair}.${src}`];
  const tgtTrain = members[`${pair}/train.tags.${pair}.${tgt}`];
  let kept = 0;
  let dropped = 0;
  for await (const { lineNumber, source, target } of readLinePairs(srcTrain, tgtTrain, { invalid: 'replace' })) {
    const s = cleanIwsltTrainLine(source);
    const t = cleanIwsltTrainLine(target);
    if ((s === null) !== (t === null)) {
      throw new UserError(`${srcTrain}:${lineNumber}: metadata line on one side only (the train.tags files are not aligned)`);
    }
    if (s === null || t === null) continue;
    const a = normalizeSpaces(s);
    const b = normalizeSpaces(t);
    if (!keepPair(a, b, IWSLT14_CLEAN)) {
      dropped++;
      continue;
    }
    kept++;
    const [ws, wt] = kept % 23 === 0 ? writers.valid : writers.train;
    await ws.write(finish(a));
    await wt.write(finish(b));
  }
  for (const set of IWSLT14_TEST_SETS) {
    const fs = members[`${pair}/${set}.${pair}.${src}.xml`];
    const ft = members[`${pair}/${set}.${pair}.${tgt}.xml`];
    const segS = parseSegments(readFileSync(fs, 'utf8'), fs);
    const segT = parseSegments(readFileSync(ft, 'utf8'), ft);
    if (segS.length !== segT.length) throw new UserError(`${fs} has ${segS.length} segments but ${ft} has ${segT.length}`);
    for (let i = 0; i < segS.length; i++) {
      await writers.test[0].write(finish(normalizeSpaces(segS[i])));
      await writers.test[1].write(finish(normalizeSpaces(segT[i])));
    }
    log(`  ${set}: ${segS.length} pairs`);
  }
  for (const w of Object.values(writers).flat()) await w.close();
  return { train: writers.train[0].count, valid: writers.valid[0].count, test: writers.test[0].count, dropped };
}
