/** Line writers with back-pressure, and the sentence-pair cleaning rule of Moses' clean-corpus-n. */
import { createWriteStream, type WriteStream } from 'node:fs';

export class LineWriter {
  private readonly stream: WriteStream;
  count = 0;
  constructor(readonly path: string) {
    this.stream = createWriteStream(path);
  }
  async write(line: string): Promise<void> {
    this.count++;
    if (!this.stream.write(line + '\n')) await new Promise<void>((r) => this.stream.once('drain', () => r()));
  }
  close(): Promise<void> {
    return new Promise((resolve, reject) => this.stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
}

export interface CleanRule {
  minWords: number;
  maxWords: number;
  /** Longest allowed ratio between the word counts of the two sides. */
  maxRatio: number;
}

/**
 * Moses' clean-corpus-n: keep a pair when both sides have minWords..maxWords words and neither is
 * more than maxRatio times longer than the other. Words are whitespace-separated tokens of the raw
 * text (Moses counts tokenized words, so slightly more pairs pass here). Lines with U+FFFD (bytes
 * that were not UTF-8) are dropped too.
 */
export function keepPair(source: string, target: string, rule: CleanRule): boolean {
  if (source.includes('\ufffd') || target.includes('\ufffd')) return false;
  const a = countWords(source);
  const b = countWords(target);
  if (a < rule.minWords || b < rule.minWords || a > rule.maxWords || b > rule.maxWords) return false;
  return a <= rule.maxRatio * b && b <= rule.maxRatio * a;
}

export function countWords(s: string): number {
  const t = s.trim();
  return t === '' ? 0 : t.split(/\s+/).length;
}

/** Trims and collapses internal whitespace runs to one space. */
export function normalizeSpaces(s: string): string {
  return s.trim().replace(/\s+/g, ' ');
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** Decodes the XML entities that occur in WMT/IWSLT .sgm/.xml files (named five and numeric). */
export function decodeXmlEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|amp|lt|gt|quot|apos);/g, (m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? m;
  });
}

/**
 * The segments of an IWSLT .xml or WMT .sgm test file, in order: the text of each
 * `<seg id="N">…</seg>` (one per line in these files), trimmed, entities decoded.
 */
export function parseSegments(text: string, file: string): string[] {
  const segs: string[] = [];
  const lines = text.split('\n');
  lines.forEach((line, i) => {
    if (!line.includes('<seg')) return;
    const m = /<seg\b[^>]*>(.*?)<\/seg>/.exec(line);
    if (!m) throw new Error(`${file}:${i + 1}: a <seg> that does not close on its line`);
    segs.push(decodeXmlEntities(m[1].trim()));
  });
  return segs;
}
