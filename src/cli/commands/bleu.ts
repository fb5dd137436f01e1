/**
 * `bleu REF... -i HYP`: score a detokenized hypothesis file against one or more reference files
 * the way `sacrebleu REF... -i HYP` (2.x) does, with the same numbers, signature and output
 * (text by default, sacreBLEU's JSON with --json).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { UserError } from '../../errors.ts';
import { corpusBleu, sentenceBleu, SMOOTH_METHODS, type BleuOptions, type SmoothMethod } from '../../metrics/bleu.ts';
import { corpusChrf, sentenceChrf, type ChrfOptions } from '../../metrics/chrf.ts';
import { alignScoreLines, formatScoreJson, formatScoreText, type FormattableScore } from '../../metrics/format.ts';
import { pyRstrip } from '../../metrics/python-text.ts';
import { BLEU_TOKENIZERS, type BleuTokenizerName } from '../../metrics/tokenizers.ts';
import { decodeUtf8File } from '../../text/lines.ts';
import { processIo, type CliIo } from '../io.ts';

const METRICS = ['bleu', 'chrf'] as const;
type MetricName = (typeof METRICS)[number];

interface BleuCommandOptions {
  input?: string;
  metrics: string[];
  tokenize: BleuTokenizerName;
  lowercase?: boolean;
  smoothMethod: SmoothMethod;
  smoothValue?: number;
  force?: boolean;
  chrfCharOrder: number;
  chrfWordOrder: number;
  chrfBeta: number;
  chrfWhitespace?: boolean;
  chrfLowercase?: boolean;
  chrfEpsSmoothing?: boolean;
  json?: boolean;
  width: number;
  scoreOnly?: boolean;
  short?: boolean;
  sentenceLevel?: boolean;
}

function nonNegativeInt(value: string): number {
  if (!/^\s*\d+\s*$/.test(value)) throw new InvalidArgumentError('Expected an integer >= 0.');
  return Number(value);
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('Expected a number >= 0.');
  return n;
}

/**
 * Lines of a text file as sacreBLEU reads them: split on '\n' only, trailing whitespace removed.
 * Invalid UTF-8 is an error naming file and line (the rule of every corpus reader), not U+FFFD.
 */
export function readLines(path: string, role: string): string[] {
  let text: string;
  try {
    text = decodeUtf8File(readFileSync(path), path);
  } catch (err) {
    if (err instanceof UserError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (code ?? String(err));
    throw new UserError(`cannot read ${role} file '${path}': ${reason}`);
  }
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map(pyRstrip);
}

/** The three warning lines sacreBLEU prints when at least 100 hypotheses end in a tokenized period. */
function tokenizedInputWarning(hyps: readonly string[]): string | null {
  const count = hyps.filter((h) => h.endsWith(' .')).length;
  if (count < 100) return null;
  return (
    "warning: That's 100 lines that end in a tokenized period ('.')\n" +
    'warning: It looks like you forgot to detokenize your test data, which may hurt your score.\n' +
    "warning: If you insist your data is detokenized, or don't care, you can suppress this message with --force.\n"
  );
}

async function runBleuCommand(refPaths: string[], opts: BleuCommandOptions, io: CliIo): Promise<void> {
  const unknown = opts.metrics.filter((m) => !(METRICS as readonly string[]).includes(m.toLowerCase()));
  if (unknown.length > 0) {
    throw new UserError(`--metrics: unknown metric '${unknown[0]}' (expected bleu and/or chrf; reference files go before -i)`);
  }
  // sacreBLEU computes and prints metrics in sorted name order, whatever order they were asked in.
  const metrics = [...new Set(opts.metrics.map((m) => m.toLowerCase() as MetricName))].sort();
  if (opts.sentenceLevel && metrics.length > 1) throw new UserError('--sentence-level works with one metric only (--metrics bleu or --metrics chrf)');

  const refStreams = refPaths.map((p) => readLines(p, 'reference'));
  const hypName = opts.input ?? '<stdin>';
  let hyps: string[];
  if (opts.input !== undefined) hyps = readLines(opts.input, 'hypothesis');
  else {
    const text = await io.readStdin();
    hyps = text === '' ? [] : text.split('\n').map(pyRstrip);
    if (text.endsWith('\n')) hyps.pop();
  }
  if (hyps.length === 0) throw new UserError(`hypothesis file '${hypName}' has no lines`);
  refStreams.forEach((stream, k) => {
    if (stream.length !== hyps.length) {
      throw new UserError(`reference file '${refPaths[k]}' has ${stream.length} lines but hypothesis file '${hypName}' has ${hyps.length} (one reference line per hypothesis expected)`);
    }
  });
  // An empty reference line is a valid, empty reference, as in sacreBLEU 2.6.0 (see references.ts).

  if (!opts.force && metrics.includes('bleu')) {
    const warning = tokenizedInputWarning(hyps);
    if (warning) io.stderr(warning);
  }

  const bleuOptions: BleuOptions = {
    tokenize: opts.tokenize,
    lowercase: opts.lowercase ?? false,
    smoothing: opts.smoothMethod,
    ...(opts.smoothValue !== undefined ? { smoothValue: opts.smoothValue } : {}),
  };
  const chrfOptions: ChrfOptions = {
    charOrder: opts.chrfCharOrder,
    wordOrder: opts.chrfWordOrder,
    beta: opts.chrfBeta,
    whitespace: opts.chrfWhitespace ?? false,
    lowercase: opts.chrfLowercase ?? false,
    epsSmoothing: opts.chrfEpsSmoothing ?? false,
  };
  const textOptions = { width: opts.width, scoreOnly: opts.scoreOnly ?? false, short: opts.short ?? false };

  if (opts.sentenceLevel) {
    const lines: string[] = [];
    for (let i = 0; i < hyps.length; i++) {
      const refs = refStreams.map((s) => s[i]!);
      const score: FormattableScore =
        metrics[0] === 'bleu' ? sentenceBleu(hyps[i]!, refs, bleuOptions) : sentenceChrf(hyps[i]!, refs, chrfOptions);
      lines.push(formatScoreText(score, textOptions));
    }
    io.stdout(`${lines.join('\n')}\n`);
    return;
  }

  const scores: FormattableScore[] = metrics.map((m) =>
    m === 'bleu' ? corpusBleu(hyps, refStreams, bleuOptions) : corpusChrf(hyps, refStreams, chrfOptions),
  );
  // As sacreBLEU: --score-only wins over the JSON format.
  if (opts.json && !opts.scoreOnly) {
    const objects = scores.map((s) => formatScoreJson(s, opts.width));
    io.stdout(`${objects.length > 1 ? `[\n${objects.join(',\n')}\n]` : objects[0]}\n`);
    return;
  }
  const lines = scores.map((s) => formatScoreText(s, textOptions));
  io.stdout(`${(textOptions.scoreOnly ? lines : alignScoreLines(lines)).join('\n')}\n`);
}

/** Adds the `bleu` subcommand to `program`; output goes to `io` (the process streams by default). */
export function registerBleuCommand(program: Command, io: CliIo = processIo()): void {
  program
    .command('bleu')
    .description('score a hypothesis file against reference files like `sacrebleu REF... -i HYP` (BLEU, chrF)')
    .argument('<refs...>', 'reference files, one line per hypothesis (several files = several references)')
    .option('-i, --input <file>', 'hypothesis (system output) file, detokenized (default: standard input)')
    .option('-m, --metrics <names...>', 'metrics to compute: bleu, chrf', ['bleu'])
    .addOption(new Option('--tokenize <name>', 'BLEU tokenizer').choices([...BLEU_TOKENIZERS]).default('13a'))
    .option('--lowercase', 'case-insensitive BLEU')
    .addOption(new Option('--smooth-method <method>', 'BLEU smoothing').choices([...SMOOTH_METHODS]).default('exp'))
    .option('--smooth-value <x>', 'value for floor (default 0.1) and add-k (default 1) smoothing', nonNegativeNumber)
    .option('--force', 'do not warn about input that looks tokenized')
    .option('--chrf-char-order <n>', 'chrF character n-gram order', nonNegativeInt, 6)
    .option('--chrf-word-order <n>', 'chrF word n-gram order (2 = chrF++)', nonNegativeInt, 0)
    .option('--chrf-beta <n>', 'chrF beta (weight of recall)', nonNegativeNumber, 2)
    .option('--chrf-whitespace', 'include whitespace in chrF character n-grams')
    .option('--chrf-lowercase', 'case-insensitive chrF')
    .option('--chrf-eps-smoothing', 'chrF++.py/Moses/NLTK eps smoothing instead of effective order')
    .option('--json', "print sacreBLEU's JSON instead of a text line")
    .option('-w, --width <n>', 'decimals of the score', nonNegativeInt, 1)
    .option('-b, --score-only', 'print only the score')
    .option('--short', 'abbreviated signature')
    .option('--sentence-level', 'one score per line (BLEU with effective order)')
    .action(async (refs: string[], opts: BleuCommandOptions) => {
      await runBleuCommand(refs, opts, io);
    });
}
