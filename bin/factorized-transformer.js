#!/usr/bin/env node
// The installed command: the package runs from TypeScript sources (no build step), so register
// tsx's loader first, then hand over to the CLI.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv.slice(2));
