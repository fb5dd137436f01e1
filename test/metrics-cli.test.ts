// The `bleu` subcommand: sacrebleu-like output on the reference vectors and one-line errors.
import { Command } from 'commander';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { registerBleuCommand, readLines } from '../src/cli/commands/bleu.ts';
import { captureIo } from '../src/cli/io.ts';
import { UserError } from '../src/errors.ts';

const VECTORS = fileURLToPath(new URL('./fixtures/bleu-vectors/', import.meta.url));
const vector = (name: string) => join(VECTORS, name);
const expected = JSON.parse(readFileSync(vector('expected.json'), 'utf8')) as {
  corpus: { name: string; bleu: number; chrf: number }[];
};
const tmp = mkdtempSync(join(tmpdir(), 'metrics-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function runBleu(args: string[], stdin = '') {
  const io = captureIo(stdin);
  const program = new Command();
  program.exitOverride();
  program.configureOutput({ writeOut: (s) => io.stdout(s), writeErr: (s) => io.stderr(s) });
  registerBleuCommand(program, io);
  program.commands.forEach((c) => c.exitOverride());
  await program.parseAsync(['bleu', ...args], { from: 'user' });
  return io;
}

describe('bleu command', () => {
  it('prints the sacreBLEU 2.x text line (width 1 by default)', async () => {
    const io = await runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt')]);
    expect(io.out).toBe(
      'BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = 55.8 96.8/71.3/56.0/46.6 (BP = 0.856 ratio = 0.866 hyp_len = 22971 ref_len = 26530)\n',
    );
  });

  it('--json with two references and two metrics (printed BLEU first, as sacreBLEU sorts them)', async () => {
    const io = await runBleu([vector('ref.txt'), vector('ref2.txt'), '-i', vector('hyp.mixed.txt'), '-m', 'chrf', 'bleu', '--json', '-w', '6']);
    const parsed = JSON.parse(io.out) as Record<string, string | number>[];
    const twoRefs = expected.corpus.find((c) => c.name === 'mixed-2refs')!;
    expect(parsed.map((p) => p.name)).toEqual(['BLEU', 'chrF2']);
    expect(parsed[0]!.score).toBeCloseTo(twoRefs.bleu, 4);
    expect(parsed[0]!.nrefs).toBe('2');
    expect(parsed[0]!.signature).toBe('nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0');
    expect(parsed[0]!.verbose_score).toMatch(/^96\.8\/76\.0\/60\.0\/49\.0 \(BP = 0\.921 ratio = 0\.924 hyp_len = 22971 ref_len = 24867\)$/);
    expect(parsed[1]!.score).toBeCloseTo(twoRefs.chrf, 4);
    expect(parsed[1]!.signature).toBe('nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0');
    // sacreBLEU's layout: a JSON list, one-space indent.
    expect(io.out.startsWith('[\n{\n "name": "BLEU",\n "score": ')).toBe(true);
  });

  it('passes tokenizer, lowercase and smoothing options through', async () => {
    const lower = expected.corpus.find((c) => c.name === 'mixed-lowercase')!;
    const io = await runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt'), '--lowercase', '-b', '-w', '6']);
    expect(Number(io.out)).toBeCloseTo(lower.bleu, 4);
    const intl = expected.corpus.find((c) => c.name === 'mixed-intl')!;
    const io2 = await runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt'), '--tokenize', 'intl', '-b', '-w', '6']);
    expect(Number(io2.out)).toBeCloseTo(intl.bleu, 4);
    const io3 = await runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt'), '--tokenize', 'char', '--smooth-method', 'add-k', '--smooth-value', '2']);
    expect(io3.out).toContain('|tok:char|smooth:add-k[2.00]|');
  });

  it('aligns several text lines on "=" and supports short signatures', async () => {
    const io = await runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt'), '-m', 'bleu', 'chrf', '--short']);
    const lines = io.out.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]!.indexOf('=')).toBe(lines[1]!.indexOf('='));
    expect(lines[1]).toBe('chrF2|#:1|c:mixed|e:yes|nc:6|nw:0|s:no|v:2.6.0 = 75.5');
  });

  it('--sentence-level prints one line per hypothesis with effective order', async () => {
    const io = await runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt'), '--sentence-level', '-b', '-w', '6']);
    const scores = io.out.trimEnd().split('\n').map(Number);
    expect(scores).toHaveLength(1000);
    expect(scores[0]).toBeCloseTo(46.936711518780484, 4);
  });

  it('reads the hypotheses from standard input without -i', async () => {
    const io = await runBleu([vector('ref.txt'), '-b'], readFileSync(vector('hyp.mixed.txt'), 'utf8'));
    expect(io.out).toBe('55.8\n');
    // --score-only wins over --json, as in sacreBLEU.
    const both = await runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt'), '-b', '--json']);
    expect(both.out).toBe('55.8\n');
  });

  it('warns about tokenized input unless --force', async () => {
    const hyp = join(tmp, 'tok.txt');
    const ref = join(tmp, 'tok.ref');
    writeFileSync(hyp, 'a b .\n'.repeat(120));
    writeFileSync(ref, 'a b.\n'.repeat(120));
    const io = await runBleu([ref, '-i', hyp]);
    expect(io.err).toContain('forgot to detokenize');
    const forced = await runBleu([ref, '-i', hyp, '--force']);
    expect(forced.err).toBe('');
  });

  it('reads files like sacreBLEU: "\\n" line ends, trailing whitespace stripped, last newline optional', () => {
    const f = join(tmp, 'lines.txt');
    writeFileSync(f, 'a b \r\n\nc\td\t');
    expect(readLines(f, 'reference')).toEqual(['a b', '', 'c\td']);
  });

  it('missing file and different line counts are one-line UserErrors naming the file; empty references score as in sacreBLEU', async () => {
    await expect(runBleu([join(tmp, 'nope.txt'), '-i', vector('hyp.mixed.txt')])).rejects.toThrow(/cannot read reference file '.*nope\.txt': no such file/);
    await expect(runBleu([vector('ref.txt'), '-i', join(tmp, 'nope.txt')])).rejects.toThrow(/hypothesis file '.*nope\.txt'/);
    const short = join(tmp, 'short.txt');
    writeFileSync(short, 'one line\n');
    const err = await runBleu([short, '-i', vector('hyp.mixed.txt')]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/reference file '.*short\.txt' has 1 lines but hypothesis file '.*hyp\.mixed\.txt' has 1000/);
    expect((err as Error).message).not.toContain('\n');
    const emptyRef = join(tmp, 'empty-line.ref');
    const hyp2 = join(tmp, 'two.hyp');
    writeFileSync(emptyRef, 'x\n\n');
    writeFileSync(hyp2, 'x\ny\n');
    // `sacrebleu empty-line.ref -i two.hyp` (2.6.0): an empty reference line has length 0.
    expect((await runBleu([emptyRef, '-i', hyp2])).out).toContain('= 0.0 50.0/0.0/0.0/0.0 (BP = 1.000 ratio = 2.000 hyp_len = 2 ref_len = 1)');
    await expect(runBleu([vector('ref.txt'), '-i', vector('hyp.mixed.txt'), '-m', 'ter'])).rejects.toThrow(/unknown metric 'ter'/);
  });
});
