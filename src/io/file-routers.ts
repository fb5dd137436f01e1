/**
 * `model.save('file://DIR')` and `tf.loadLayersModel('file://DIR/model.json')` in plain Node.
 *
 * tfjs registers its `file://` handlers only in @tensorflow/tfjs-node; without it such URLs fail
 * ("Cannot find any save handlers"). This module registers routers that map them onto our folder
 * handler (train/checkpoint.ts `fileIOHandler`: model.json + weights.bin + SHA256SUMS, written to
 * a temporary folder and renamed into place). Node only: browsers save through `localstorage://`,
 * `indexeddb://` and `downloads://`.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../errors.ts';
import { CHECKSUMS_FILE, fileIOHandler, MODEL_JSON, WEIGHTS_BIN } from '../train/checkpoint.ts';

const SCHEME = 'file://';
/** What a saved model folder holds; a folder with anything else is not replaced. */
const MODEL_FILES = new Set([MODEL_JSON, WEIGHTS_BIN, CHECKSUMS_FILE]);

/** `file:///abs/dir`, `file://rel/dir` or either ending in `/model.json` → the folder's path. */
function folderOf(url: string): string {
  const rest = url.slice(SCHEME.length);
  const file = rest.startsWith('/') ? fileURLToPath(`${SCHEME}${rest}`) : path.resolve(rest);
  return path.basename(file) === 'model.json' ? path.dirname(file) : file;
}

/** Refuses to replace a folder (or file) that is not a saved model: nothing of the user's is lost. */
function checkReplaceable(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new UserError(`${dir}: exists and is not a folder; save the model to a new or empty folder`);
  const foreign = readdirSync(dir).filter((name) => !MODEL_FILES.has(name));
  if (foreign.length > 0) {
    throw new UserError(`${dir}: holds other files (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? ', …' : ''}); save the model to a new or empty folder`);
  }
}

function urlOf(url: string | string[]): string | null {
  const u = Array.isArray(url) ? (url.length === 1 ? url[0] : null) : url;
  return typeof u === 'string' && u.startsWith(SCHEME) ? u : null;
}

let registered = false;

/** Routers return null for URLs they do not serve (tfjs' router_registry skips those); the
 * IORouter type does not say so. */
const NOT_OURS = null as unknown as tf.io.IOHandler;

/**
 * Registers the `file://` save and load routers, once, unless another package (tfjs-node) already
 * serves `file://` (two matching handlers would make tfjs refuse both). Returns whether ours are
 * the ones in use. `initBackend()` calls it; call it yourself if you use tfjs without it.
 */
export function registerFileRouters(): boolean {
  if (registered) return true;
  if (tf.io.getSaveHandlers(`${SCHEME}/probe`).length > 0) return false;
  tf.io.registerSaveRouter((url) => {
    const u = urlOf(url);
    if (u === null) return NOT_OURS;
    const dir = folderOf(u);
    const inner = fileIOHandler(dir);
    return {
      save: async (artifacts) => {
        checkReplaceable(dir);
        return inner.save!(artifacts);
      },
    };
  });
  tf.io.registerLoadRouter((url) => {
    const u = urlOf(url);
    return u === null ? NOT_OURS : fileIOHandler(folderOf(u));
  });
  registered = true;
  return true;
}
