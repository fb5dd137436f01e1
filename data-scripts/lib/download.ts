/**
 * Downloads a file with node's fetch into `dest`, streaming to a temporary file, then checks its
 * size and sha256 against the manifest before renaming it into place. An existing `dest` with the
 * right checksum is re-used.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UserError } from '../../src/errors.ts';

export interface RemoteFile {
  url: string;
  /** Expected size in bytes and sha256 (hex), or null where no published value is known. */
  size: number | null;
  sha256: string | null;
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** Throws UserError when the file's size or checksum differs from the manifest. */
export async function verifyFile(path: string, file: RemoteFile): Promise<{ size: number; sha256: string }> {
  const size = statSync(path).size;
  if (file.size !== null && size !== file.size) {
    throw new UserError(`${path}: ${size} bytes, expected ${file.size} for ${file.url} (incomplete or changed download; delete it and retry)`);
  }
  const sha256 = await sha256File(path);
  if (file.sha256 !== null && sha256 !== file.sha256) {
    throw new UserError(`${path}: sha256 ${sha256}, expected ${file.sha256} for ${file.url} (corrupt or changed download; delete it and retry)`);
  }
  return { size, sha256 };
}

export async function download(file: RemoteFile, dest: string, log: (m: string) => void = console.log): Promise<string> {
  if (existsSync(dest)) {
    const got = await verifyFile(dest, file);
    log(`re-using ${dest} (${got.size} bytes, sha256 ${got.sha256}${file.sha256 ? ', verified' : ', no published checksum'})`);
    return dest;
  }
  mkdirSync(dirname(dest), { recursive: true });
  const tmp = `${dest}.part`;
  log(`downloading ${file.url}${file.size ? ` (${(file.size / 1e6).toFixed(1)} MB)` : ''} ...`);
  let response: Response;
  try {
    response = await fetch(file.url);
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new UserError(
      `cannot download ${file.url}: ${cause?.code ?? cause?.message ?? (e as Error).message} (no internet? fetch it by hand to ${dest} and rerun)`,
    );
  }
  if (!response.ok || !response.body) {
    throw new UserError(`cannot download ${file.url}: HTTP ${response.status} (fetch it by hand to ${dest} and rerun)`);
  }
  try {
    let received = 0;
    let nextReport = 50e6;
    const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream);
    body.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received >= nextReport) {
        log(`  ${(received / 1e6).toFixed(0)} MB`);
        nextReport += 50e6;
      }
    });
    await pipeline(body, createWriteStream(tmp));
    const got = await verifyFile(tmp, file);
    renameSync(tmp, dest);
    log(`wrote ${dest} (${got.size} bytes, sha256 ${got.sha256}${file.sha256 ? ', verified' : ', no published checksum to verify against'})`);
    return dest;
  } finally {
    rmSync(tmp, { force: true });
  }
}
