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
