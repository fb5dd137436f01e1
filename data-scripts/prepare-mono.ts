/**
 * A folder of text files → a masked-LM corpus `OUT/{train,valid,test}.txt` + its SentencePiece model:
 *   npx tsx data-scripts/prepare-mono.ts --input DIR --out OUT [--valid-lines 1000] [--test-lines 1000]
 *                                        [--vocab-size 8000] [--no-spm]
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { UserError } from '../src/errors.ts';
import { trainSentencePiece } from '../src/text/train-sentencepiece.ts';
import { prepareMono } from './lib/mono.ts';
import { runScript } from './lib/script.ts';
import { positiveInt } from './lib/args.ts';

await runScript(async () => {
  const { values } = parseArgs({
    options: {
      input: { type: 'string' },
      out: { type: 'string' },
      'valid-lines': { type: 'string', default: '1000' },
      'test-lines': { type: 'string', default: '1000' },
      'vocab-size': { type: 'string', default: '8000' },
      'no-spm': { type: 'boolean', default: false },
    },
  });
  if (!values.input || !values.out) throw new UserError('usage: prepare-mono --input DIR --out OUT (both required)');
  mkdirSync(values.out, { recursive: true });
  console.log(`preparing ${values.input} → ${values.out}`);
  const counts = await prepareMono(values.input, values.out, {
    validLines: positiveInt(values['valid-lines']!, '--valid-lines'),
    testLines: positiveInt(values['test-lines']!, '--test-lines'),
    log: console.log,
  });
  console.log(`wrote ${values.out}/{train,valid,test}.txt: ${counts.train} / ${counts.valid} / ${counts.test} lines from ${counts.files} files`);
  if (!values['no-spm']) {
    const model = await trainSentencePiece({
      input: join(values.out, 'train.txt'),
      modelPrefix: join(values.out, 'spm'),
      vocabSize: positiveInt(values['vocab-size']!, '--vocab-size'),
      sampleSentences: 4_000_000,
    });
    console.log(`wrote ${model}`);
  }
});
