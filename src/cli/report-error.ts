/**
 * How the CLI reports a failure. A user mistake (UserError) is one line, `error: <message>`,
 * exit 1, no stack trace; the config keys it names in backticks are shown as the flags that set
 * them (flag-names.ts). A broken internal contract (InternalError) is reported as a bug. Anything
 * else is a bug or an environment problem. Both: the first line plus a hint, exit 2 (the full
 * stack with FT_DEBUG=1).
 */
import { CommanderError } from 'commander';
import { constants } from 'node:os';
import { InternalError, UserError } from '../errors.ts';
import { withFlagNames, type FlagNames } from './flag-names.ts';
import type { CliIo } from './io.ts';

export const EXIT_USER_ERROR = 1;
export const EXIT_INTERNAL_ERROR = 2;

/**
 * File-system errors that are the user's to fix (a path that is a file, a read-only or full disk,
 * no permission), whatever code raised them: one line naming the path, exit 1, not "report it".
 */
const FILE_SYSTEM_ERRORS: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EEXIST: 'a file is in the way (expected a folder, or nothing)',
  EISDIR: 'is a folder, not a file',
  ENOTDIR: 'a part of the path is a file, not a folder',
  ENOSPC: 'disk full',
  EDQUOT: 'disk quota exceeded',
  ENAMETOOLONG: 'name too long',
};

/** The one-line message for a file-system error the user can fix, or null for anything else. */
export function fileSystemProblem(err: unknown): string | null {
  const e = err as NodeJS.ErrnoException & { dest?: string };
  if (!(err instanceof Error) || typeof e.code !== 'string' || !(e.code in FILE_SYSTEM_ERRORS)) return null;
  const where = e.path ? `${e.path}${e.dest ? ` -> ${e.dest}` : ''}: ` : '';
  return `${where}${FILE_SYSTEM_ERRORS[e.code]} (${e.code}${e.syscall ? ` in ${e.syscall}` : ''})`;
}

/** 128 + signal number for a run stopped by SIGINT/SIGTERM (after saving), or null. */
export function interruptedExitCode(err: unknown): number | null {
  const signal = (err as { signal?: unknown } | null)?.signal;
  if (!(err instanceof Error) || err.name !== 'InterruptedError' || typeof signal !== 'string') return null;
  const number = (constants.signals as Record<string, number>)[signal];
  return number === undefined ? null : 128 + number;
}

function firstLine(text: string): string {
  return text.split('\n').find((line) => line.trim() !== '')?.trim() ?? '';
}

/** The stack under FT_DEBUG, else `hint`. */
function stackOrHint(err: unknown, io: CliIo, hint: string): void {
  if (process.env.FT_DEBUG && err instanceof Error && err.stack) io.stderr(`${err.stack}\n`);
  else io.stderr(`hint: ${hint}\n`);
}

/**
 * Prints `err` and returns the exit code. `flags` names the flag of each config key the running
 * command has one for (empty: keys are shown as the library wrote them).
 */
export function reportError(err: unknown, io: CliIo, flags: FlagNames = new Map()): number {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or the help text); keep its exit code.
    return err.exitCode;
  }
  if (err instanceof UserError) {
    io.stderr(`error: ${withFlagNames(firstLine(err.message), flags)}\n`);
    return EXIT_USER_ERROR;
  }
  if (err instanceof InternalError) {
    io.stderr(`error: internal error: ${firstLine(err.message)}\n`);
    stackOrHint(err, io, 'this is a bug in factorized-transformer (or in code calling it), not a mistake in your input; rerun with FT_DEBUG=1 for the stack trace and report it');
    return EXIT_INTERNAL_ERROR;
  }
  const interrupted = interruptedExitCode(err);
  if (interrupted !== null) {
    io.stderr(`error: ${firstLine((err as Error).message)}\n`);
    return interrupted;
  }
  const fsProblem = fileSystemProblem(err);
  if (fsProblem !== null) {
    io.stderr(`error: ${fsProblem}\n`);
    return EXIT_USER_ERROR;
  }
  const message = err instanceof Error ? firstLine(err.message) || err.name : firstLine(String(err));
  io.stderr(`error: ${message}\n`);
  stackOrHint(err, io, 'this is not a known input mistake; rerun with FT_DEBUG=1 for the stack trace and report it if it persists');
  return EXIT_INTERNAL_ERROR;
}
