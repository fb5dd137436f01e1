/**
 * The few Python string and number behaviours that sacreBLEU's results depend on, written out
 * for JavaScript. Scores only agree with sacreBLEU when whitespace, line splitting and decimal
 * rounding follow Python exactly, and no library provides these Python semantics.
 */

// Python's str.split()/str.strip() whitespace (str.isspace): unlike JavaScript's \s it includes
// U+001C..U+001F and U+0085 and excludes U+FEFF.
const PY_WHITESPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WHITESPACE_RUN = new RegExp(`[${PY_WHITESPACE}]+`, 'u');
const PY_TRAILING_WHITESPACE = new RegExp(`[${PY_WHITESPACE}]+$`, 'u');
const PY_WHITESPACE_CHARS = new Set(
  [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004,
   0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000].map((c) => String.fromCodePoint(c)),
);

/** Python's `s.split()`: split on runs of whitespace, no empty pieces. */
export function pySplit(text: string): string[] {
  const parts = text.split(PY_WHITESPACE_RUN);
  // A leading or trailing whitespace run leaves one empty piece at that end.
  return parts.filter((part) => part !== '');
}

/** Python's `s.rstrip()`. */
export function pyRstrip(text: string): string {
  return text.replace(PY_TRAILING_WHITESPACE, '');
}

/** Whether one code point is whitespace by Python's definition. */
export function pyIsSpace(char: string): boolean {
  return PY_WHITESPACE_CHARS.has(char);
}

/**
 * Python's `f'{x:.{digits}f}'`: the exact binary value rounded half-to-even. JavaScript's
 * toFixed rounds exact ties up (0.125 → "0.13" where Python prints "0.12"), so round the exact
 * decimal expansion ourselves; toFixed(100) is exact for the magnitudes printed here.
 */
export function pyFormatFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : x < 0 ? '-inf' : 'nan';
  if (Math.abs(x) >= 1e21) return x.toFixed(digits);
  const negative = x < 0 || Object.is(x, -0);
  const exact = Math.abs(x).toFixed(100);
  const [intPart, fracPart] = exact.split('.') as [string, string];
  const kept = intPart + fracPart.slice(0, digits);
  const rest = fracPart.slice(digits);
  const firstDropped = rest.charCodeAt(0) - 48;
  const tail = rest.slice(1);
  let roundUp = false;
  if (firstDropped > 5) roundUp = true;
  else if (firstDropped === 5) {
    if (/[1-9]/.test(tail)) roundUp = true;
    else roundUp = (kept.charCodeAt(kept.length - 1) - 48) % 2 === 1; // exact tie: to even
  }
  let digitsOut = roundUp ? incrementDecimal(kept) : kept;
  // Re-insert the decimal point `digits` places from the right.
  if (digits > 0) {
    digitsOut = digitsOut.padStart(digits + 1, '0');
    digitsOut = `${digitsOut.slice(0, -digits)}.${digitsOut.slice(-digits)}`;
  }
  digitsOut = digitsOut.replace(/^0+(?=\d)/, '');
  return negative ? `-${digitsOut}` : digitsOut;
}

function incrementDecimal(digitString: string): string {
  const chars = digitString.split('');
  let i = chars.length - 1;
  while (i >= 0) {
    if (chars[i] === '9') {
      chars[i] = '0';
      i--;
    } else {
      chars[i] = String.fromCharCode(chars[i]!.charCodeAt(0) + 1);
      return chars.join('');
    }
  }
  return `1${chars.join('')}`;
}

/** Python's `repr(float)` (as json.dumps writes floats): shortest round-trip digits, '.0' on integers. */
export function pyFloatRepr(x: number): string {
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : x < 0 ? '-Infinity' : 'NaN';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  // toExponential() without an argument gives the shortest digits that round-trip, as repr does.
  const [mantissa, expText] = Math.abs(x).toExponential().split('e') as [string, string];
  const exponent = Number(expText);
  const digits = mantissa.replace('.', '');
  const sign = x < 0 ? '-' : '';
  if (exponent < -4 || exponent >= 16) {
    const expSign = exponent < 0 ? '-' : '+';
    const expDigits = String(Math.abs(exponent)).padStart(2, '0');
    const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${mant}e${expSign}${expDigits}`;
  }
  let text: string;
  if (exponent < 0) text = `0.${'0'.repeat(-exponent - 1)}${digits}`;
  else if (digits.length <= exponent + 1) text = `${digits}${'0'.repeat(exponent + 1 - digits.length)}.0`;
  else text = `${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
  return sign + text;
}
