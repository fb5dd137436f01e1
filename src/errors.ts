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
