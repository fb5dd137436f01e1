/**
 * Where a CLI run reads and writes. The real process streams by default; tests pass a captured
 * io to run the CLI in-process (spawning a process costs seconds of start-up per call).
 */
import { decodeUtf8File } from '../text/lines.ts';

export interface CliIo {
  /** Writes to standard output (results: translations, scores, JSON). */
  stdout(text: string): void;
  /** Writes to standard error (progress, warnings, errors). */
  stderr(text: string): void;
  /** The whole of standard input, as UTF-8 text. */
  readStdin(): Promise<string>;
}

export function processIo(): CliIo {
  return {
    stdout: (text) => void process.stdout.write(text),
    stderr: (text) => void process.stderr.write(text),
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const chunk of process.stdin) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
      // Strict, as every file reader: invalid UTF-8 is an error naming the line, not U+FFFD.
      return decodeUtf8File(Buffer.concat(chunks), '<stdin>');
    },
  };
}

/** An io that records what was written, for tests; `stdin` is what readStdin returns. */
export interface CapturedIo extends CliIo {
  readonly out: string;
  readonly err: string;
}

export function captureIo(stdin = ''): CapturedIo {
  let out = '';
  let err = '';
  return {
    stdout: (text) => void (out += text),
    stderr: (text) => void (err += text),
    readStdin: async () => stdin,
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
}
