/**
 * sacreBLEU's BLEU tokenizers (13a, intl, char, none). Each maps a line to a string of
 * space-separated tokens, exactly as sacreBLEU 2.x does, so n-gram counts agree with it.
 */
import { UserError } from '../errors.ts';
import { pySplit } from './python-text.ts';

export type BleuTokenizerName = '13a' | 'intl' | 'char' | 'none';
export const BLEU_TOKENIZERS: readonly BleuTokenizerName[] = ['13a', 'intl', 'char', 'none'];

export type BleuTokenizer = (line: string) => string;

// mteval-v13a's language-dependent rules (assuming Western languages), applied in order.
const RULES_13A: readonly [RegExp, string][] = [
  // ASCII punctuation and symbols except period, comma, dash and apostrophe become tokens.
  [/([{-~[-`\x20-&(-+:-@/])/gu, ' $1 '],
  // Period and comma unless preceded by a digit.
  [/([^0-9])([.,])/gu, '$1 $2 '],
  // Period and comma unless followed by a digit.
  [/([.,])([^0-9])/gu, ' $1 $2'],
  // Dash when preceded by a digit.
  [/([0-9])(-)/gu, '$1 $2 '],
];

/** mteval-v13a tokenization (WMT's standard), as sacreBLEU's `13a`. */
export function tokenize13a(line: string): string {
  let text = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (text.includes('&')) {
    text = text.replaceAll('&quot;', '"').replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  }
  // Padding with spaces lets the period/comma rules see a neighbour at both ends of the line.
  text = ` ${text} `;
  for (const [pattern, replacement] of RULES_13A) text = text.replace(pattern, replacement);
  return pySplit(text).join(' ');
}

// mteval-v14's international rules: Unicode punctuation (P) and symbols (S), digits (N).
const RULES_INTL: readonly [RegExp, string][] = [
  // Punctuation preceded by a non-digit.
  [/(\P{N})(\p{P})/gu, '$1 $2 '],
  // Punctuation followed by a non-digit.
  [/(\p{P})(\P{N})/gu, ' $1 $2'],
  // Every symbol.
  [/(\p{S})/gu, ' $1 '],
];

/** mteval-v14 international tokenization, as sacreBLEU's `intl`. */
export function tokenizeIntl(line: string): string {
  let text = line;
  for (const [pattern, replacement] of RULES_INTL) text = text.replace(pattern, replacement);
  return pySplit(text).join(' ');
}

/** Every character (Unicode code point) is a token, as sacreBLEU's `char`. */
export function tokenizeChar(line: string): string {
  return Array.from(line).join(' ');
}

/** No tokenization: the line is split on whitespace only. */
export function tokenizeNone(line: string): string {
  return line;
}

export function getBleuTokenizer(name: string): BleuTokenizer {
  switch (name) {
    case '13a':
      return tokenize13a;
    case 'intl':
      return tokenizeIntl;
    case 'char':
      return tokenizeChar;
    case 'none':
      return tokenizeNone;
    default:
      throw new UserError(`unknown BLEU tokenizer '${name}': expected one of ${BLEU_TOKENIZERS.join(', ')}`);
  }
}
