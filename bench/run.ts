/**
 * `npm run bench [-- NAME ...] [--json] [--quick]`: runs the named benchmarks (all by default).
 * Each benchmark lives in `bench/<name>.ts` and exports `run: Benchmark`.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { initBackend } from '../src/backend/index.ts';
import type { Benchmark, BenchResult } from './common.ts';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !['run.ts', 'common.ts', 'train-step.ts'].includes(f))
  .map((f) => f.replace(/\.ts$/, ''))
  .sort();

const args = process.argv.slice(2);
const json = args.includes('--json');
const quick = args.includes('--quick');
const names = args.filter((a) => !a.startsWith('--'));
for (const n of names) {
  if (!available.includes(n)) {
    console.error(`error: unknown benchmark '${n}'; available: ${available.join(', ')}`);
    process.exit(1);
  }
}

function print(r: BenchResult): void {
  if (json) {
    console.log(JSON.stringify(r));
    return;
  }
  const base = r.baseline === null ? 'no baseline' : `baseline ${r.baseline.toPrecision(4)} ${r.unit}`;
  const ratio = r.ratio === null ? '' : `, ratio ${r.ratio.toFixed(3)}`;
  const extra = r.extra ? `  ${JSON.stringify(r.extra)}` : '';
  console.log(`${r.name}: ${r.value.toPrecision(4)} ${r.unit} (${base}${ratio})${extra}`);
}

await initBackend();
for (const name of names.length ? names : available) {
  const mod = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as { run: Benchmark };
  for (const r of await mod.run({ json, quick })) print(r);
}
