/**
 * A folder of plain-text files → the masked-LM layout `OUT/{train,valid,test}.txt`: files in name
 * order, one sentence (or paragraph) per line, blank lines dropped, whitespace normalized;
 * contiguous held-out chunks at the end (valid, then test), as for the shipped Moby-Dick corpus.
 * Two streaming passes (count, then write), so the input may be larger than memory.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../src/errors.ts';
import { readLines } from '../../src/text/lines.ts';
import { LineWriter, normalizeSpaces } from './text-io.ts';

export function monoInputFiles(inputDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(inputDir);
  } catch {
    throw new UserError(`--input ${inputDir}: not a readable folder`);
  }
  const files = names
    .filter((n) => n.endsWith('.txt'))
    .sort()
    .map((n) => join(inputDir, n))
    .filter((p) => statSync(p).isFile() && statSync(p).size > 0);
  if (files.length === 0) throw new UserError(`--input ${inputDir}: no non-empty *.txt files`);
  return files;
}

export async function prepareMono(
  inputDir: string,
  outDir: string,
  opts: { validLines: number; testLines: number; log?: (m: string) => void },
): Promise<{ train: number; valid: number; test: number; files: number }> {
  const files = monoInputFiles(inputDir);
  let total = 0;
  for (const f of files) for await (const { text } of readLines(f)) if (text.trim() !== '') total++;
  const trainEnd = total - opts.validLines - opts.testLines;
  if (trainEnd < 1) {
    throw new UserError(`${inputDir}: ${total} non-empty lines, too few for ${opts.validLines} valid + ${opts.testLines} test lines`);
  }
  const writers = {
    train: new LineWriter(join(outDir, 'train.txt')),
    valid: new LineWriter(join(outDir, 'valid.txt')),
    test: new LineWriter(join(outDir, 'test.txt')),
  };
  let n = 0;
  for (const f of files) {
    for await (const { text } of readLines(f)) {
      const line = normalizeSpaces(text);
      if (line === '') continue;
      const w = n < trainEnd ? writers.train : n < trainEnd + opts.validLines ? writers.valid : writers.test;
      await w.write(line);
      n++;
    }
    opts.log?.(`  read ${f}`);
  }
  for (const w of Object.values(writers)) await w.close();
  return { train: writers.train.count, valid: writers.valid.count, test: writers.test.count, files: files.length };
}
