import { Command } from 'commander';
import { initBackend } from './src/backend/index.ts';
import { registerExperimentCommands } from './src/experiments/cli.ts';
await initBackend();
const program = new Command();
registerExperimentCommands(program);
await program.parseAsync(process.argv.slice(2), { from: 'user' });
