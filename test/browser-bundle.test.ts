/**
 * The browser entry (src/entry/browser.ts, `factorized-transformer/browser` and the `browser`
 * condition of `.`) bundles for `--platform=browser` with no Node built-in anywhere in its import
 * graph, and the bundle runs: evaluated in a plain Node process (tfjs on cpu) it builds a model
 * with the attention layer, round-trips it through tfjs' in-memory IO (so its layers are
 * registered), tokenizes with `HuggingFaceTokenizer.fromJSON` and scores BLEU.
 */
import * as esbuild from 'esbuild';
import { execFile } from 'node:child_process';
import { builtinModules, createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const ENTRY = join(ROOT, 'src/entry/browser.ts');
const NODE_BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const isBuiltin = (path: string): boolean => path.startsWith('node:') || NODE_BUILTINS.has(path) || NODE_BUILTINS.has(path.split('/')[0]!);

const work = mkdtempSync(join(tmpdir(), 'ft-browser-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let result: esbuild.BuildResult<{ write: false; metafile: true }> | undefined;
let failure: esbuild.BuildFailure | undefined;

beforeAll(async () => {
  try {
    result = await esbuild.build({
      entryPoints: [ENTRY],
      platform: 'browser',
      format: 'esm',
      bundle: true,
      write: false,
      metafile: true,
      logLevel: 'silent',
      outfile: join(work, 'browser.mjs'),
      // The user's tfjs, one copy (a peer dependency): not bundled.
      external: ['@tensorflow/*'],
    });
  } catch (err) {
    failure = err as esbuild.BuildFailure;
  }
});

describe('browser entry', () => {
  it('bundles for the browser platform with zero errors', () => {
    const errors = (failure?.errors ?? []).map((e) => `${e.location?.file ?? '?'}:${e.location?.line ?? '?'}: ${e.text}`);
    expect(errors).toEqual([]);
    expect(result!.errors).toEqual([]);
  });

  it('imports no Node built-in anywhere in its graph; only @tensorflow/* stays outside the bundle', () => {
    const nodeImports: string[] = [];
    for (const [file, input] of Object.entries(result!.metafile.inputs)) {
      for (const i of input.imports) if (isBuiltin(i.path)) nodeImports.push(`${file} → ${i.path}`);
      if (isBuiltin(file)) nodeImports.push(file);
    }
    expect(nodeImports).toEqual([]);
    const outputs = Object.values(result!.metafile.outputs);
    expect(outputs).toHaveLength(1);
    const external = [...new Set(outputs[0]!.imports.map((i) => i.path))];
    expect(external.every((p) => p.startsWith('@tensorflow/')), external.join(', ')).toBe(true);
    // None of the Node-only parts rode along.
    const inputs = Object.keys(result!.metafile.inputs);
    for (const nodeOnly of ['src/backend/index.ts', 'src/io/', 'src/train/checkpoint.ts', 'src/text/sentencepiece.ts', 'src/package-root.ts', 'src/tasks/', 'src/cli/']) {
      expect(inputs.filter((f) => f.includes(nodeOnly)), nodeOnly).toEqual([]);
    }
  });

  it('package.json exports it as ./browser and as the browser condition of .', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, unknown>> };
    expect(pkg.exports['./browser']).toEqual({ types: './dist/entry/browser.d.ts', import: './dist/entry/browser.js' });
    const dot = pkg.exports['.']!;
    // First, so that bundlers resolving with the browser condition take it before import/require.
    expect(Object.keys(dot)[0]).toBe('browser');
    expect(dot.browser).toEqual({ types: './dist/entry/browser.d.ts', default: './dist/entry/browser.js' });
  });

  it('the bundle runs: attention model, save/load through tfjs IO, HF tokenizer from JSON, BLEU', async () => {
    // Same bundle, with the tfjs imports pointed at the repo's copies so a plain Node process finds them.
    const repoRequire = createRequire(join(ROOT, 'package.json'));
    const fileUrlOf = (pkg: string): string => pathToFileURL(repoRequire.resolve(pkg)).href;
    const tfjs = fileUrlOf('@tensorflow/tfjs');
    const bundled = await esbuild.build({
      entryPoints: [ENTRY],
      platform: 'browser',
      format: 'esm',
      bundle: true,
      write: false,
      logLevel: 'silent',
      plugins: [{ name: 'tfjs-path', setup: (b) => b.onResolve({ filter: /^@tensorflow\// }, (args) => ({ path: fileUrlOf(args.path), external: true })) }],
    });
    const bundle = join(work, 'browser.mjs');
    writeFileSync(bundle, bundled.outputFiles[0]!.contents);
    const tokenizerJson = join(ROOT, 'test/fixtures/text/wordpiece/tokenizer.json');
    const script = `
      import { readFileSync } from 'node:fs';
      const tf = await import(${JSON.stringify(tfjs)});
      const ft = await import(${JSON.stringify(pathToFileURL(bundle).href)});
      tf.env().set('IS_TEST', true); // no "install tfjs-node" hint
      await tf.setBackend('cpu');
      const x = tf.input({ shape: [4, 8] });
      const y = new ft.FactorizedMultiHeadAttention({ numHeads: 2, rankScale: 0.5 }).apply(x);
      const model = tf.model({ inputs: x, outputs: y });
      let artifacts;
      await model.save(tf.io.withSaveHandler(async (a) => { artifacts = a; return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } }; }));
      const back = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      const input = tf.randomNormal([1, 4, 8]);
      const diff = tf.max(tf.abs(tf.sub(model.predict(input), back.predict(input)))).dataSync()[0];
      const tok = ft.HuggingFaceTokenizer.fromJSON(readFileSync(${JSON.stringify(tokenizerJson)}, 'utf8'));
      const ids = tok.encode('the lord said');
      const bleu = ft.corpusBleu(['the lord said let there be light'], [['the lord said let there be light']]).score;
      console.log(JSON.stringify({ diff, layer: back.layers[1].getClassName(), decoded: tok.decode(ids), bleu }));
    `;
    const runner = join(work, 'run.mjs');
    writeFileSync(runner, script);
    const { stdout, stderr } = await run(process.execPath, [runner], { cwd: work, timeout: 60_000, maxBuffer: 16 << 20 });
    expect(stderr).toBe('');
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as { diff: number; layer: string; decoded: string; bleu: number };
    expect(out.layer).toBe('FactorizedMultiHeadAttention');
    expect(out.diff).toBeLessThan(1e-6);
    expect(out.decoded).toBe('the lord said');
    expect(out.bleu).toBeCloseTo(100, 5);
  });
});
