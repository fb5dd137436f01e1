/**
 * One training per output folder: `<out>/.lock` holds the owner's pid. A second training refuses;
 * a lock left by a process that no longer exists is taken over.
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
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

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
  return holder !== null && (holder.host !== os.hostname() || isAlive(holder.pid));
}

/** Takes the lock on `outDir` (created if needed) or throws a UserError naming the holder. */
export function acquireOutputLock(outDir: string): OutputLock {
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, LOCK_FILE);
  const info: LockInfo = { pid: process.pid, host: os.hostname(), started: new Date().toISOString() };
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
        throw new UserError(`--out ${outDir}: cannot create lock file ${file} (${(err as NodeJS.ErrnoException).code})`);
      }
    }
    const holder = readLock(file);
    if (holder && holder.host === os.hostname() && isAlive(holder.pid)) {
      const who = holder.pid === process.pid ? 'this process' : `process ${holder.pid}`;
      throw new UserError(`--out ${outDir}: another training (${who}, since ${holder.started}) is writing to this folder; use another --out or wait for it to finish`);
    }
    if (holder && holder.host !== os.hostname()) {
      throw new UserError(`--out ${outDir}: locked by pid ${holder.pid} on host ${holder.host}; remove ${file} if that training is gone`);
    }
    // Stale: its process is dead. Re-check right before removing, narrowing the race with another taker.
    const again = readLock(file);
    if (again?.pid === holder?.pid) {
      try {
        unlinkSync(file);
      } catch {
        /* someone else removed it first; retry creation */
      }
    }
  }
  throw new UserError(`--out ${outDir}: could not take the lock ${file}`);
}

function makeLock(file: string): OutputLock {
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    process.off('exit', release);
    if (existsSync(file) && readLock(file)?.pid === process.pid) {
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
