// Every suite runs on the engine FT_BACKEND names; without it on wasm (the CPU engine CI has), not
// `auto`: on a machine with a real GPU `auto` would pick webgpu, where the suites' own synchronous
// reads (dataSync in test code) cannot run. The webgpu suites start that engine themselves.
import { initBackend } from '../src/backend/index.ts';
await initBackend({ backend: process.env.FT_BACKEND ? undefined : 'wasm' });
