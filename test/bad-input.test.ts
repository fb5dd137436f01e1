// Bad input through the CLI, as one table: (case, expected exit code, expected message fragment).
// Each row is a mistake a careful user made (issue 13 and earlier): it must give exit code 1 and one
// line `error: …` naming the file or option, destroy nothing, and leave no empty --out behind.
// Add new cases as rows; the list only grows.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIo } from '../src/cli/io.ts';
import { runCli } from '../src/cli/main.ts';
import { idCacheFolder } from '../src/text/id-cache.ts';

const DATA = 'test/fixtures/tasks/copy';
const WORDPIECE = 'test/fixtures/text/wordpiece';
const FAKE_SPM = join(import.meta.dirname, 'fixtures/cli/fake-spm-train.sh');
const root = mkdtempSync(join(tmpdir(), 'ft-bad-input-'));

const LANGS = ['--source-lang', 'xx', '--target-lang', 'yy'];
const TINY = ['--preset', 'transformer_tiny', '--valid-bleu-samples', '0', '--progress', 'none'];
const train = (data: string, out: string, ...extra: string[]) => ['train', 'translation', '--data', data, ...LANGS, ...TINY, '--max-steps', '1', '--out', out, ...extra];
const mlm = (out: string, ...extra: string[]) => ['train', 'mlm', '--data', join(root, 'mlm-data'), '--tokenizer', WORDPIECE, '--preset', 'bert_tiny', '--max-steps', '1', '--progress', 'none', '--out', out, ...extra];
/** `train mlm --resume` as the user should type it (the run keeps its tokenizer). */
const mlmResume = (out: string) => ['train', 'mlm', '--data', join(root, 'mlm-data'), '--resume', '--max-steps', '2', '--progress', 'none', '--out', out];

/** A fresh path under the test folder. */
const p = (...parts: string[]) => join(root, ...parts);

/** A copy of the fixture corpus (without id caches, optionally without its tokenizer). */
function corpusCopy(name: string, opts: { tokenizer?: boolean } = {}): string {
  const dir = p(name);
  cpSync(DATA, dir, { recursive: true, filter: (f) => !f.endsWith('.ids.bin') && (opts.tokenizer !== false || !f.endsWith('.model')) });
  return dir;
}

/** The names in a folder, sorted (to check that nothing was deleted). */
const listing = (dir: string) => readdirSync(dir).sort();

// Fixtures built once: a translation run R (checkpoint_1..3, checkpoint_last, metrics.jsonl),
// the same corpus trained the other way round (yy→xx), and a masked-LM run.
const R = p('run');
const REVERSED = p('reversed');
const M = p('mlm-run');
let runListing: string[];

/** Something that holds a run folder's lock like a live training; killed after the row. */
let holder: ChildProcess | null = null;
async function holdLock(dir: string): Promise<void> {
  holder = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures/cli/hold-lock.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder!.stdout!.on('data', (d) => String(d).includes('locked') && resolve());
    holder!.on('exit', (code) => reject(new Error(`hold-lock exited with ${code}`)));
  });
}

interface Row {
  case: string;
  /** The command line (built after `setup`). */
  args: () => string[];
  code: number;
  /** Matched against stderr for failures, against stdout + stderr otherwise. */
  message: RegExp;
  setup?: () => void | Promise<void>;
  /** Extra checks after the run (nothing destroyed, nothing left behind). */
  check?: (result: { out: string; err: string }) => void;
  /** Environment for this row only. */
  env?: Record<string, string>;
  stdin?: string;
  /** Skip where the case cannot be made (e.g. no /sys). */
  skip?: boolean;
}

const ROWS: Row[] = [
  // Item 1: average-checkpoints --out never deletes what it did not create.
  {
    case: 'average-checkpoints --out is the run folder being averaged',
    args: () => ['average-checkpoints', '--checkpoint-dir', R, '--last', '2', '--out', R],
    code: 1,
    message: /--out .*run: would replace the (run folder|checkpoint) being averaged/,
    check: () => expect(listing(R)).toEqual(runListing),
  },
  {
    case: 'average-checkpoints --out is the run folder, even with --overwrite',
    args: () => ['average-checkpoints', '--checkpoint-dir', R, '--last', '2', '--out', R, '--overwrite'],
    code: 1,
    message: /would replace the (run folder|checkpoint) being averaged/,
    check: () => expect(listing(R)).toEqual(runListing),
  },
  {
    case: 'average-checkpoints --out is a training checkpoint with optimizer state',
    args: () => ['average-checkpoints', '--checkpoint-dir', R, '--last', '2', '--out', join(R, 'checkpoint_last'), '--overwrite'],
    code: 1,
    message: /refusing to replace it: it is a training checkpoint \(holds (optimizer|trainer-state)/,
    check: () => expect(existsSync(join(R, 'checkpoint_last', 'optimizer.bin'))).toBe(true),
  },
  {
    case: 'average-checkpoints --out is a corpus folder',
    setup: () => void corpusCopy('corpus-as-out'),
    args: () => ['average-checkpoints', '--checkpoint-dir', R, '--last', '2', '--out', p('corpus-as-out')],
    code: 1,
    message: /--out .*corpus-as-out: already exists and is not empty; choose a new folder \(it holds '/,
    check: () => expect(listing(p('corpus-as-out'))).toEqual(listing(DATA).filter((f) => !f.endsWith('.ids.bin'))),
  },
  {
    case: 'average-checkpoints --out is a corpus folder, with --overwrite',
    setup: () => void corpusCopy('corpus-as-out2'),
    args: () => ['average-checkpoints', '--checkpoint-dir', R, '--last', '2', '--out', p('corpus-as-out2'), '--overwrite'],
    code: 1,
    message: /refusing to replace it: it holds '.*', which is not part of an averaged checkpoint/,
    check: () => expect(listing(p('corpus-as-out2'))).toEqual(listing(DATA).filter((f) => !f.endsWith('.ids.bin'))),
  },
  {
    case: 'average-checkpoints replaces its own earlier output only with --overwrite',
    setup: async () => {
      const first = await cli(['average-checkpoints', '--checkpoint-dir', R, '--last', '2', '--out', p('averaged')]);
      expect(first.code, first.err).toBe(0);
      const again = await cli(['average-checkpoints', '--checkpoint-dir', R, '--last', '2', '--out', p('averaged')]);
      expect(again.code).toBe(1);
      expect(again.err).toMatch(/already exists and is not empty; pass --overwrite to replace it/);
    },
    args: () => ['average-checkpoints', '--checkpoint-dir', R, '--last', '3', '--out', p('averaged'), '--overwrite'],
    code: 0,
    message: /averaged 3 checkpoints/,
  },
  {
    case: 'quickstart --overwrite on a folder that is not a run folder',
    setup: () => void corpusCopy('corpus-quickstart'),
    args: () => ['quickstart', '--out', p('corpus-quickstart'), '--overwrite', '--max-time', '0.01', '--limit', '1', '--samples', '1'],
    code: 1,
    message: /--out .*corpus-quickstart: refusing to delete it: it holds '.*', which a training run does not write/,
    check: () => expect(listing(p('corpus-quickstart'))).toEqual(listing(DATA).filter((f) => !f.endsWith('.ids.bin'))),
  },
  {
    case: 'quickstart (no --overwrite) into a folder that is not a run folder',
    setup: () => void corpusCopy('corpus-quickstart2'),
    args: () => ['quickstart', '--out', p('corpus-quickstart2'), '--max-time', '0.01', '--limit', '1', '--samples', '1'],
    code: 1,
    message: /--out .*corpus-quickstart2: not a quickstart run folder/,
  },
  // Item 4: quickstart --overwrite takes the lock before deleting anything.
  {
    case: 'quickstart --overwrite on the folder of a running training',
    setup: async () => {
      cpSync(R, p('running'), { recursive: true });
      await holdLock(p('running'));
    },
    args: () => ['quickstart', '--out', p('running'), '--overwrite', '--max-time', '0.01', '--limit', '1', '--samples', '1'],
    code: 1,
    message: /--out .*running: .*(another training|locked)/,
    check: () => {
      for (const f of runListing) expect(existsSync(join(p('running'), f)), f).toBe(true);
      expect(readFileSync(join(p('running'), 'metrics.jsonl'), 'utf8')).toBe(readFileSync(join(R, 'metrics.jsonl'), 'utf8'));
    },
  },
  // Item 6: evaluate --output into a missing folder is refused before decoding; scores survive a failed write.
  {
    case: 'evaluate --output into a missing folder',
    args: () => ['evaluate', 'translation', '--checkpoint', R, '--data', DATA, '--output', p('no-such-dir', 'hyp.txt')],
    code: 1,
    message: /--output .*hyp\.txt: folder '.*no-such-dir' does not exist/,
  },
  {
    case: 'evaluate --output on a full disk prints the scores, then the error',
    skip: !existsSync('/dev/full'),
    args: () => ['evaluate', 'translation', '--checkpoint', R, '--data', DATA, '--limit', '4', '--beam', '1', '--output', '/dev/full'],
    code: 1,
    message: /--output \/dev\/full: cannot write the translations: disk full \(ENOSPC/,
    check: ({ out }) => expect(out).toMatch(/^BLEU\|/),
  },
  // Also: a failed command removes the (empty) --out folders it created, parents included.
  {
    case: 'a failed training leaves no --out folder behind',
    args: () => train(DATA, p('left', 'behind'), '--set', 'train.optimizr=adam'),
    code: 1,
    message: /command line: unknown key 'train\.optimizr'/,
    check: () => expect(existsSync(p('left'))).toBe(false),
  },
  // Item 10: user mistakes with the file system are user errors, not "report it".
  {
    case: 'train --out is an existing file',
    setup: () => writeFileSync(p('a-file'), 'x'),
    args: () => train(DATA, p('a-file')),
    code: 1,
    message: /--out .*a-file: '.*a-file' is a file, not a folder/,
  },
  {
    case: 'train --out lies under a file',
    setup: () => writeFileSync(p('b-file'), 'x'),
    args: () => train(DATA, p('b-file', 'sub')),
    code: 1,
    message: /--out .*sub: '.*b-file' is a file, not a folder/,
  },
  {
    case: 'train mlm --out is an existing file',
    setup: () => writeFileSync(p('c-file'), 'x'),
    args: () => mlm(p('c-file')),
    code: 1,
    message: /--out .*c-file: '.*c-file' is a file, not a folder/,
  },
  {
    case: 'train --out where folders cannot be made (/sys)',
    skip: process.platform !== 'linux' || !existsSync('/sys/kernel'),
    args: () => train(DATA, '/sys/ft-bad-input-out'),
    code: 1,
    message: /\/sys\/ft-bad-input-out: (operation not permitted|permission denied|read-only file system)/,
  },
  {
    case: 'translate --input is a folder',
    args: () => ['translate', '--checkpoint', R, '--input', root],
    code: 1,
    message: /--input: '.*' is a folder, not a text file/,
  },
  {
    case: 'train mlm --resume with a truncated config.json names the file',
    setup: () => {
      cpSync(M, p('mlm-truncated'), { recursive: true });
      truncateSync(join(p('mlm-truncated'), 'checkpoint_last', 'config.json'), 40);
    },
    args: () => mlmResume(p('mlm-truncated')),
    code: 1,
    message: /mlm-truncated\/checkpoint_last\/config\.json: not valid JSON/,
  },
  {
    case: 'a corrupted id cache is rebuilt, not fed to the model',
    setup: async () => {
      const data = corpusCopy('bad-cache');
      expect((await cli(train(data, p('bad-cache-run1')))).code).toBe(0);
      const caches = idCacheFolder(join(data, 'train.xx'));
      expect(readdirSync(caches).filter((n) => n.endsWith('.ids.bin')).length).toBeGreaterThan(0);
      for (const f of readdirSync(caches).filter((n) => n.endsWith('.ids.bin'))) {
        const bytes = readFileSync(join(caches, f));
        bytes.writeInt32LE(99999999, bytes.length - 4); // the last id of the last line
        writeFileSync(join(caches, f), bytes);
      }
    },
    args: () => train(p('bad-cache'), p('bad-cache-run2')),
    code: 0,
    message: /trained 1 steps/,
    check: () => {
      // Rebuilt: no cache holds the bad id any more.
      const caches = idCacheFolder(join(p('bad-cache'), 'train.xx'));
      for (const f of readdirSync(caches).filter((n) => n.endsWith('.ids.bin'))) {
        const bytes = readFileSync(join(caches, f));
        expect(bytes.readInt32LE(bytes.length - 4), f).not.toBe(99999999);
      }
    },
  },
  // Item 12: resume and average refuse what does not belong together.
  {
    case: 'train --resume with --tokenizer',
    setup: () => cpSync(R, p('resume-tok'), { recursive: true }),
    args: () => [...train(DATA, p('resume-tok'), '--resume', '--tokenizer', 'test/fixtures/text/bpe'), '--max-steps', '5'],
    code: 1,
    message: /--resume: --tokenizer test\/fixtures\/text\/bpe is not the tokenizer the run in .*resume-tok was trained with/,
  },
  {
    case: 'train --resume repeating the run\'s own --tokenizer (a restart loop) is fine',
    setup: () => cpSync(R, p('resume-same-tok'), { recursive: true }),
    args: () => [...train(DATA, p('resume-same-tok'), '--resume', '--tokenizer', join(DATA, 'spm.model')), '--max-steps', '4'],
    code: 0,
    message: /trained 4 steps/,
  },
  {
    case: 'train --resume with different --data',
    setup: () => {
      cpSync(R, p('resume-data'), { recursive: true });
      const f = join(corpusCopy('other-data'), 'train.xx');
      writeFileSync(f, readFileSync(f, 'utf8').replace(/^.*\n/, 'ka ka ka\n'));
    },
    args: () => [...train(p('other-data'), p('resume-data'), '--resume'), '--max-steps', '5'],
    code: 1,
    message: /--resume: --data .*other-data: train\.xx (has other content|has \d+ bytes, not \d+) compared with the data the run in .*resume-data was started on/,
  },
  {
    case: 'train mlm --resume with different --data',
    setup: () => {
      cpSync(M, p('mlm-resume-data'), { recursive: true });
      cpSync(p('mlm-data'), p('mlm-data-other'), { recursive: true });
      appendFileSync(p('mlm-data-other', 'train.txt'), 'the lord said let there be light\n');
    },
    args: () => ['train', 'mlm', '--data', p('mlm-data-other'), '--resume', '--max-steps', '2', '--progress', 'none', '--out', p('mlm-resume-data')],
    code: 1,
    message: /--resume: --data .*mlm-data-other: train\.txt has \d+ bytes, not \d+ compared with the data the run in .*mlm-resume-data was started on/,
  },
  {
    case: 'train mlm --resume without --data reads the data the run started on (not the embedded corpus)',
    setup: () => cpSync(M, p('mlm-resume-nodata'), { recursive: true }),
    args: () => ['train', 'mlm', '--resume', '--max-steps', '2', '--progress', 'none', '--out', p('mlm-resume-nodata')],
    code: 0,
    message: /sequences of ≤ \d+ tokens from .*mlm-data;/,
  },
  {
    case: 'train mlm --resume with --tokenizer',
    setup: () => cpSync(M, p('mlm-resume-tok'), { recursive: true }),
    args: () => [...mlmResume(p('mlm-resume-tok')), '--tokenizer', 'test/fixtures/text/bpe'],
    code: 1,
    message: /--resume: --tokenizer test\/fixtures\/text\/bpe is not the tokenizer the run in .*mlm-resume-tok was trained with/,
  },
  {
    case: 'average-checkpoints of an xx→yy and a yy→xx model',
    args: () => ['average-checkpoints', '--inputs', join(R, 'checkpoint_last'), join(REVERSED, 'checkpoint_last'), '--out', p('mixed-average')],
    code: 1,
    message: /average-checkpoints: .*checkpoint_last translates xx→yy, .*checkpoint_last yy→xx/,
    check: () => expect(existsSync(p('mixed-average'))).toBe(false),
  },
  // Item 13: messages that blame the right thing.
  {
    case: '--set model.modelDim=33 is the command line\'s mistake, not the preset\'s',
    args: () => train(DATA, p('dim33'), '--set', 'model.modelDim=33'),
    code: 1,
    message: /^error: command line: 'model\.modelDim' 33 must be divisible by 'model\.numHeads' 2$/m,
  },
  {
    case: 'a vocabulary too small for the corpus says which option to set',
    setup: () => {
      const data = corpusCopy('many-chars', { tokenizer: false });
      const chars = Array.from({ length: 90 }, (_, i) => String.fromCharCode(0x3b1 + (i % 25)) + String.fromCharCode(0x430 + i / 3)).join(' ');
      for (const lang of ['xx', 'yy']) appendFileSync(join(data, `train.${lang}`), `${chars}\n`);
      for (const lang of ['xx', 'yy']) appendFileSync(join(data, `train.${lang}`), `${chars}\n`);
    },
    args: () => train(p('many-chars'), p('many-chars-run')),
    code: 1,
    message: /the corpus needs a vocabulary of at least \d+ pieces .*not 64; set --vocab-size to \d+ or more/,
  },
  {
    case: 'spm_train leaving a cut-off model (full disk) is reported as such',
    setup: () => void corpusCopy('spm-full', { tokenizer: false }),
    env: { SPM_TRAIN: FAKE_SPM, FAKE_SPM_MODE: 'truncated', FAKE_SPM_SOURCE: join(process.cwd(), DATA, 'spm.model') },
    args: () => train(p('spm-full'), p('spm-full-run')),
    code: 1,
    message: /wrote a damaged model for .*: it cannot be read .*; is the disk full\?/,
  },
  {
    case: '--preset help lists every translation preset',
    args: () => ['train', 'translation', '--help'],
    code: 0,
    message: /transformer_tiny, transformer_small, transformer_small_cpu, transformer_base/,
  },
  {
    case: '--preset help lists every masked-LM preset',
    args: () => ['train', 'mlm', '--help'],
    code: 0,
    message: /bert_tiny, bert_small, bert_base/,
  },
  // Item 5 (RELIABILITY-RUN): invalid UTF-8 in masked-LM data and in bleu input, named by file and line.
  {
    case: 'train mlm on a binary train.txt',
    setup: () => {
      mkdirSync(p('mlm-binary'));
      writeFileSync(p('mlm-binary', 'train.txt'), Buffer.concat([Buffer.from('a fine first line\n'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) % 256))]));
      writeFileSync(p('mlm-binary', 'valid.txt'), 'the valid line\n');
    },
    args: () => ['train', 'mlm', '--data', p('mlm-binary'), '--tokenizer', WORDPIECE, '--preset', 'bert_tiny', '--max-steps', '1', '--progress', 'none', '--out', p('mlm-binary-run')],
    code: 1,
    message: /mlm-binary\/train\.txt:2: invalid UTF-8/,
  },
  {
    case: 'bleu with a Latin-1 hypothesis file',
    setup: () => {
      writeFileSync(p('bleu.ref'), 'la señora lee un libro grande\n');
      writeFileSync(p('bleu-latin1.hyp'), Buffer.from('la señora lee un libro grande\n', 'latin1'));
    },
    args: () => ['bleu', p('bleu.ref'), '-i', p('bleu-latin1.hyp')],
    code: 1,
    message: /bleu-latin1\.hyp:1: invalid UTF-8/,
  },
  // Item 8 (RELIABILITY-RUN): a damaged checkpoint file is refused by name.
  {
    case: 'train translation --resume with 64 flipped bytes in optimizer.bin',
    setup: () => {
      cpSync(R, p('run-damaged'), { recursive: true });
      const bin = p('run-damaged', 'checkpoint_last', 'optimizer.bin');
      const bytes = readFileSync(bin);
      for (let i = 0; i < 64; i++) bytes[(i * 61) % bytes.length] ^= 0xff;
      writeFileSync(bin, bytes);
    },
    args: () => ['train', 'translation', '--data', DATA, '--resume', '--max-steps', '4', '--progress', 'none', '--out', p('run-damaged')],
    code: 1,
    message: /run-damaged\/checkpoint_last\/optimizer\.bin: checksum does not match the one recorded in SHA256SUMS/,
  },
  // Item 9 (RELIABILITY-RUN): a kill between the two renames of a save does not hide the checkpoint.
  {
    case: 'evaluate --checkpoint R/checkpoint_last after a kill between the two renames of its save',
    setup: () => {
      cpSync(R, p('run-aside'), { recursive: true });
      renameSync(p('run-aside', 'checkpoint_last'), p('run-aside', '.checkpoint_last.old-4242-x'));
    },
    args: () => ['evaluate', 'translation', '--checkpoint', p('run-aside', 'checkpoint_last'), '--data', DATA, '--split', 'valid', '--limit', '2'],
    code: 0,
    message: /BLEU\|nrefs:1/,
    check: () => expect(existsSync(p('run-aside', 'checkpoint_last', 'model.json'))).toBe(true),
  },
];

async function cli(args: string[], stdin = ''): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo(stdin);
  const code = await runCli(args, io);
  return { code, out: io.out, err: io.err };
}

beforeAll(async () => {
  const run = await cli([...train(DATA, R), '--max-steps', '3', '--save-every', '1', '--keep-last', '3']);
  expect(run.code, run.err).toBe(0);
  runListing = listing(R);
  expect(runListing).toEqual(expect.arrayContaining(['checkpoint_1', 'checkpoint_3', 'checkpoint_last', 'metrics.jsonl']));
  const reversed = await cli(['train', 'translation', '--data', DATA, '--source-lang', 'yy', '--target-lang', 'xx', ...TINY, '--max-steps', '1', '--out', REVERSED]);
  expect(reversed.code, reversed.err).toBe(0);
  mkdirSync(p('mlm-data'));
  const words = 'the and of to in he god lord said light earth heaven was there let be beginning created'.split(' ');
  const text = (n: number) => Array.from({ length: n }, (_, i) => `${words[i % words.length]} ${words[(i * 7) % words.length]} ${words[(i * 3) % words.length]}`).join('\n') + '\n';
  writeFileSync(p('mlm-data', 'train.txt'), text(60));
  writeFileSync(p('mlm-data', 'valid.txt'), text(10));
  const m = await cli(mlm(M));
  expect(m.code, m.err).toBe(0);
}, 120_000);

afterAll(() => {
  holder?.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

describe('bad input: exit code and one clear line, nothing destroyed, nothing left behind', () => {
  for (const row of ROWS) {
    it.skipIf(row.skip === true)(row.case, async () => {
      await row.setup?.();
      const saved: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(row.env ?? {})) {
        saved[k] = process.env[k];
        process.env[k] = v;
      }
      const args = row.args();
      const outIndex = args.indexOf('--out');
      const out = outIndex >= 0 ? args[outIndex + 1] : null;
      const existedBefore = out !== null && existsSync(out);
      let result;
      try {
        result = await cli(args, row.stdin);
      } finally {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
        holder?.kill('SIGKILL');
        holder = null;
      }
      expect(result.code, `${result.err}\n${result.out}`).toBe(row.code);
      if (row.code === 1) {
        // Progress lines may come first; the error is one line, the last, with no hint or stack.
        const lines = result.err.split('\n').filter((l) => l !== '');
        const errors = lines.filter((l) => l.startsWith('error: '));
        expect(errors, result.err).toHaveLength(1);
        expect(lines[lines.length - 1]).toBe(errors[0]);
        expect(result.err).not.toMatch(/^hint: |\n\s+at /m);
        expect(errors[0]).toMatch(row.message);
        // A failed command leaves no --out folder it created.
        if (out !== null && !existedBefore) expect(existsSync(out), `${out} left behind`).toBe(false);
      } else {
        // Help text is wrapped at the terminal width: compare with single spaces.
        expect(`${result.out}${result.err}`.replace(/\s+/g, ' ')).toMatch(row.message);
      }
      row.check?.(result);
    }, 60_000);
  }
});
