/**
 * How the CLI reports a failure. A user mistake (UserError) is one line, `error: <message>`,
 * exit 1, no stack trace. Anything else is a bug or an environment problem: its first line plus
 * a hint, exit 2 (the full stack with FT_DEBUG=1).
 */
import { CommanderError } from 'commander';
import { UserError } from '../errors.ts';
import type { CliIo } from './io.ts';

export const EXIT_USER_ERROR = 1;
export const EXIT_INTERNAL_ERROR = 2;

function firstLine(text: string): string {
  return text.split('\n').find((line) => line.trim() !== '')?.trim() ?? '';
}

/** Prints `err` and returns the exit code. */
export function reportError(err: unknown, io: CliIo): number {
  if (err instanceof CommanderError) {
    // Commander has already printed its message (or the help text); keep its exit code.
    return err.exitCode;
  }
  if (err instanceof UserError) {
    io.stderr(`error: ${firstLine(err.message)}\n`);
    return EXIT_USER_ERROR;
  }
  const message = err instanceof Error ? firstLine(err.message) || err.name : firstLine(String(err));
  io.stderr(`error: ${message}\n`);
  if (process.env.FT_DEBUG && err instanceof Error && err.stack) {
    io.stderr(`${err.stack}\n`);
  } else {
    io.stderr('hint: this is not a known input mistake; rerun with FT_DEBUG=1 for the stack trace and report it if it persists\n');
  }
  return EXIT_INTERNAL_ERROR;
}
