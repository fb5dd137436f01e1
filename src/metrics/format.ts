/**
 * sacreBLEU 2.x's printed forms of a score: the text line
 * `BLEU|nrefs:1|…|version:2.6.0 = 32.7 63.3/39.1/25.9/17.5 (BP = …)` and the JSON object
 * `{"name": "BLEU", "score": 32.7, "signature": …, "verbose_score": …, "nrefs": "1", …}`.
 */
import { pyFloatRepr, pyFormatFixed } from './python-text.ts';

/** What the formatters need from a BleuScore or ChrfScore. */
export interface FormattableScore {
  name: string;
  score: number;
  signatureFields: [string, string][];
  verbose: string;
}

// sacreBLEU's abbreviations for `--short` signatures.
const SHORT_KEYS: Readonly<Record<string, string>> = {
  nrefs: '#',
  case: 'c',
  eff: 'e',
  tok: 'tok',
  smooth: 's',
  nc: 'nc',
  nw: 'nw',
  space: 's',
  version: 'v',
};

export function formatSignature(fields: readonly [string, string][], short = false): string {
  return fields.map(([key, value]) => `${short ? (SHORT_KEYS[key] ?? key) : key}:${value}`).join('|');
}

export interface TextFormatOptions {
  /** Decimals of the score (sacreBLEU's CLI default is 1). Default 2, as sacreBLEU's API. */
  width?: number;
  /** Only the number. */
  scoreOnly?: boolean;
  /** Abbreviated signature keys. */
  short?: boolean;
  /** Leave the signature out of the line. */
  noSignature?: boolean;
}

/** One text line as sacreBLEU's `Score.format()`. */
export function formatScoreText(score: FormattableScore, opts: TextFormatOptions = {}): string {
  const sc = pyFormatFixed(score.score, opts.width ?? 2);
  if (opts.scoreOnly) return sc;
  const signature = opts.noSignature ? '' : formatSignature(score.signatureFields, opts.short);
  let line = `${signature ? `${score.name}|${signature}` : score.name} = ${sc}`;
  if (score.verbose) line += ` ${score.verbose}`;
  return line;
}

/** sacreBLEU's JSON form (`json.dumps(…, indent=1, ensure_ascii=False)`), score rounded to `width` decimals. */
export function formatScoreJson(score: FormattableScore, width = 2): string {
  const signature = formatSignature(score.signatureFields);
  const entries: [string, string][] = [
    ['name', JSON.stringify(score.name)],
    ['score', pyFloatRepr(Number(pyFormatFixed(score.score, width)))],
    ['signature', JSON.stringify(signature)],
  ];
  if (score.verbose) entries.push(['verbose_score', JSON.stringify(score.verbose)]);
  for (const [key, value] of score.signatureFields) entries.push([key, JSON.stringify(value)]);
  return `{\n${entries.map(([k, v]) => ` ${JSON.stringify(k)}: ${v}`).join(',\n')}\n}`;
}

/** Several text lines aligned on their '=' as sacreBLEU prints multiple metrics. */
export function alignScoreLines(lines: readonly string[]): string[] {
  const cut = lines.map((line) => line.indexOf('=') - 1);
  if (cut.some((c) => c < 0)) return [...lines];
  const width = Math.max(...cut);
  return lines.map((line, i) => line.slice(0, cut[i]).padStart(width) + line.slice(cut[i]));
}
