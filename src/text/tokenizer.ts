/**
 * `loadTokenizer`, which picks the tokenizer implementation from what is on disk: a SentencePiece
 * `.model` file, or a Hugging Face `tokenizer.json` (the file itself or a folder holding it). The
 * `Tokenizer` interface lives in `tokenizer-types.ts` (re-exported here); the implementations are
 * imported only when needed.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import type { Tokenizer } from './tokenizer-types.ts';

export type { SpecialIds, Tokenizer, TokenizerKind } from './tokenizer-types.ts';

/**
 * Loads a tokenizer from `pathOrDir`:
 * - a `.model` file → SentencePiece;
 * - a `tokenizer.json` file, or a folder with one (plus an optional `tokenizer_config.json`) → Hugging Face;
 * - a folder with exactly one `*.model` and no tokenizer.json → that SentencePiece model.
 */
export async function loadTokenizer(pathOrDir: string): Promise<Tokenizer> {
  if (!existsSync(pathOrDir)) {
    throw new UserError(`tokenizer not found: ${pathOrDir} (expected a SentencePiece .model file or a folder with tokenizer.json)`);
  }
  if (statSync(pathOrDir).isDirectory()) {
    const json = join(pathOrDir, 'tokenizer.json');
    if (existsSync(json)) {
      const { loadHuggingFaceTokenizer } = await import('./huggingface-files.ts');
      return loadHuggingFaceTokenizer(json);
    }
    const { readdirSync } = await import('node:fs');
    const models = readdirSync(pathOrDir).filter((f) => f.endsWith('.model'));
    if (models.length === 1) {
      const { SentencePieceTokenizer } = await import('./sentencepiece.ts');
      return SentencePieceTokenizer.load(join(pathOrDir, models[0]));
    }
    throw new UserError(
      `${pathOrDir}: no tokenizer.json and ${models.length === 0 ? 'no' : 'several'} *.model files (expected a folder with tokenizer.json or exactly one SentencePiece .model)`,
    );
  }
  if (pathOrDir.endsWith('.json')) {
    const { loadHuggingFaceTokenizer } = await import('./huggingface-files.ts');
    return loadHuggingFaceTokenizer(pathOrDir);
  }
  const { SentencePieceTokenizer } = await import('./sentencepiece.ts');
  return SentencePieceTokenizer.load(pathOrDir);
}
