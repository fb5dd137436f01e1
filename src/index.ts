/** factorized-transformer: the public API (ARCHITECTURE §3). */
export { initBackend, backendInfo } from './backend/index.ts';
export type { BackendChoice, BackendInfo, BackendOptions } from './backend/index.ts';
