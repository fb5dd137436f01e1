/**
 * Extracts the members we need from the archives the benchmarks ship in: `.tgz` (IWSLT14) with the
 * `tar` package, `.zip` (the WMT14 mirror) with `yauzl`. Members are matched by the end of their
 * path, so a leading folder in the archive does not matter.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import yauzl from 'yauzl';
import { UserError } from '../../src/errors.ts';

function matcher(wanted: string[]): (entry: string) => string | undefined {
  return (entry) => wanted.find((w) => entry === w || entry.endsWith(`/${w}`));
}

/** Extracts members whose path ends with one of `wanted` into `destDir/<wanted>`; returns their paths. */
export async function extractTgz(archive: string, destDir: string, wanted: string[]): Promise<Record<string, string>> {
  const match = matcher(wanted);
  const found: Record<string, string> = {};
  mkdirSync(destDir, { recursive: true });
  const writes: Promise<void>[] = [];
  try {
    await tar.t({
      file: archive,
      onReadEntry: (entry) => {
        const name = match(entry.path);
        if (!name || entry.type !== 'File') return entry.resume();
        const out = join(destDir, name);
        mkdirSync(join(out, '..'), { recursive: true });
        found[name] = out;
        writes.push(pipeline(entry, createWriteStream(out)));
      },
    });
  } catch (e) {
    throw new UserError(`${archive} is not a readable .tgz archive (${(e as Error).message})`);
  }
  await Promise.all(writes);
  const missing = wanted.filter((w) => !(w in found));
  if (missing.length) throw new UserError(`${archive} lacks ${missing.join(', ')} (not the expected release?)`);
  return found;
}

export async function extractZip(archive: string, destDir: string, wanted: string[]): Promise<Record<string, string>> {
  const match = matcher(wanted);
  const found: Record<string, string> = {};
  mkdirSync(destDir, { recursive: true });
  let zip: yauzl.ZipFile;
  try {
    zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
      yauzl.open(archive, { lazyEntries: true }, (err, z) => (err ? reject(err) : resolve(z!))),
    );
  } catch (e) {
    throw new UserError(`${archive} is not a readable .zip archive (${(e as Error).message})`);
  }
  await new Promise<void>((resolve, reject) => {
    zip.on('error', reject);
    zip.on('end', resolve);
    zip.on('entry', (entry: yauzl.Entry) => {
      const name = match(entry.fileName);
      if (!name || entry.fileName.endsWith('/')) return zip.readEntry();
      zip.openReadStream(entry, (err, stream) => {
        if (err || !stream) return reject(err);
        const out = join(destDir, name);
        mkdirSync(join(out, '..'), { recursive: true });
        found[name] = out;
        pipeline(stream, createWriteStream(out)).then(() => zip.readEntry(), reject);
      });
    });
    zip.readEntry();
  });
  const missing = wanted.filter((w) => !(w in found));
  if (missing.length) throw new UserError(`${archive} lacks ${missing.join(', ')} (not the expected release?)`);
  return found;
}
