// The run folder on its own (src/train/run-folder.ts): taking it repairs what a crash left, a new
// run refuses to replace an existing one, and keepLast keeps the newest checkpoint_<step> copies.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LOCK_FILE } from '../src/train/lock.ts';
import { RunFolder, resumeSource } from '../src/train/run-folder.ts';

function tmpDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'ft-run-folder-'));
}

function folderWith(dir: string, file: string, text: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, file), text);
}

describe('RunFolder', () => {
  it('open takes the lock, puts back a checkpoint left mid-rename and removes temporaries; release frees it', () => {
    const out = tmpDir();
    // A kill between the two renames: the complete old checkpoint aside, nothing at checkpoint_last.
    folderWith(path.join(out, '.checkpoint_last.old-1-a'), 'model.json', 'old');
    folderWith(path.join(out, '.checkpoint_last.tmp-1-b'), 'model.json', 'half');
    folderWith(path.join(out, '.checkpoint_7.tmp-1'), 'model.json', 'half copy');
    const run = RunFolder.open(out);
    try {
      expect(existsSync(path.join(out, LOCK_FILE))).toBe(true);
      expect(readdirSync(out).sort()).toEqual([LOCK_FILE, 'checkpoint_last']);
      expect(readdirSync(run.lastCheckpoint)).toEqual(['model.json']);
      expect(() => RunFolder.open(out)).toThrow(/^`out` .*: another training \(this process/);
    } finally {
      run.release();
    }
    expect(existsSync(path.join(out, LOCK_FILE))).toBe(false);
  });

  it('refuses to replace an existing run unless told to; names the keys, not flags', () => {
    const out = tmpDir();
    folderWith(path.join(out, 'checkpoint_last'), 'model.json', '{}');
    const run = RunFolder.open(out);
    try {
      expect(() => run.refuseToReplace(false)).toThrow(/^`out` .*: already holds checkpoint_last; pass `resume` to continue it, or choose another folder$/);
      expect(() => run.refuseToReplace(true)).not.toThrow();
      expect(resumeSource(true, run)).toBe(run.lastCheckpoint);
      expect(resumeSource('/elsewhere/checkpoint_last', run)).toBe('/elsewhere/checkpoint_last');
      expect(resumeSource(false, run)).toBe(null);
      expect(run.holds(run.lastCheckpoint)).toBe(true);
      expect(run.holds('/elsewhere/checkpoint_last')).toBe(false);
    } finally {
      run.release();
    }
    expect(resumeSource(true, null)).toBe(null);
  });

  it('keepStepCopy copies checkpoint_last to checkpoint_<step> and keeps the newest keepLast', async () => {
    const out = tmpDir();
    const run = RunFolder.open(out);
    try {
      for (const step of [1, 2, 3, 4]) {
        folderWith(run.lastCheckpoint, 'step.txt', String(step));
        await run.keepStepCopy(step, 2);
      }
      await run.keepStepCopy(5, 1); // keepLast 1: checkpoint_last only, nothing copied or removed
      expect(readdirSync(out).filter((f) => f.startsWith('checkpoint_')).sort()).toEqual(['checkpoint_3', 'checkpoint_4', 'checkpoint_last']);
      expect(readdirSync(path.join(out, 'checkpoint_4'))).toEqual(['step.txt']);
    } finally {
      run.release();
    }
  });
});
