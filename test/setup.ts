// Every suite runs on the engine FT_BACKEND names (default: auto, i.e. the fallback here).
import { initBackend } from '../src/backend/index.ts';
await initBackend();
