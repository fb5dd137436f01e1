/**
 * The user cache folder: decompressed default corpora and `*.ids.bin` token-id caches go here,
 * never into the installed package (often read-only) nor into the user's data folder.
 *
 *   1. `$FT_CACHE_DIR` (`$FT_DATA_CACHE` is accepted as an older alias);
 *   2. `$XDG_CACHE_HOME/factorized-transformer`;
 *   3. `~/.cache/factorized-transformer`.
 *
 * Read on every call, so a change of the environment takes effect at once (tests rely on it).
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

export const CACHE_DIR_NAME = 'factorized-transformer';

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.FT_CACHE_DIR || env.FT_DATA_CACHE;
  if (explicit) return resolve(explicit);
  // The XDG spec ignores relative values.
  const xdg = env.XDG_CACHE_HOME;
  if (xdg && isAbsolute(xdg)) return join(xdg, CACHE_DIR_NAME);
  return join(homedir(), '.cache', CACHE_DIR_NAME);
}
