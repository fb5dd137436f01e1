#!/usr/bin/env node
// The installed command runs the compiled CLI (dist/cli/main.js, built by `npm run build`).
// In a checkout of the repository (src/ present, tsx installed as a dev dependency) it runs the
// TypeScript sources instead, so the repository's tests and `npm start` never see a stale dist/.
import { existsSync } from 'node:fs';

const sources = new URL('../src/cli/main.ts', import.meta.url);
let main;
if (existsSync(sources) && (await import('tsx/esm/api').then((tsx) => (tsx.register(), true), () => false))) {
  ({ main } = await import(sources.href));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
await main(process.argv.slice(2));
