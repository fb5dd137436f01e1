// How the CLI reports errors: library messages name config keys in backticks, the CLI shows the
// flags of the running command (flag-names.ts); an InternalError is reported as a bug, with its
// stack under FT_DEBUG=1.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { InternalError, UserError } from '../src/errors.ts';
import { configKeysOfFlags, flagNames, withFlagNames } from '../src/cli/flag-names.ts';
import { captureIo } from '../src/cli/io.ts';
import { buildProgram, runCli, runningFlagNames } from '../src/cli/main.ts';
import { reportError } from '../src/cli/report-error.ts';
import { mlmOverridesFromFlags } from '../src/cli/commands/mlm.ts';
import { overridesFromFlags } from '../src/cli/commands/translation.ts';
import { acquireOutputLock } from '../src/train/lock.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-cli-errors-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function subcommand(program: Command, ...path: string[]): Command {
  return path.reduce((c, name) => c.commands.find((s) => s.name() === name)!, program);
}

describe('config key → flag table', () => {
  const keys = configKeysOfFlags([overridesFromFlags, mlmOverridesFromFlags]);
  const program = buildProgram(captureIo());

  it('is read off the commands: attribute names, and the config keys their flags set (dotted and bare)', () => {
    expect(keys.get('train.maxTimeMinutes')).toBe('maxTime');
    expect(keys.get('model.attentionRank')).toBe('rank');
    const names = flagNames(subcommand(program, 'train', 'translation'), keys);
    expect(Object.fromEntries(['out', 'resume', 'keepLast', 'maxSteps', 'train.maxSteps', 'maxTimeMinutes', 'train.maxTimeMinutes', 'model.attentionRank', 'sourceLang', 'backend', 'spectralInit'].map((k) => [k, names.get(k)]))).toEqual({
      out: '--out',
      resume: '--resume',
      keepLast: '--keep-last',
      maxSteps: '--max-steps',
      'train.maxSteps': '--max-steps',
      maxTimeMinutes: '--max-time',
      'train.maxTimeMinutes': '--max-time',
      'model.attentionRank': '--rank',
      sourceLang: '--source-lang',
      backend: '--backend',
      spectralInit: '--spectral-init',
    });
    expect(names.has('model.modelDim')).toBe(false);
  });

  it('holds only the flags of the running command', () => {
    const quickstart = flagNames(subcommand(program, 'quickstart'), keys);
    expect([quickstart.get('overwrite'), quickstart.get('maxTimeMinutes'), quickstart.get('resume')]).toEqual(['--overwrite', '--max-time', undefined]);
    // In an experiment, `train.maxSteps` is a key of the spec file, not a flag.
    const experiment = flagNames(subcommand(program, 'experiment'), keys);
    expect([experiment.get('out'), experiment.get('train.maxSteps')]).toEqual(['--out', undefined]);
    // Before a subcommand is chosen: the global flags only.
    expect([...runningFlagNames(program).values()].sort()).toEqual(['--backend', '--version']);
  });

  it('replaces keys that have a flag; other keys keep their backticks', () => {
    const names = new Map([['out', '--out'], ['resume', '--resume'], ['train.maxSteps', '--max-steps']]);
    expect(withFlagNames('`out` /x: already holds checkpoint_last; pass `resume` to continue it', names)).toBe('--out /x: already holds checkpoint_last; pass --resume to continue it');
    expect(withFlagNames('set `train.maxSteps` or `train.maxEpochs`; `model.modelDim` is 33', names)).toBe('set --max-steps or `train.maxEpochs`; `model.modelDim` is 33');
  });
});

describe('reportError', () => {
  it('shows a UserError with the flags of the given table, one line, exit 1', () => {
    const io = captureIo();
    const names = new Map([['out', '--out'], ['resume', '--resume']]);
    expect(reportError(new UserError('`out` /x: already holds checkpoint_last; pass `resume` to continue it\nsecond line'), io, names)).toBe(1);
    expect(io.err).toBe('error: --out /x: already holds checkpoint_last; pass --resume to continue it\n');
  });

  function withDebug<T>(value: string | undefined, body: () => T): T {
    const saved = process.env.FT_DEBUG;
    if (value === undefined) delete process.env.FT_DEBUG;
    else process.env.FT_DEBUG = value;
    try {
      return body();
    } finally {
      if (saved === undefined) delete process.env.FT_DEBUG;
      else process.env.FT_DEBUG = saved;
    }
  }

  it('reports an InternalError as a bug, exit 2: a hint without FT_DEBUG, the stack with FT_DEBUG=1', () => {
    const err = new InternalError('addFrobeniusDecay: expected U [H?, m, r] and V [H?, n, r]; got [2,3] and [4]');
    const plain = captureIo();
    expect(withDebug(undefined, () => reportError(err, plain))).toBe(2);
    expect(plain.err).toBe(
      'error: internal error: addFrobeniusDecay: expected U [H?, m, r] and V [H?, n, r]; got [2,3] and [4]\n' +
        'hint: this is a bug in factorized-transformer (or in code calling it), not a mistake in your input; rerun with FT_DEBUG=1 for the stack trace and report it\n',
    );
    const debug = captureIo();
    expect(withDebug('1', () => reportError(err, debug))).toBe(2);
    expect(debug.err).toMatch(/^error: internal error: addFrobeniusDecay: .*\nInternalError: addFrobeniusDecay: .*\n\s+at /);
    expect(debug.err).toContain('cli-errors.test.ts');
    expect(debug.err).not.toContain('hint:');
  });
});

describe('a library error names the key, the CLI names the flag', () => {
  it('another training holds --out', async () => {
    const out = join(root, 'held');
    const lock = acquireOutputLock(out);
    try {
      expect(() => acquireOutputLock(out)).toThrow(/^`out` .*held: another training \(this process, since .*\) is writing to this folder; use another `out` or wait/);
      const io = captureIo();
      const args = ['train', 'translation', '--data', 'test/fixtures/tasks/copy', '--source-lang', 'xx', '--target-lang', 'yy', '--max-steps', '1', '--out', out];
      expect(await runCli(args, io)).toBe(1);
      expect(io.err).toMatch(/^error: --out .*held: another training \(this process, since .*\) is writing to this folder; use another --out or wait for it to finish\n$/);
    } finally {
      lock.release();
    }
  });
});
