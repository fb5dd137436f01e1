/**
 * Learning-rate schedules: stateless functions of the number of updates already done, so a resumed
 * run needs nothing but the update count. The rate for the (k+1)-th update is `lrAt(k)`, which is
 * fairseq's and Hugging Face's convention (the scheduler steps after each update).
 */
import { UserError } from '../errors.ts';

export type ScheduleConfig =
  | { kind: 'constant'; lr: number; warmupUpdates?: number }
  /** fairseq `inverse_sqrt`: linear from warmupInitLr to lr over warmupUpdates, then lr·sqrt(warmup/k). */
  | { kind: 'inverse_sqrt'; lr: number; warmupUpdates: number; warmupInitLr?: number }
  /** Linear warmup from 0 to lr over warmupUpdates, then linear decay to 0 at totalUpdates. */
  | { kind: 'linear'; lr: number; warmupUpdates: number; totalUpdates: number };

export type Schedule = (updatesDone: number) => number;

function check(cond: boolean, message: string): void {
  if (!cond) throw new UserError(message);
}

export function makeSchedule(config: ScheduleConfig): Schedule {
  const { lr } = config;
  check(Number.isFinite(lr) && lr > 0, `lr: expected a positive number, got ${lr}`);
  const warmup = config.warmupUpdates ?? 0;
  check(Number.isInteger(warmup) && warmup >= 0, `warmupUpdates: expected an integer >= 0, got ${warmup}`);
  switch (config.kind) {
    case 'constant':
      // Optional linear warmup from 0, then constant.
      return (k) => (k < warmup ? (lr * k) / warmup : lr);
    case 'inverse_sqrt': {
      // fairseq: warmup_init_lr defaults to 0 when warmup > 0, else to lr.
      const initLr = config.warmupInitLr ?? (warmup > 0 ? 0 : lr);
      check(Number.isFinite(initLr) && initLr >= 0, `warmupInitLr: expected a number >= 0, got ${initLr}`);
      const lrStep = warmup > 0 ? (lr - initLr) / warmup : 0;
      // With no warmup fairseq's decay factor would be 0; we decay from lr at the first update instead.
      const decayFactor = lr * Math.sqrt(Math.max(warmup, 1));
      return (k) => (k < warmup ? initLr + k * lrStep : decayFactor / Math.sqrt(Math.max(k, 1)));
    }
    case 'linear': {
      const total = config.totalUpdates;
      check(Number.isInteger(total) && total > 0, `totalUpdates: expected a positive integer, got ${total}`);
      check(warmup <= total, `warmupUpdates (${warmup}) must not exceed totalUpdates (${total})`);
      return (k) => {
        if (k < warmup) return (lr * k) / Math.max(1, warmup);
        return lr * Math.max(0, (total - k) / Math.max(1, total - warmup));
      };
    }
    default: {
      const kind = (config as { kind: string }).kind;
      throw new UserError(`schedule: unknown kind '${kind}'; expected constant, inverse_sqrt or linear`);
    }
  }
}
