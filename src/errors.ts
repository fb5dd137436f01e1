/**
 * A mistake of the user's (bad file, option or input). Its message is one line that names the
 * file, line or option and what was expected; the CLI prints it without a stack trace.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * The run was stopped by a signal (Ctrl-C = SIGINT, `kill` = SIGTERM) after cleaning up; the CLI
 * exits with 128 + the signal number (130, 143), as shells and schedulers expect.
 */
export class InterruptedError extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
    this.name = 'InterruptedError';
  }
}

/**
 * A broken internal contract (a tensor of the wrong shape reaching a layer, a state that cannot
 * happen): a bug in this package or in the caller's code, not a mistake in the user's input. The
 * CLI reports it as a bug and prints its stack under FT_DEBUG=1; it never looks like a UserError.
 */
export class InternalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InternalError';
  }
}
