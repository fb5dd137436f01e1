/** Runs a data script's main function: user mistakes print `error: <one line>` and exit 1. */
import { UserError } from '../../src/errors.ts';

export async function runScript(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (e instanceof UserError || (e instanceof Error && !(e instanceof TypeError) && !(e instanceof RangeError))) {
      console.error(`error: ${(e as Error).message}`);
      process.exit(1);
    }
    throw e;
  }
}
