import { initBackend } from '../src/backend/index.ts';

// Settings every suite needs, made the way a user would make them (env variables the library
// documents), before any engine starts: one compute thread per worker, because vitest already runs
// one test file per core (tfjs' thread pools would fight over the cores); no "backend ..." line on
// stderr (FT_LOG=0, the default of initBackend's `verbose`). Spawned CLI processes inherit
// both through process.env. (The backend reads them when initBackend runs, not at import.)
process.env.FT_THREADS ??= '1';
process.env.FT_LOG ??= '0';

// Every suite runs on the engine FT_BACKEND names; without it on wasm (the CPU engine CI has), not
// `auto`: on a machine with a real GPU `auto` would pick webgpu, where the suites' own synchronous
// reads (dataSync in test code) cannot run. The webgpu suites start that engine themselves.
await initBackend({ backend: process.env.FT_BACKEND ? undefined : 'wasm' });
