/**
 * Trains a SentencePiece model with the `spm_train` command-line tool (Debian/Ubuntu package
 * `sentencepiece`), with the special ids fixed for every model this package trains:
 * pad 0, unk 1, bos 2, eos 3, `<mask>` 4 (a user-defined symbol, for masked-LM).
 *
 * Why a subprocess: training is C++ code we should not reimplement, and sentencepiece-js ships
 * only the encoder/decoder.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statfsSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { InterruptedError, UserError } from '../errors.ts';
import { parseSentencePieceModel } from './sentencepiece-model.ts';

export interface TrainSentencePieceOptions {
  /** One text file or several (one sentence per line). */
  input: string | string[];
  /** Output prefix: writes `<modelPrefix>.model` and `<modelPrefix>.vocab`. */
  modelPrefix: string;
  vocabSize: number;
  modelType?: 'unigram' | 'bpe' | 'char' | 'word';
  /**
   * 'nmt_nfkc' (default, SentencePiece's own default) applies NFKC and maps tabs, no-break spaces
   * and control characters to plain spaces or nothing, so odd whitespace in user input does not
   * become <unk>; text already in NFKC form with single spaces round-trips exactly
   * (decode(encode(s)) === s). 'identity' keeps every character as it is.
   */
  normalization?: 'identity' | 'nmt_nfkc' | 'nfkc';
  /** Share of characters that get their own piece; 1.0 (default) keeps every character seen in training. */
  characterCoverage?: number;
  /** Pieces that are never split, after `<mask>` (id 4). */
  userDefinedSymbols?: string[];
  /**
   * Train on a seeded random sample of this many sentences (for corpora too large to load whole);
   * default: every sentence, in file order.
   */
  sampleSentences?: number;
  /** Seed of spm_train's random generator (training is single-threaded and unshuffled, so deterministic). */
  seed?: number;
  /** Extra `--flag=value` arguments passed to spm_train as they are. */
  extraArgs?: string[];
  /** Path or name of the trainer; default `$SPM_TRAIN` or `spm_train`. */
  trainer?: string;
  /**
   * Catch SIGINT/SIGTERM while spm_train runs: stop it, remove the temporaries and reject with
   * an InterruptedError. Default false: a library does not change what a signal does to its host
   * process (then the signal's default action ends both, as it would without this package).
   */
  handleSignals?: boolean;
}

export const SPM_INSTALL_HINT =
  'install SentencePiece\'s command-line tools: `apt install sentencepiece` (Debian/Ubuntu), `brew install sentencepiece` (macOS), or build them from https://github.com/google/sentencepiece (`pip install sentencepiece` has no spm_train); or set SPM_TRAIN to its path';

/** The spm_train arguments for these options (exported so tests can check them without the tool). */
export function sentencePieceTrainArgs(
  opts: TrainSentencePieceOptions,
  modelPrefix = opts.modelPrefix,
  cwd = process.cwd(),
): string[] {
  const inputs = Array.isArray(opts.input) ? opts.input : [opts.input];
  if (inputs.length === 0) throw new UserError('trainSentencePiece: input names no file');
  for (const f of inputs) {
    if (f.includes(',')) throw new UserError(`trainSentencePiece: input path ${f} contains a comma, which spm_train reads as a separator`);
    if (!existsSync(f)) throw new UserError(`trainSentencePiece: input file not found: ${f}`);
  }
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < 6) {
    throw new UserError(`trainSentencePiece: vocabSize must be an integer ≥ 6, got ${opts.vocabSize}`);
  }
  const symbols = ['<mask>', ...(opts.userDefinedSymbols ?? [])];
  return [
    // Relative paths: spm_train records them in the model, which should not depend on where it was built.
    `--input=${inputs.map((f) => relative(cwd, resolve(f))).join(',')}`,
    `--model_prefix=${modelPrefix}`,
    `--vocab_size=${opts.vocabSize}`,
    `--model_type=${opts.modelType ?? 'unigram'}`,
    `--normalization_rule_name=${opts.normalization ?? 'nmt_nfkc'}`,
    `--character_coverage=${opts.characterCoverage ?? 1.0}`,
    '--pad_id=0',
    '--unk_id=1',
    '--bos_id=2',
    '--eos_id=3',
    `--user_defined_symbols=${symbols.join(',')}`,
    // Determinism: every sentence in file order (or a sample drawn with the fixed seed), on one thread.
    ...(opts.sampleSentences
      ? [`--input_sentence_size=${opts.sampleSentences}`, '--shuffle_input_sentence=true']
      : ['--input_sentence_size=0', '--shuffle_input_sentence=false']),
    '--num_threads=1',
    `--random_seed=${opts.seed ?? 1}`,
    ...(opts.extraArgs ?? []),
  ];
}

/** Trains a model and returns the path of the `.model` file (written atomically with its `.vocab`). */
export async function trainSentencePiece(opts: TrainSentencePieceOptions): Promise<string> {
  const trainer = opts.trainer ?? process.env.SPM_TRAIN ?? 'spm_train';
  const outDir = resolve(dirname(opts.modelPrefix));
  mkdirSync(outDir, { recursive: true });
  // Train under a temporary prefix, then rename: a crash never leaves a half-written model.
  // spm_train runs in the output folder so the model records only relative paths (same bytes wherever built).
  const tmpName = `.${basename(opts.modelPrefix)}.tmp`;
  const tmpPrefix = join(outDir, tmpName);
  const args = sentencePieceTrainArgs(opts, tmpName, outDir);
  // A signal while spm_train runs (Ctrl-C, `kill`): stop the child too (it would run on, orphaned),
  // let the finally blocks here and in the callers remove the temporaries, then exit 130/143.
  let interrupted: NodeJS.Signals | null = null;
  let child: ReturnType<typeof execFile> | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted ??= signal;
    child?.kill('SIGTERM');
  };
  if (opts.handleSignals) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  try {
    await new Promise<void>((done, reject) => {
      child = execFile(trainer, args, { cwd: outDir, maxBuffer: 64 * 1024 * 1024 }, (err, _stdout, stderr) => {
        if (interrupted) return reject(new InterruptedError(interrupted));
        if (!err) return done();
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          return reject(new UserError(`${trainer} not found on PATH; ${SPM_INSTALL_HINT}`));
        }
        reject(new UserError(`${trainer} failed for ${opts.modelPrefix}: ${explainFailure(stderr, err, outDir)}`));
      });
    });
    checkWrittenModel(`${tmpPrefix}.model`, trainer, opts.modelPrefix, outDir);
    renameSync(`${tmpPrefix}.vocab`, `${opts.modelPrefix}.vocab`);
    renameSync(`${tmpPrefix}.model`, `${opts.modelPrefix}.model`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    rmSync(`${tmpPrefix}.model`, { force: true });
    rmSync(`${tmpPrefix}.vocab`, { force: true });
  }
  return `${opts.modelPrefix}.model`;
}

/** Free space in `dir`, e.g. '1.2 MB free', or '' when the file system does not say. */
function freeSpace(dir: string): string {
  try {
    const fs = statfsSync(dir);
    return `${((fs.bavail * fs.bsize) / 1e6).toFixed(1)} MB free in ${dir}`;
  } catch {
    return '';
  }
}

/** spm_train's reason for a failure, in this package's terms (its own flags mean nothing to our users). */
export function explainFailure(stderr: string, err: unknown, outDir: string): string {
  // The reason is on the line with the failed check, e.g. "... Vocabulary size too high (5000). Please set it to a value <= 6."
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.includes('LOG(INFO)'));
  const reason = (lines.find((l) => /_status\.ok\(\)|Check failed|ERROR|FATAL/.test(l)) ?? lines.pop() ?? String(err)).replace(/^.*\] /, '');
  const chars = /Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)/.exec(reason);
  if (chars) {
    // A real corpus has more distinct characters than a tiny vocabulary (transformer_tiny's 64) holds.
    return (
      `the corpus needs a vocabulary of at least ${chars[2]} pieces (its distinct characters plus the special pieces), ` +
      `not ${chars[1]}; set \`data.vocabSize\` to ${chars[2]} or more`
    );
  }
  // A corpus too small for the vocabulary is the common case: say which option changes it.
  if (/Vocabulary size too high/.test(reason)) return `${reason} (a smaller \`data.vocabSize\`)`;
  if (/No space left|ENOSPC/i.test(stderr)) return `disk full (${freeSpace(outDir)})`;
  return reason;
}

/**
 * spm_train does not check its final write: on a full disk it exits 0 with a truncated model.
 * Such a model is reported here as what it is, not later as "not a SentencePiece model".
 */
function checkWrittenModel(file: string, trainer: string, modelPrefix: string, outDir: string): void {
  let problem: string | null = null;
  try {
    const bytes = readFileSync(file);
    const info = parseSentencePieceModel(bytes);
    if (info.pieces.length === 0) problem = 'it holds no pieces';
  } catch (err) {
    problem = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'it is missing' : `it cannot be read (${(err as Error).message})`;
  }
  if (problem !== null) {
    const free = freeSpace(outDir);
    throw new UserError(`${trainer} wrote a damaged model for ${modelPrefix}: ${problem}; is the disk full?${free ? ` (${free})` : ''}`);
  }
}

/** True when the trainer can be run (tests that need it skip otherwise). */
export async function hasSentencePieceTrainer(trainer = process.env.SPM_TRAIN ?? 'spm_train'): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(trainer, ['--help'], (err) => resolve(!err || (err as NodeJS.ErrnoException).code !== 'ENOENT'));
  });
}
