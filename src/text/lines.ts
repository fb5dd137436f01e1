/**
 * Streams a text file line by line with strict UTF-8 checking, so a corpus of any size is read
 * without holding it in memory, and a bad byte is reported with its file and line.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { UserError } from '../errors.ts';

export interface Line {
  /** 1-based. */
  lineNumber: number;
  text: string;
}

/** Checks the file exists, is a file, and is not empty (one-line UserError otherwise). */
export function checkTextFile(path: string, expected = 'UTF-8 text, one sentence per line'): void {
  if (!existsSync(path)) throw new UserError(`${path} not found (expected ${expected})`);
  const st = statSync(path);
  if (!st.isFile()) throw new UserError(`${path} is not a file (expected ${expected})`);
  if (st.size === 0) throw new UserError(`${path} is empty (expected ${expected})`);
}

function invalidUtf8(path: string, lineNumber: number): UserError {
  return new UserError(`${path}:${lineNumber}: invalid UTF-8 (expected UTF-8 text, one sentence per line)`);
}

/**
 * Decodes a whole file's bytes as strict UTF-8 (the rule readLines applies line by line), for
 * readers that need the text at once (masked-LM splits, `bleu`'s files). Bytes are kept as they
 * are otherwise (no BOM or CR removal). Throws UserError `path:line: invalid UTF-8 ...` naming the
 * first bad line.
 */
export function decodeUtf8File(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    // Find the line: a newline byte is never inside a UTF-8 sequence, so lines decode on their own.
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let start = 0;
    for (let line = 1; ; line++) {
      const nl = bytes.indexOf(0x0a, start);
      const end = nl === -1 ? bytes.length : nl;
      try {
        decoder.decode(bytes.subarray(start, end));
      } catch {
        throw invalidUtf8(path, line);
      }
      if (nl === -1) throw invalidUtf8(path, line);
      start = nl + 1;
    }
  }
}

/**
 * Yields the lines of `path` (without their `\n` or `\r\n`; a leading BOM is dropped).
 * Throws UserError `path:line: invalid UTF-8 ...` on the first malformed line, unless
 * `invalid: 'replace'` (for raw downloads), which turns bad bytes into U+FFFD.
 */
export async function* readLines(path: string, opts: { invalid?: 'error' | 'replace' } = {}): AsyncGenerator<Line> {
  checkTextFile(path);
  const decoder = new TextDecoder('utf-8', { fatal: (opts.invalid ?? 'error') === 'error' });
  let lineNumber = 0;
  let carry: Buffer = Buffer.alloc(0);
  const decode = (bytes: Buffer): string => {
    lineNumber++;
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    try {
      let text = decoder.decode(bytes.subarray(0, end));
      if (lineNumber === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
      return text;
    } catch {
      throw invalidUtf8(path, lineNumber);
    }
  };
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    let buf = chunk as Buffer;
    if (carry.length > 0) buf = Buffer.concat([carry, buf]);
    let start = 0;
    for (let nl = buf.indexOf(0x0a, start); nl !== -1; nl = buf.indexOf(0x0a, start)) {
      yield { lineNumber: lineNumber + 1, text: decode(buf.subarray(start, nl)) };
      start = nl + 1;
    }
    // Copy the unfinished line so the chunk's memory can be released.
    carry = Buffer.from(buf.subarray(start));
  }
  if (carry.length > 0) yield { lineNumber: lineNumber + 1, text: decode(carry) };
}
