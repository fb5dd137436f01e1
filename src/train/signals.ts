/**
 * Graceful interruption (SIGINT = Ctrl-C, SIGTERM = `kill`), only where the program asks for it.
 *
 * A library must not change what a signal does to its host process: by default nothing here
 * listens, and Ctrl-C ends the process as it would without this package. A program that wants a
 * training to finish its update, save checkpoint_last and return 'interrupted' either passes
 * `handleSignals: true` to one Trainer, or calls `enableSignalHandling()` once (the CLI's entry
 * point does), which makes that the default of every Trainer with an output folder.
 */

let enabledByProcess = false;

/**
 * Opts this process in: from now on Trainers with an `outDir` catch SIGINT/SIGTERM while they
 * train (their `handleSignals` defaults to true). No listener is installed by this call itself,
 * so outside a training a signal keeps its default action. Returns a function that opts out again.
 */
export function enableSignalHandling(): () => void {
  enabledByProcess = true;
  return () => {
    enabledByProcess = false;
  };
}

/** Whether `enableSignalHandling()` was called (and not undone). */
export function signalHandlingEnabled(): boolean {
  return enabledByProcess;
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * SIGINT/SIGTERM listeners for the duration of one job: the first signal is recorded (`signal`)
 * and reported to `onFirst`, so the job can stop at its next safe point; a second one removes the
 * listeners and re-raises itself, so the signal's default action ends the process at once (exit
 * status 128 + signal, as shells expect) without a process.exit here. `stop()` when the job ends.
 */
export class InterruptWatch {
  signal: NodeJS.Signals | null = null;
  private readonly listener = (signal: NodeJS.Signals): void => {
    if (this.signal) {
      this.stop();
      process.kill(process.pid, signal);
      return;
    }
    this.signal = signal;
    this.onFirst(signal);
  };

  constructor(private readonly onFirst: (signal: NodeJS.Signals) => void) {
    for (const s of SIGNALS) process.on(s, this.listener);
  }

  stop(): void {
    for (const s of SIGNALS) process.off(s, this.listener);
  }
}
