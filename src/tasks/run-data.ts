/**
 * Which training data a run folder was started on: `<out>/run-data.json` records the corpus folder
 * and the size and sha256 of its training files, so that `resume` with other data is refused
 * (a resumed run must read exactly the batches an uninterrupted one would) and a resume without
 * the data option can find it.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { loadTokenizer, type Tokenizer } from '../text/tokenizer.ts';

export const RUN_DATA_JSON = 'run-data.json';

interface FileRecord {
  name: string;
  bytes: number;
  sha256: string;
}

export interface RunDataRecord {
  format: 'factorized-transformer/run-data@1';
  /** The corpus folder, absolute. */
  data: string;
  files: FileRecord[];
}

async function fileRecord(file: string): Promise<FileRecord> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return { name: basename(file), bytes: statSync(file).size, sha256: hash.digest('hex') };
}

/** The record of `files` (the training files) in the corpus folder `data`. */
export async function describeRunData(data: string, files: string[]): Promise<RunDataRecord> {
  const records: FileRecord[] = [];
  for (const f of files) records.push(await fileRecord(f));
  return { format: 'factorized-transformer/run-data@1', data: resolve(data), files: records };
}

/** The record stored in `out`, or null for a run started before records were kept. */
export function readRunData(out: string): RunDataRecord | null {
  const file = join(out, RUN_DATA_JSON);
  if (!existsSync(file)) return null;
  try {
    const record = JSON.parse(readFileSync(file, 'utf8')) as RunDataRecord;
    return record.format === 'factorized-transformer/run-data@1' && Array.isArray(record.files) ? record : null;
  } catch {
    return null; // damaged: the run is resumed as one without a record
  }
}

/** Writes the record atomically (a fresh run, before its first update). */
export function writeRunData(out: string, record: RunDataRecord): void {
  const file = join(out, RUN_DATA_JSON);
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(record, null, 1)}\n`);
  renameSync(tmp, file);
}

/**
 * A resumed run keeps the tokenizer stored in its checkpoint: `tokenizer` naming that same
 * tokenizer (a restart loop repeating its command line) is fine, any other is refused.
 */
export async function checkResumeTokenizer(given: string, runTokenizer: Tokenizer, out: string): Promise<void> {
  const tokenizer = await loadTokenizer(given);
  if (tokenizer.fingerprint !== runTokenizer.fingerprint) {
    throw new UserError(`\`resume\`: \`tokenizer\` ${given} is not the tokenizer the run in ${out} was trained with (kept in its checkpoint); leave \`tokenizer\` out to resume`);
  }
}

/**
 * Throws a UserError when `current` (the data given to a resumed run) differs from the run's
 * record; `key` is the option that named the data, for the message (e.g. 'data', shown in
 * backticks so that a CLI can show its flag).
 */
export function checkSameRunData(out: string, stored: RunDataRecord | null, current: RunDataRecord, key: string): void {
  if (stored === null) return;
  for (const s of stored.files) {
    const c = current.files.find((f) => f.name === s.name);
    if (!c || c.sha256 !== s.sha256) {
      const change = !c ? 'is missing' : c.bytes !== s.bytes ? `has ${c.bytes} bytes, not ${s.bytes}` : 'has other content';
      throw new UserError(
        `\`resume\`: \`${key}\` ${current.data}: ${s.name} ${change} compared with the data the run in ${out} was started on (${stored.data}); ` +
          'resume with that data, or start a new run in another folder',
      );
    }
  }
}
