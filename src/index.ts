/** factorized-transformer: the public API (docs/ARCHITECTURE.md §3). */
export * from './backend/index.ts';
export * from './factorized/index.ts';
export * from './attention/index.ts';
export * from './models/index.ts';
export * from './decode/index.ts';
export * from './train/index.ts';
export * from './metrics/index.ts';
export * from './text/index.ts';
export { UserError, InternalError, InterruptedError } from './errors.ts';
export { registerFileRouters } from './io/file-routers.ts';
export { SeededRandom, globalRandom, setGlobalSeed, seededDropout } from './random.ts';
// The task APIs the README documents (also under `factorized-transformer/translation` and `/mlm`).
export * from './entry/translation.ts';
export * from './entry/mlm.ts';
