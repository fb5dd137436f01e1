/**
 * A training's output folder (docs/ARCHITECTURE.md §4.1, §4.3): taking it (the lock, then repairing
 * what a crash left), deciding where a run starts from, and keeping the last N `checkpoint_<step>`
 * copies. The trainer writes checkpoints and metrics into it; everything about the folder as a
 * whole lives here, so the loop in trainer.ts is only the loop.
 */
import * as path from 'node:path';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { cp, rename } from 'node:fs/promises';
import { UserError } from '../errors.ts';
import { listStepCheckpoints, recoverCheckpoint } from './checkpoint.ts';
import { acquireOutputLock, type OutputLock } from './lock.ts';

export const LAST_CHECKPOINT = 'checkpoint_last';
export const BEST_CHECKPOINT = 'checkpoint_best';
export const METRICS_FILE = 'metrics.jsonl';

/** Hidden copies of checkpoint_last on their way to checkpoint_<step> (see keepStepCopy). */
const STEP_COPY_TEMPORARY = /^\.checkpoint_\d+\.tmp-/;

/** An output folder this process holds the lock of. `release()` when the training ends. */
export class RunFolder {
  private constructor(
    readonly dir: string,
    private readonly lock: OutputLock,
  ) {}

  /**
   * Takes the lock on `dir` (created if needed; a UserError naming the holder when another
   * training has it), then repairs what a crash can leave: a checkpoint replacement interrupted
   * between its two renames, and hidden temporary folders. Repair needs the lock: without it
   * another process may be writing those temporaries right now.
   */
  static open(dir: string): RunFolder {
    const lock = acquireOutputLock(dir);
    try {
      recoverCheckpoint(path.join(dir, LAST_CHECKPOINT), true);
      recoverCheckpoint(path.join(dir, BEST_CHECKPOINT), true);
      for (const entry of readdirSync(dir)) {
        if (STEP_COPY_TEMPORARY.test(entry)) rmSync(path.join(dir, entry), { recursive: true, force: true });
      }
    } catch (err) {
      lock.release();
      throw err;
    }
    return new RunFolder(dir, lock);
  }

  get lastCheckpoint(): string {
    return path.join(this.dir, LAST_CHECKPOINT);
  }

  get bestCheckpoint(): string {
    return path.join(this.dir, BEST_CHECKPOINT);
  }

  get metricsFile(): string {
    return path.join(this.dir, METRICS_FILE);
  }

  /** Whether `checkpointDir` is one of this folder's own checkpoints (so its temporaries are ours to remove). */
  holds(checkpointDir: string): boolean {
    return path.dirname(path.resolve(checkpointDir)) === path.resolve(this.dir);
  }

  /**
   * Refuses to start a new run over an existing one: its checkpoint_last would be replaced by the
   * new run's first save. `overwrite` says the caller means to.
   */
  refuseToReplace(overwrite: boolean): void {
    if (!overwrite && existsSync(this.lastCheckpoint)) {
      throw new UserError(`\`out\` ${this.dir}: already holds ${LAST_CHECKPOINT}; pass \`resume\` to continue it, or choose another folder`);
    }
  }

  /**
   * Copies the complete checkpoint_last to checkpoint_<step> and removes the oldest copies beyond
   * `keepLast`. The copy is made under a hidden name and renamed, so it is never half-visible.
   */
  async keepStepCopy(step: number, keepLast: number): Promise<void> {
    if (keepLast <= 1) return;
    const stepDir = path.join(this.dir, `checkpoint_${step}`);
    const tmp = path.join(this.dir, `.checkpoint_${step}.tmp-${process.pid}`);
    try {
      rmSync(tmp, { recursive: true, force: true });
      await cp(this.lastCheckpoint, tmp, { recursive: true });
      rmSync(stepDir, { recursive: true, force: true });
      await rename(tmp, stepDir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code) throw new UserError(`cannot write checkpoint ${stepDir}: ${code}; ${LAST_CHECKPOINT} is complete`);
      throw err;
    }
    const all = listStepCheckpoints(this.dir);
    for (const old of all.slice(0, Math.max(0, all.length - keepLast))) rmSync(old.dir, { recursive: true, force: true });
  }

  release(): void {
    this.lock.release();
  }
}

/**
 * The checkpoint a run continues from: `resume` as a folder path, or `true` for the run folder's
 * checkpoint_last when it exists (a first run with `resume` starts afresh); null to start afresh.
 */
export function resumeSource(resume: boolean | string | undefined, run: RunFolder | null): string | null {
  if (typeof resume === 'string') return resume;
  if (resume && run && existsSync(run.lastCheckpoint)) return run.lastCheckpoint;
  return null;
}
