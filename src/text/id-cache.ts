/**
 * The binary file that caches a text file's token ids, in the user cache folder (cache-dir.ts),
 * never next to the text (the user's data folder stays untouched):
 *   `<cacheDir>/ids/<hash of the text's folder>/<file name>.<key>.ids.bin`,
 *   key = hash of (format version, tokenizer fingerprint, file size, mtime).
 * It is rebuilt whenever the text or the tokenizer changes (the key changes), and written
 * atomically (temporary file + rename).
 *
 * Layout (little-endian): "FTIDS" 0 0 2 | u32 numLines | u32 0 | f64 numTokens |
 *   sha256 of the body (32 bytes) | body: u32 lengths[numLines] | i32 ids[numTokens].
 * A cache whose body does not match its checksum, or with an id outside the tokenizer's
 * vocabulary, is treated as missing (and rebuilt): a damaged cache must never reach the model.
 */
import { createHash, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, fstatSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { cacheDir } from './cache-dir.ts';

const MAGIC = Buffer.from([0x46, 0x54, 0x49, 0x44, 0x53, 0, 0, 2]);
const DIGEST_OFFSET = 24;
const HEADER_BYTES = 56;

export function idCachePath(textPath: string, tokenizerFingerprint: string): string {
  const st = statSync(textPath);
  const key = createHash('sha256')
    .update(`ids-v2\0${tokenizerFingerprint}\0${st.size}\0${st.mtimeMs}`)
    .digest('hex')
    .slice(0, 16);
  return join(idCacheFolder(textPath), `${basename(textPath)}.${key}.ids.bin`);
}

/** The cache folder of the texts in one data folder (keyed by that folder's real path). */
export function idCacheFolder(textPath: string): string {
  const folder = realpathSync(dirname(resolve(textPath)));
  return join(cacheDir(), 'ids', createHash('sha256').update(folder).digest('hex').slice(0, 16));
}

/**
 * Reads a cache file; null when it is missing, malformed, fails its checksum or holds an id not
 * below `vocabSize` (the caller then re-encodes).
 */
export function readIdCache(cachePath: string, vocabSize = Infinity): Int32Array[] | null {
  let fd: number;
  try {
    fd = openSync(cachePath, 'r');
  } catch {
    return null;
  }
  try {
    const size = fstatSync(fd).size;
    if (size < HEADER_BYTES) return null;
    const header = Buffer.alloc(HEADER_BYTES);
    readSync(fd, header, 0, HEADER_BYTES, 0);
    if (!header.subarray(0, 8).equals(MAGIC)) return null;
    const numLines = header.readUInt32LE(8);
    const numTokens = header.readDoubleLE(16);
    if (size !== HEADER_BYTES + 4 * numLines + 4 * numTokens) return null;
    // A fresh ArrayBuffer (4-byte aligned) holds lengths and ids; lines are views into it.
    const body = new ArrayBuffer(size - HEADER_BYTES);
    const bytes = new Uint8Array(body);
    for (let off = 0; off < bytes.length; ) {
      const n = readSync(fd, bytes, off, Math.min(1 << 26, bytes.length - off), HEADER_BYTES + off);
      if (n <= 0) return null;
      off += n;
    }
    const digest = createHash('sha256').update(bytes).digest();
    if (!digest.equals(header.subarray(DIGEST_OFFSET, HEADER_BYTES))) return null;
    const lengths = new Uint32Array(body, 0, numLines);
    const ids = new Int32Array(body, 4 * numLines, numTokens);
    for (let i = 0; i < ids.length; i++) if (ids[i] < 0 || ids[i] >= vocabSize) return null;
    const lines: Int32Array[] = new Array(numLines);
    let start = 0;
    for (let i = 0; i < numLines; i++) {
      lines[i] = ids.subarray(start, start + lengths[i]);
      start += lengths[i];
    }
    return start === numTokens ? lines : null;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `lines` (given as their lengths and the concatenated ids) atomically, and removes caches
 * of this text made before its last change (other tokenizers' caches of the current text stay).
 * Returns false when the folder is not writable.
 */
export function writeIdCache(cachePath: string, lengths: Uint32Array, ids: Int32Array, textPath: string): boolean {
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(lengths.length, 8);
  header.writeDoubleLE(ids.length, 16);
  createHash('sha256')
    .update(new Uint8Array(lengths.buffer, lengths.byteOffset, lengths.byteLength))
    .update(new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength))
    .digest()
    .copy(header, DIGEST_OFFSET);
  const tmp = `${cachePath}.tmp-${randomUUID()}`;
  try {
    mkdirSync(dirname(cachePath), { recursive: true });
    const fd = openSync(tmp, 'w');
    try {
      writeFileSync(fd, header);
      writeFileSync(fd, new Uint8Array(lengths.buffer, lengths.byteOffset, lengths.byteLength));
      writeFileSync(fd, new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength));
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, cachePath);
  } catch {
    rmSync(tmp, { force: true });
    return false;
  }
  const textChanged = statSync(textPath).mtimeMs;
  const dir = dirname(cachePath);
  const prefix = `${basename(textPath)}.`;
  for (const f of readdirSync(dir)) {
    if (f === basename(cachePath) || !f.startsWith(prefix) || !/^[0-9a-f]{16}\.ids\.bin$/.test(f.slice(prefix.length))) continue;
    const path = join(dir, f);
    try {
      if (statSync(path).mtimeMs < textChanged) rmSync(path, { force: true });
    } catch {
      // Removed meanwhile by another process: nothing to do.
    }
  }
  return true;
}
