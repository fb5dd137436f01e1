/**
 * WMT14 English–German (the setup of Vaswani et al. 2017 and fairseq's prepare-wmt14en2de.sh):
 * - train: Europarl v7 + Common Crawl + News Commentary v9 (de-en), cleaned like clean-corpus-n
 *   (1–250 words, ratio ≤ 1.5), ~4.5 M pairs;
 * - valid: newstest2013 (3,000 pairs);
 * - test: newstest2014, full version (3,003 pairs, `newstest2014-deen-{src,ref}.*.sgm`).
 * Downloads come from the Hugging Face mirror of statmt.org (the `wmt/wmt13`, `wmt/wmt14`,
 * `wmt/wmt19` dataset repositories), whose sizes and sha256 sums are published in the
 * `datasets` library's wmt14 dataset_infos.json.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../src/errors.ts';
import { readLinePairs } from '../../src/text/corpus.ts';
import type { RemoteFile } from './download.ts';
import { keepPair, LineWriter, normalizeSpaces, parseSegments, type CleanRule } from './text-io.ts';

export const WMT14_ARCHIVES = {
  europarl: {
    url: 'https://huggingface.co/datasets/wmt/wmt13/resolve/main-zip/training-parallel-europarl-v7.zip',
    size: 658092427,
    sha256: '5b2d8b32c2396da739b4e731871c597fcc6e75729becd74619d0712eecf7770e',
  },
  commoncrawl: {
    url: 'https://huggingface.co/datasets/wmt/wmt13/resolve/main-zip/training-parallel-commoncrawl.zip',
    size: 918734483,
    sha256: '5ffe980072ea29adfd84568d099bea366d9f72772b988e670794ae851b4e5627',
  },
  newsCommentary: {
    url: 'https://huggingface.co/datasets/wmt/wmt14/resolve/main-zip/training-parallel-nc-v9.zip',
    size: 80462375,
    sha256: 'ce199f93ec56ff480137ba29f0819f9a22e70d88be6d7458f112303d67d623d5',
  },
  dev: {
    url: 'https://huggingface.co/datasets/wmt/wmt19/resolve/main-zip/translation-task/dev.zip',
    size: 38714274,
    sha256: 'd796e363740fdc4261aa6f5a3d2f8223e3adaee7d737b7724863325b8956dfd1',
  },
} satisfies Record<string, RemoteFile>;

export const WMT14_CLEAN: CleanRule = { minWords: 1, maxWords: 250, maxRatio: 1.5 };
export const WMT14_TEST_PAIRS = 3003;
export const WMT14_VALID_PAIRS = 3000;

export type Wmt14Lang = 'en' | 'de';

/** Members to extract from each archive (matched by path suffix). */
export function wmt14Members(sourceLang: Wmt14Lang, targetLang: Wmt14Lang): Record<keyof typeof WMT14_ARCHIVES, string[]> {
  return {
    europarl: ['europarl-v7.de-en.de', 'europarl-v7.de-en.en'],
    commoncrawl: ['commoncrawl.de-en.de', 'commoncrawl.de-en.en'],
    newsCommentary: ['news-commentary-v9.de-en.de', 'news-commentary-v9.de-en.en'],
    dev: ['newstest2013.de', 'newstest2013.en', `newstest2014-deen-src.${sourceLang}.sgm`, `newstest2014-deen-ref.${targetLang}.sgm`],
  };
}

/** Writes OUT/{train,valid,test}.{src,tgt} from extracted members (`files[member]` = path). */
export async function prepareWmt14(
  files: Record<string, string>,
  outDir: string,
  sourceLang: Wmt14Lang,
  targetLang: Wmt14Lang,
  opts: { log?: (m: string) => void; expectStandardSizes?: boolean } = {},
): Promise<{ train: number; valid: number; test: number; dropped: number }> {
  if (sourceLang === targetLang) throw new UserError(`--source-lang and --target-lang are both ${sourceLang}`);
  const log = opts.log ?? (() => {});
  const out = (split: string, lang: string) => new LineWriter(join(outDir, `${split}.${lang}`));
  const need = (name: string) => {
    const p = files[name];
    if (!p) throw new UserError(`missing ${name} among the extracted WMT14 files`);
    return p;
  };

  const [trainS, trainT] = [out('train', sourceLang), out('train', targetLang)];
  let dropped = 0;
  for (const corpus of ['europarl-v7', 'commoncrawl', 'news-commentary-v9']) {
    const before = trainS.count;
    for await (const { source, target } of readLinePairs(need(`${corpus}.de-en.${sourceLang}`), need(`${corpus}.de-en.${targetLang}`), { invalid: 'replace' })) {
      const a = normalizeSpaces(source);
      const b = normalizeSpaces(target);
      if (!keepPair(a, b, WMT14_CLEAN)) {
        dropped++;
        continue;
      }
      await trainS.write(a);
      await trainT.write(b);
    }
    log(`  ${corpus}: ${trainS.count - before} pairs kept`);
  }
  await trainS.close();
  await trainT.close();

  const [validS, validT] = [out('valid', sourceLang), out('valid', targetLang)];
  for await (const { source, target } of readLinePairs(need(`newstest2013.${sourceLang}`), need(`newstest2013.${targetLang}`))) {
    await validS.write(normalizeSpaces(source));
    await validT.write(normalizeSpaces(target));
  }
  await validS.close();
  await validT.close();

  const srcSgm = need(`newstest2014-deen-src.${sourceLang}.sgm`);
  const refSgm = need(`newstest2014-deen-ref.${targetLang}.sgm`);
  const src = parseSegments(readFileSync(srcSgm, 'utf8'), srcSgm);
  const ref = parseSegments(readFileSync(refSgm, 'utf8'), refSgm);
  if (src.length !== ref.length) throw new UserError(`${srcSgm} has ${src.length} segments but ${refSgm} has ${ref.length}`);
  const [testS, testT] = [out('test', sourceLang), out('test', targetLang)];
  for (let i = 0; i < src.length; i++) {
    await testS.write(normalizeSpaces(src[i]));
    await testT.write(normalizeSpaces(ref[i]));
  }
  await testS.close();
  await testT.close();

  const counts = { train: trainS.count, valid: validS.count, test: testS.count, dropped };
  if (opts.expectStandardSizes && (counts.valid !== WMT14_VALID_PAIRS || counts.test !== WMT14_TEST_PAIRS)) {
    throw new UserError(
      `newstest2013/newstest2014 have ${counts.valid}/${counts.test} pairs, expected ${WMT14_VALID_PAIRS}/${WMT14_TEST_PAIRS} (not the standard release?)`,
    );
  }
  return counts;
}
