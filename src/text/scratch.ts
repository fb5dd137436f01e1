/**
 * Scratch folders named `<prefix><pid>` (e.g. `.tokenizer-1234` while a tokenizer is trained in a
 * run folder). A run that was killed outright (kill -9, out of memory) cannot remove its own, so
 * the next run removes those whose process is gone.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes `dir/<prefix><pid>` folders left by dead processes (and by an earlier life of this very
 * pid, as after a restart in a container where the run is always pid 1). Returns their names.
 */
export function removeStaleScratch(dir: string, prefix: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return []; // no folder yet: nothing stale
  }
  const removed: string[] = [];
  for (const entry of entries) {
    if (!entry.startsWith(prefix)) continue;
    const pidText = entry.slice(prefix.length);
    if (!/^\d+$/.test(pidText)) continue;
    const pid = Number(pidText);
    // Our own pid: this process has not made its scratch folder yet, so the one there is stale.
    if (pid !== process.pid && isAlive(pid)) continue;
    rmSync(join(dir, entry), { recursive: true, force: true });
    removed.push(entry);
  }
  return removed;
}
