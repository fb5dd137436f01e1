/**
 * Hugging Face tokenizers from files on disk (Node only): huggingface.ts holds the tokenizer
 * itself, free of Node built-ins so that browsers can use it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UserError } from '../errors.ts';
import { HuggingFaceTokenizer } from './huggingface.ts';

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/**
 * `jsonPath` is a tokenizer.json; a tokenizer_config.json next to it is read when present. The
 * fingerprint is the SHA-256 of the two files' bytes; `files()` lists them.
 */
export function loadHuggingFaceTokenizer(jsonPath: string): HuggingFaceTokenizer {
  if (!existsSync(jsonPath)) throw new UserError(`tokenizer not found: ${jsonPath} (expected a Hugging Face tokenizer.json)`);
  const json = readText(jsonPath);
  const configPath = join(dirname(jsonPath), 'tokenizer_config.json');
  const hasConfig = existsSync(configPath);
  const config = hasConfig ? readText(configPath) : undefined;
  const hash = createHash('sha256').update(readFileSync(jsonPath));
  if (hasConfig) hash.update(readFileSync(configPath));
  return HuggingFaceTokenizer.fromJSON(json, config, {
    name: jsonPath,
    configName: configPath,
    fingerprint: hash.digest('hex'),
    files: hasConfig ? [jsonPath, configPath] : [jsonPath],
  });
}
