/**
 * Hugging Face `tokenizer.json` (WordPiece for BERT-style models, BPE, Unigram), run by
 * `@huggingface/tokenizers` entirely offline from local files.
 *
 * Special ids come from `tokenizer_config.json` when it names them, else from the usual token
 * spellings ([PAD]/[UNK]/[CLS]/[SEP]/[MASK] for BERT, <pad>/<unk>/<s>/</s>/<mask> otherwise);
 * for BERT vocabularies bos is [CLS] and eos is [SEP]. Decoding never applies
 * `clean_up_tokenization_spaces`, which rewrites " ." → "." and "do n't" → "don't" and so
 * corrupts translations.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors.ts';
import { completeSpecialIds, type Tokenizer } from './tokenizer-types.ts';

const SPELLINGS = {
  pad: ['[PAD]', '<pad>', '<|pad|>'],
  unk: ['[UNK]', '<unk>', '<|unk|>'],
  bos: ['[CLS]', '<s>', '<bos>', '<|startoftext|>', '<|begin_of_text|>'],
  eos: ['[SEP]', '</s>', '<eos>', '<|endoftext|>', '<|end_of_text|>'],
  mask: ['[MASK]', '<mask>'],
} as const;

type Config = Record<string, unknown>;

function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

function readJson(path: string, what: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UserError(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const value = JSON.parse(text);
    if (!value || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Config;
  } catch (e) {
    throw new UserError(`${path} is not a ${what} (${(e as Error).message})`);
  }
}

export class HuggingFaceTokenizer implements Tokenizer {
  readonly kind = 'huggingface' as const;
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly maskId?: number;
  private readonly silentIds: Set<number>;
  /** Number of ids the tokenizer itself knows (ids at or above it were appended for missing specials). */
  private readonly baseVocabSize: number;

  private constructor(
    readonly jsonPath: string,
    private readonly configPath: string | null,
    readonly fingerprint: string,
    private readonly hf: HfTokenizer,
    config: Config,
  ) {
    const vocab = hf.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) maxId = Math.max(maxId, id);
    this.baseVocabSize = maxId + 1;
    const find = (configKeys: string[], spellings: readonly string[]): number => {
      for (const key of configKeys) {
        const text = tokenText(config[key]);
        if (text !== undefined && vocab.has(text)) return vocab.get(text)!;
      }
      for (const s of spellings) if (vocab.has(s)) return vocab.get(s)!;
      return -1;
    };
    const ids = completeSpecialIds(
      {
        padId: find(['pad_token'], SPELLINGS.pad),
        unkId: find(['unk_token'], SPELLINGS.unk),
        bosId: find(['bos_token', 'cls_token'], SPELLINGS.bos),
        eosId: find(['eos_token', 'sep_token'], SPELLINGS.eos),
      },
      this.baseVocabSize,
    );
    this.vocabSize = ids.vocabSize;
    this.padId = ids.padId;
    this.unkId = ids.unkId;
    this.bosId = ids.bosId;
    this.eosId = ids.eosId;
    const mask = find(['mask_token'], SPELLINGS.mask);
    if (mask >= 0) this.maskId = mask;
    this.silentIds = new Set([this.padId, this.bosId, this.eosId]);
  }

  /** `jsonPath` is a tokenizer.json; a tokenizer_config.json next to it is read when present. */
  static load(jsonPath: string): HuggingFaceTokenizer {
    if (!existsSync(jsonPath)) throw new UserError(`tokenizer not found: ${jsonPath} (expected a Hugging Face tokenizer.json)`);
    const json = readJson(jsonPath, 'Hugging Face tokenizer.json');
    if (!json.model || typeof json.model !== 'object') {
      throw new UserError(`${jsonPath} is not a Hugging Face tokenizer.json (no "model" object)`);
    }
    const configPath = join(dirname(jsonPath), 'tokenizer_config.json');
    const hasConfig = existsSync(configPath);
    const config = hasConfig ? readJson(configPath, 'tokenizer_config.json') : {};
    let hf: HfTokenizer;
    try {
      // Fields the library requires but older tokenizer.json files may omit.
      hf = new HfTokenizer({ added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json }, config);
    } catch (e) {
      throw new UserError(`${jsonPath} is not a usable Hugging Face tokenizer (${(e as Error).message})`);
    }
    const hash = createHash('sha256').update(readFileSync(jsonPath));
    if (hasConfig) hash.update(readFileSync(configPath));
    return new HuggingFaceTokenizer(jsonPath, hasConfig ? configPath : null, hash.digest('hex'), hf, config);
  }

  encode(text: string): number[] {
    const { ids } = this.hf.encode(text, { add_special_tokens: false });
    // A model without an unknown token (byte-level BPE never needs one) yields undefined for unseen pieces.
    return ids.map((id) => (Number.isInteger(id) ? id : this.unkId));
  }

  decode(ids: ArrayLike<number>): string {
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      }
      if (!this.silentIds.has(id) && id < this.baseVocabSize) kept.push(id);
    }
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { clean_up_tokenization_spaces: false });
  }

  idToPiece(id: number): string {
    if (id < 0 || id >= this.vocabSize) throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    const piece = id < this.baseVocabSize ? this.hf.id_to_token(id) : undefined;
    if (piece !== undefined) return piece;
    return id === this.padId ? '<pad>' : id === this.unkId ? '<unk>' : id === this.bosId ? '<s>' : id === this.eosId ? '</s>' : '';
  }

  files(): string[] {
    return this.configPath ? [this.jsonPath, this.configPath] : [this.jsonPath];
  }
}
