import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { describe, expect, it } from 'vitest';
import { UserError } from '../src/errors.ts';
import { extractTgz, extractZip } from '../data-scripts/lib/archive.ts';
import { download } from '../data-scripts/lib/download.ts';
import { cleanIwsltTrainLine, iwslt14Members, prepareIwslt14 } from '../data-scripts/lib/iwslt14.ts';
import { prepareMono } from '../data-scripts/lib/mono.ts';
import { decodeXmlEntities, keepPair, parseSegments } from '../data-scripts/lib/text-io.ts';
import { WMT14_ARCHIVES, prepareWmt14, wmt14Members } from '../data-scripts/lib/wmt14.ts';

const fixtures = join(import.meta.dirname, 'fixtures/text');
const root = join(import.meta.dirname, '..');

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'text-scripts-'));
}

function lines(path: string): string[] {
  const l = readFileSync(path, 'utf8').split('\n');
  expect(l.pop()).toBe('');
  return l;
}

/** Packs the IWSLT14 fixture folder the way the real de-en.tgz is laid out (de-en/...). */
async function iwsltArchive(dir: string, omit?: string): Promise<string> {
  const archive = join(dir, 'de-en.tgz');
  await tar.c({ gzip: true, file: archive, cwd: join(fixtures, 'iwslt14'), filter: (p) => !omit || !p.endsWith(omit) }, ['de-en']);
  return archive;
}

describe('IWSLT14 preparation (fairseq conventions)', () => {
  it('drops talk metadata, strips title/description tags, holds out every 23rd cleaned pair, concatenates the five test sets', async () => {
    const dir = tempDir();
    const members = await extractTgz(await iwsltArchive(dir), join(dir, 'x'), iwslt14Members());
    const out = join(dir, 'out');
    mkdirSync(out);
    const counts = await prepareIwslt14(members, out);
    // Per talk: title + description + 25 sentences + 1 spaced line kept, 1 pair dropped by the ratio rule.
    expect(counts).toEqual({ train: 54, valid: 2, test: 10, dropped: 2 });
    const trainDe = lines(join(out, 'train.de'));
    const trainEn = lines(join(out, 'train.en'));
    expect(trainEn.length).toBe(54);
    expect(trainDe.slice(0, 3)).toEqual(['Sprecher 1: Über Wale', 'TED Talk Untertitel: Vortrag 1.', 'Das ist Satz 1 über große Wale.']);
    expect(trainDe.some((l) => /<|talkid|keywords|http/.test(l))).toBe(false);
    expect(trainDe).toContain('Viele Leerzeichen hier.');
    expect(trainEn).not.toContain('Yes, yes, I am absolutely sure about that one.');
    // NR % 23 == 0 over the cleaned pairs: #23 is sentence 21, #46 is sentence 41.
    expect(lines(join(out, 'valid.de'))).toEqual(['Das ist Satz 21 über große Wale.', 'Das ist Satz 41 über große Wale.']);
    expect(lines(join(out, 'valid.en'))).toEqual(['This is sentence 21 about big whales.', 'This is sentence 41 about big whales.']);
    const testEn = lines(join(out, 'test.en'));
    expect(testEn.map((l) => l.split(' ')[0])).toEqual([
      ...Array(3).fill('IWSLT14.TED.dev2010'),
      ...Array(2).fill('IWSLT14.TEDX.dev2012'),
      ...Array(2).fill('IWSLT14.TED.tst2010'),
      'IWSLT14.TED.tst2011',
      ...Array(2).fill('IWSLT14.TED.tst2012'),
    ]);
    expect(testEn[0]).toBe('IWSLT14.TED.dev2010 sentence 1: Tom & Jerry say "hello".');
    expect(lines(join(out, 'test.de'))[0]).toBe('IWSLT14.TED.dev2010 Satz 1: Tom & Jerry sagen "Hallo".');
  });

  it('lowercases on request', async () => {
    const dir = tempDir();
    const members = await extractTgz(await iwsltArchive(dir), join(dir, 'x'), iwslt14Members());
    mkdirSync(join(dir, 'out'));
    await prepareIwslt14(members, join(dir, 'out'), { lowercase: true });
    expect(lines(join(dir, 'out/valid.de'))[0]).toBe('das ist satz 21 über große wale.');
  });

  it('names a member missing from the archive, and rejects a file that is not an archive', async () => {
    const dir = tempDir();
    const archive = await iwsltArchive(dir, 'IWSLT14.TED.tst2011.de-en.en.xml');
    await expect(extractTgz(archive, join(dir, 'x'), iwslt14Members())).rejects.toThrow(/lacks de-en\/IWSLT14\.TED\.tst2011\.de-en\.en\.xml/);
    writeFileSync(join(dir, 'fake.tgz'), 'not an archive');
    await expect(extractTgz(join(dir, 'fake.tgz'), join(dir, 'y'), iwslt14Members())).rejects.toThrow(UserError);
  });

  it('recognises metadata lines as fairseq does', () => {
    expect(cleanIwsltTrainLine('<talkid>7</talkid>')).toBeNull();
    expect(cleanIwsltTrainLine('<title>A talk</title>')).toBe('A talk');
    expect(cleanIwsltTrainLine('Plain <b> text')).toBe('Plain <b> text');
  });

  it('runs as a script on a local archive and prints what it wrote', async () => {
    const dir = tempDir();
    const archive = await iwsltArchive(dir);
    const { code, stdout, stderr } = await runTsx(['data-scripts/prepare-iwslt14.ts', '--archive', archive, '--out', join(dir, 'out'), '--no-spm']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(/wrote .*\/out\/\{train,valid,test\}\.\{de,en\}: 54 \/ 2 \/ 10 pairs \(2 training pairs dropped/);
    expect(existsSync(join(dir, 'out/test.de'))).toBe(true);
    const missing = await runTsx(['data-scripts/prepare-iwslt14.ts', '--archive', join(dir, 'nope.tgz'), '--out', join(dir, 'out2')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toMatch(/^error: .*nope\.tgz/);
  });
});

function runTsx(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(join(root, 'node_modules/.bin/tsx'), args, { cwd: root }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('WMT14 preparation', () => {
  async function extractAll(dir: string, src: 'en' | 'de', tgt: 'en' | 'de'): Promise<Record<string, string>> {
    const members = wmt14Members(src, tgt);
    const files: Record<string, string> = {};
    for (const key of Object.keys(WMT14_ARCHIVES) as (keyof typeof WMT14_ARCHIVES)[]) {
      const zip = join(fixtures, 'wmt14', WMT14_ARCHIVES[key].url.split('/').pop()!);
      Object.assign(files, await extractZip(zip, join(dir, 'x'), members[key]));
    }
    return files;
  }

  it('en→de: train = Europarl + Common Crawl + News Commentary (cleaned), valid = newstest2013, test = newstest2014 .sgm', async () => {
    const dir = tempDir();
    const files = await extractAll(dir, 'en', 'de');
    const out = join(dir, 'out');
    mkdirSync(out);
    const counts = await prepareWmt14(files, out, 'en', 'de');
    expect(counts).toEqual({ train: 12, valid: 5, test: 3, dropped: 1 });
    const trainEn = lines(join(out, 'train.en'));
    expect(trainEn[0]).toBe('Europarl English sentence 1 .');
    expect(trainEn[5]).toBe('Commoncrawl English sentence 1 .');
    expect(trainEn[11]).toBe('NewsCommentary English sentence 3 .');
    expect(lines(join(out, 'train.de')).length).toBe(12);
    expect(lines(join(out, 'valid.de'))[4]).toBe('newstest2013 deutscher Satz 5 .');
    expect(lines(join(out, 'test.en'))).toEqual(['Gutach: Increased safety for pedestrians', 'They are not even 100 metres apart: "A & B"', 'Two spaces']);
    expect(lines(join(out, 'test.de'))[0]).toBe('Gutach: Noch mehr Sicherheit für Fußgänger');
    await expect(prepareWmt14(files, out, 'en', 'de', { expectStandardSizes: true })).rejects.toThrow(/have 5\/3 pairs, expected 3000\/3003/);
  });

  it('de→en uses the German source and English reference .sgm', async () => {
    const dir = tempDir();
    const files = await extractAll(dir, 'de', 'en');
    mkdirSync(join(dir, 'out'));
    await prepareWmt14(files, join(dir, 'out'), 'de', 'en');
    expect(lines(join(dir, 'out/test.de'))[0]).toBe('Gutach: Noch mehr Sicherheit für Fußgänger');
    expect(lines(join(dir, 'out/test.en'))[0]).toBe('Gutach: Increased safety for pedestrians');
  });

  it('parses <seg> lines and XML entities', () => {
    expect(parseSegments('<doc>\n<seg id="1"> a &lt;b&gt; &#233;&#x41; </seg>\n<p>\n<seg id="2">c</seg>\n', 'f.sgm')).toEqual(['a <b> éA', 'c']);
    expect(() => parseSegments('<seg id="1">open\n', 'f.sgm')).toThrow(/f\.sgm:1: a <seg> that does not close/);
    expect(decodeXmlEntities('&amp;amp;')).toBe('&amp;');
  });

  it('cleans pairs like clean-corpus-n (length 1..max, ratio)', () => {
    const rule = { minWords: 1, maxWords: 5, maxRatio: 1.5 };
    expect(keepPair('a b c', 'x y', rule)).toBe(true);
    expect(keepPair('a b c d', 'x y', rule)).toBe(false);
    expect(keepPair('', 'x', rule)).toBe(false);
    expect(keepPair('a b c d e f', 'u v w x y z', rule)).toBe(false);
    expect(keepPair('a \ufffd', 'x y', rule)).toBe(false);
  });
});

describe('download (size + sha256 check)', () => {
  async function serve(body: Buffer): Promise<{ url: string; close: () => void }> {
    const server = createServer((_req, res) => res.end(body));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/de-en.tgz`, close: () => server.close() };
  }

  it('writes a file whose size and checksum match, re-uses it, and rejects a mismatch without leaving a file', async () => {
    const body = Buffer.from('pretend archive bytes '.repeat(1000));
    const sha256 = createHash('sha256').update(body).digest('hex');
    const { url, close } = await serve(body);
    const dir = tempDir();
    const log: string[] = [];
    try {
      const dest = await download({ url, size: body.length, sha256 }, join(dir, 'ok.tgz'), (m) => log.push(m));
      expect(readFileSync(dest).equals(body)).toBe(true);
      await download({ url, size: body.length, sha256 }, dest, (m) => log.push(m));
      expect(log.at(-1)).toMatch(/^re-using .*ok\.tgz .*verified/);
      await expect(download({ url, size: body.length, sha256: '0'.repeat(64) }, join(dir, 'bad.tgz'), () => {})).rejects.toThrow(
        /bad\.tgz\.part: sha256 [0-9a-f]{64}, expected 0{64}/,
      );
      await expect(download({ url, size: 5, sha256: null }, join(dir, 'short.tgz'), () => {})).rejects.toThrow(/expected 5 for/);
      expect(existsSync(join(dir, 'bad.tgz'))).toBe(false);
      expect(existsSync(join(dir, 'bad.tgz.part'))).toBe(false);
    } finally {
      close();
    }
  });

  it('fails with one line when the host cannot be reached', async () => {
    const err = await download({ url: 'http://127.0.0.1:9/de-en.tgz', size: null, sha256: null }, join(tempDir(), 'x.tgz'), () => {}).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/^cannot download http:\/\/127\.0\.0\.1:9\/de-en\.tgz: .*fetch it by hand to /);
    expect(err.message).not.toContain('\n');
  });
});

describe('prepare-mono', () => {
  it('concatenates the *.txt files in name order and holds out contiguous valid/test chunks at the end', async () => {
    const dir = tempDir();
    const input = join(dir, 'in');
    mkdirSync(input);
    writeFileSync(join(input, 'b.txt'), Array.from({ length: 5 }, (_, i) => `b${i}`).join('\n') + '\n');
    writeFileSync(join(input, 'a.txt'), Array.from({ length: 6 }, (_, i) => `a${i}`).join('\n') + '\n\n   \n');
    writeFileSync(join(input, 'notes.md'), 'ignored\n');
    const out = join(dir, 'out');
    mkdirSync(out);
    const counts = await prepareMono(input, out, { validLines: 2, testLines: 3 });
    expect(counts).toEqual({ train: 6, valid: 2, test: 3, files: 2 });
    expect(lines(join(out, 'train.txt'))).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
    expect(lines(join(out, 'valid.txt'))).toEqual(['b0', 'b1']);
    expect(lines(join(out, 'test.txt'))).toEqual(['b2', 'b3', 'b4']);
    await expect(prepareMono(input, out, { validLines: 6, testLines: 6 })).rejects.toThrow(/11 non-empty lines, too few/);
    await expect(prepareMono(join(dir, 'nope'), out, { validLines: 1, testLines: 1 })).rejects.toThrow(/not a readable folder/);
  });
});
