/**
 * One training per output folder: `<out>/.lock` holds the owner's pid and, on Linux, the kernel's
 * start time of that process (/proc/PID/stat field 22). A second training refuses; a lock whose
 * owner is gone is taken over. A pid alone is not enough: in a container the trainer is often PID 1
 * again after a kill -9, and any unrelated process may get the old pid; pid + start time names
 * exactly one process for the life of the machine.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors.ts';

export const LOCK_FILE = '.lock';

export interface OutputLock {
  file: string;
  release(): void;
}

interface LockInfo {
  pid: number;
  host: string;
  started: string;
  /** /proc/PID/stat's starttime (clock ticks since boot); absent where /proc is not (or in old locks). */
  procStart?: string;
}

/**
 * The start time of process `pid` as the kernel records it (field 22 of /proc/PID/stat), 'gone'
 * when there is no such process, null when /proc cannot tell (not Linux, or hidden).
 */
export function processStartTime(pid: number): string | 'gone' | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' && existsSync('/proc/self/stat') ? 'gone' : null;
  }
  // Field 2 (the command name) is in parentheses and may hold spaces or ')': split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[22 - 3] ?? null;
}

const ownStart = processStartTime(process.pid);

function isAlive(info: LockInfo, file: string): boolean {
  if (info.pid === process.pid) {
    // Our own pid: it is us only if the start time is ours too (else a previous incarnation, e.g.
    // PID 1 of a restarted container). Old locks without a start time: held only if we hold it.
    if (info.procStart !== undefined && ownStart !== null && ownStart !== 'gone') return info.procStart === ownStart;
    return heldLocks.has(path.resolve(file));
  }
  const start = processStartTime(info.pid);
  if (start === 'gone') return false;
  // A live process with another start time took over the pid of the dead owner.
  if (start !== null && info.procStart !== undefined) return start === info.procStart;
  try {
    process.kill(info.pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Lock files this process holds (to recognise its own old-format locks). */
const heldLocks = new Set<string>();

function readLock(file: string): LockInfo | null {
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as LockInfo;
    return Number.isInteger(info.pid) ? info : null;
  } catch {
    return null; // vanished or half-written: treated as stale below
  }
}

/** Whether a live process on this host holds the lock of `outDir` (i.e. is training into it). */
export function isOutputLocked(outDir: string): boolean {
  const holder = readLock(path.join(outDir, LOCK_FILE));
  return holder !== null && (holder.host !== os.hostname() || isAlive(holder, path.join(outDir, LOCK_FILE)));
}

/** Takes the lock on `outDir` (created if needed) or throws a UserError naming the holder. */
export function acquireOutputLock(outDir: string): OutputLock {
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, LOCK_FILE);
  const info: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
  if (ownStart !== null && ownStart !== 'gone') info.procStart = ownStart;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      // 'wx' fails if the file exists: creation is the atomic test-and-set.
      const fd = openSync(file, 'wx');
      try {
        writeSync(fd, JSON.stringify(info));
      } finally {
        closeSync(fd);
      }
      return makeLock(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new UserError(`\`out\` ${outDir}: cannot create lock file ${file} (${(err as NodeJS.ErrnoException).code})`);
      }
    }
    const holder = readLock(file);
    if (holder && holder.host === os.hostname() && isAlive(holder, file)) {
      const who = holder.pid === process.pid ? 'this process' : `process ${holder.pid}`;
      throw new UserError(`\`out\` ${outDir}: another training (${who}, since ${holder.started}) is writing to this folder; use another \`out\` or wait for it to finish`);
    }
    if (holder && holder.host !== os.hostname()) {
      throw new UserError(`\`out\` ${outDir}: locked by pid ${holder.pid} on host ${holder.host}; remove ${file} if that training is gone`);
    }
    // Stale: its process is dead. Re-check right before removing, narrowing the race with another taker.
    const again = readLock(file);
    if (again?.pid === holder?.pid && again?.procStart === holder?.procStart) {
      try {
        unlinkSync(file);
      } catch {
        /* someone else removed it first; retry creation */
      }
    }
  }
  throw new UserError(`\`out\` ${outDir}: could not take the lock ${file}`);
}

function makeLock(file: string): OutputLock {
  let released = false;
  heldLocks.add(path.resolve(file));
  const release = (): void => {
    if (released) return;
    released = true;
    heldLocks.delete(path.resolve(file));
    process.off('exit', release);
    const holder = readLock(file);
    // Only our own lock: same pid and (where known) same start time.
    if (holder?.pid === process.pid && (holder.procStart === undefined || ownStart === null || holder.procStart === ownStart)) {
      try {
        unlinkSync(file);
      } catch {
        /* already gone */
      }
    }
  };
  process.on('exit', release);
  return { file, release };
}
