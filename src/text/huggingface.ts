/**
 * Hugging Face `tokenizer.json` (WordPiece for BERT-style models, BPE, Unigram), run by
 * `@huggingface/tokenizers` entirely offline from local files.
 *
 * Special ids come from `tokenizer_config.json` when it names them, else from the usual token
 * spellings ([PAD]/[UNK]/[CLS]/[SEP]/[MASK] for BERT, <pad>/<unk>/<s>/</s>/<mask> otherwise);
 * for BERT vocabularies bos is [CLS] and eos is [SEP]. Decoding never applies
 * `clean_up_tokenization_spaces`, which rewrites " ." → "." and "do n't" → "don't" and so
 * corrupts translations.
 *
 * No Node built-ins here, so that browsers can use it (`HuggingFaceTokenizer.fromJSON`); reading
 * the files from disk is huggingface-files.ts (`loadHuggingFaceTokenizer`).
 */
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

/** `value` as a JSON object: parsed when a string; `what` and `source` name it in errors. */
function jsonObject(value: unknown, source: string, what: string): Config {
  try {
    const v = typeof value === 'string' ? JSON.parse(value) : value;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Config;
  } catch (e) {
    throw new UserError(`${source} is not a ${what} (${(e as Error).message})`);
  }
}

/** FNV-1a (two 32-bit lanes) of a string, in hex: a content fingerprint without node:crypto. */
function fnv1a64(text: string): string {
  let a = 0x811c9dc5;
  let b = 0xcbf29ce4;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193) >>> 0;
    b = Math.imul(b ^ c, 0x01000193 + 0x2000) >>> 0;
  }
  return a.toString(16).padStart(8, '0') + b.toString(16).padStart(8, '0');
}

/** Options of `HuggingFaceTokenizer.fromJSON`. */
export interface HuggingFaceTokenizerSource {
  /** What error messages call the tokenizer.json (default 'tokenizer.json'). */
  name?: string;
  /** What error messages call the tokenizer_config.json (default 'tokenizer_config.json'). */
  configName?: string;
  /** The `fingerprint` (identity of the vocabulary); default a hash of the JSON contents. */
  fingerprint?: string;
  /** What `files()` returns (paths a checkpoint copies); default none. */
  files?: string[];
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
    private readonly sourceFiles: string[],
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

  /**
   * A tokenizer from the contents of a tokenizer.json (and of its tokenizer_config.json, when there
   * is one), as parsed objects or JSON text: e.g. fetched in a browser. Node users with files on
   * disk call `loadHuggingFaceTokenizer(path)` or `loadTokenizer(path)`.
   */
  static fromJSON(tokenizerJson: object | string, tokenizerConfig?: object | string, source: HuggingFaceTokenizerSource = {}): HuggingFaceTokenizer {
    const name = source.name ?? 'tokenizer.json';
    const json = jsonObject(tokenizerJson, name, 'Hugging Face tokenizer.json');
    if (!json.model || typeof json.model !== 'object') {
      throw new UserError(`${name} is not a Hugging Face tokenizer.json (no "model" object)`);
    }
    const config = tokenizerConfig === undefined ? {} : jsonObject(tokenizerConfig, source.configName ?? 'tokenizer_config.json', 'tokenizer_config.json');
    let hf: HfTokenizer;
    try {
      // Fields the library requires but older tokenizer.json files may omit.
      hf = new HfTokenizer({ added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json }, config);
    } catch (e) {
      throw new UserError(`${name} is not a usable Hugging Face tokenizer (${(e as Error).message})`);
    }
    const fingerprint = source.fingerprint ?? fnv1a64(JSON.stringify(json) + '\n' + JSON.stringify(config));
    return new HuggingFaceTokenizer(source.files ?? [], fingerprint, hf, config);
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
    return [...this.sourceFiles];
  }
}
