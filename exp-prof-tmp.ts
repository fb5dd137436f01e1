import { initBackend } from './src/backend/index.ts';
import { runExperiment } from './src/experiments/runner.ts';
import { parseExperimentSpec } from './src/experiments/spec.ts';
import { makeTaskRunFunction } from './src/experiments/task-runs.ts';
await initBackend();
const t0 = Date.now();
const spec = parseExperimentSpec(JSON.parse(process.argv[2]), 'x');
await runExperiment(spec, { out: process.argv[3], runFn: makeTaskRunFunction({ progress: 'lines' }), log: (l) => console.log(((Date.now() - t0) / 1000).toFixed(1), l) });
console.log('total', (Date.now() - t0) / 1000);
