/**
 * Engine choice and start-up: tfjs-node-gpu > tfjs-node > wasm > cpu.
 *
 * The native backends download libtensorflow at install time and are optional dependencies;
 * where they are missing we fall back to the pure-npm engines and say why, once.
 */
import * as tf from '@tensorflow/tfjs';
import { createRequire } from 'node:module';
import { registerUnsortedSegmentSum } from './kernels/unsortedSegmentSum.ts';

export type BackendChoice = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
export interface BackendOptions {
  /** Which engine; defaults to env FT_BACKEND, then 'auto'. */
  backend?: BackendChoice;
  /** Log the choice (once per process). Default true. */
  verbose?: boolean;
}
export interface BackendInfo {
  name: string;
  requested: BackendChoice;
  skipped: { name: string; reason: string }[];
}

const require = createRequire(import.meta.url);
let current: BackendInfo | undefined;
let logged = false;

const CHOICES: readonly BackendChoice[] = ['auto', 'tensorflow', 'wasm', 'cpu'];

function parseChoice(value: string | undefined): BackendChoice {
  const v = (value ?? 'auto').trim() || 'auto';
  if (!(CHOICES as readonly string[]).includes(v)) {
    throw new Error(`FT_BACKEND/backend: unknown backend '${v}'; expected one of ${CHOICES.join(', ')}`);
  }
  return v as BackendChoice;
}

function tryRequire(pkg: string): string | undefined {
  try {
    require(pkg);
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'MODULE_NOT_FOUND' ? 'not installed' : String(e.message).split('\n')[0];
  }
}

async function setUp(name: 'tensorflow' | 'wasm' | 'cpu'): Promise<boolean> {
  if (name === 'wasm') {
    await import('@tensorflow/tfjs-backend-wasm');
    registerUnsortedSegmentSum('wasm');
  }
  if (name === 'cpu') registerUnsortedSegmentSum('cpu');
  const ok = await tf.setBackend(name);
  await tf.ready();
  return ok;
}

/** Picks and starts the engine. Idempotent: a second call with the same choice is free. */
export async function initBackend(options: BackendOptions = {}): Promise<BackendInfo> {
  const requested = options.backend ?? parseChoice(process.env.FT_BACKEND);
  parseChoice(requested);
  if (current && current.requested === requested && tf.getBackend() === current.name) return current;
  const skipped: BackendInfo['skipped'] = [];
  let name: string | undefined;
  const order: ('tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu')[] =
    requested === 'auto' ? ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] : requested === 'tensorflow' ? ['tensorflow-gpu', 'tensorflow'] : [requested];
  for (const candidate of order) {
    if (candidate === 'tensorflow-gpu' || candidate === 'tensorflow') {
      const pkg = candidate === 'tensorflow-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
      const why = tryRequire(pkg);
      if (why) {
        skipped.push({ name: pkg, reason: why });
        continue;
      }
      if (await setUp('tensorflow')) {
        name = candidate;
        break;
      }
      skipped.push({ name: pkg, reason: 'setBackend failed' });
      continue;
    }
    try {
      if (await setUp(candidate)) {
        name = candidate;
        break;
      }
      skipped.push({ name: candidate, reason: 'setBackend failed' });
    } catch (err) {
      skipped.push({ name: candidate, reason: String((err as Error).message).split('\n')[0] });
    }
  }
  if (!name) {
    throw new Error(`no usable backend for '${requested}': ${skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}`);
  }
  current = { name, requested, skipped };
  if ((options.verbose ?? true) && !logged && !process.env.VITEST) {
    logged = true;
    const why = skipped.length ? `; skipped ${skipped.map((s) => `${s.name}: ${s.reason}`).join(', ')}` : '';
    process.stderr.write(`[factorized-transformer] backend ${name}${why}\n`);
  }
  return current;
}

/** The engine chosen by the last initBackend call, if any. */
export function backendInfo(): BackendInfo | undefined {
  return current;
}
