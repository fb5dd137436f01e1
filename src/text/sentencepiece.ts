/**
 * SentencePiece `.model` files, encoded and decoded by the wasm build of the official C++ library
 * (`sentencepiece-js`), so ids match `spm_encode` exactly.
 *
 * `sentencepiece-js` exposes load / encodeIds / decodeIds but neither the vocabulary nor the
 * special ids, and it ignores the status of `Load`; the piece table and ids are therefore read
 * from the file itself (sentencepiece-model.ts), and the load status is checked here.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import spm from 'sentencepiece-js';
import { UserError } from '../errors.ts';
import { parseSentencePieceModel, type SentencePieceModelInfo } from './sentencepiece-model.ts';
import { completeSpecialIds, type Tokenizer } from './tokenizer-types.ts';

type WasmProcessor = InstanceType<typeof spm.SentencePieceProcessor>;

const LONE_SURROGATES = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export class SentencePieceTokenizer implements Tokenizer {
  readonly kind = 'sentencepiece' as const;
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly maskId?: number;
  /** Ids that decode to nothing: pad/bos/eos and ids appended after the model's pieces. */
  private readonly silentIds: Set<number>;

  private constructor(
    readonly modelPath: string,
    readonly fingerprint: string,
    private readonly info: SentencePieceModelInfo,
    private readonly processor: WasmProcessor,
  ) {
    const ids = completeSpecialIds(info, info.pieces.length);
    this.vocabSize = ids.vocabSize;
    this.padId = ids.padId;
    this.unkId = ids.unkId;
    this.bosId = ids.bosId;
    this.eosId = ids.eosId;
    const mask = info.pieces.indexOf('<mask>');
    if (mask >= 0) this.maskId = mask;
    this.silentIds = new Set([this.padId, this.bosId, this.eosId]);
  }

  static async load(modelPath: string): Promise<SentencePieceTokenizer> {
    if (!existsSync(modelPath)) throw new UserError(`tokenizer not found: ${modelPath} (expected a SentencePiece .model file)`);
    const bytes = readFileSync(modelPath);
    let info: SentencePieceModelInfo;
    try {
      info = parseSentencePieceModel(bytes);
    } catch (e) {
      throw new UserError(`${modelPath} is not a SentencePiece model (${(e as Error).message}); expected a .model file written by spm_train`);
    }
    const processor = new spm.SentencePieceProcessor();
    // Each load starts an emscripten runtime that adds process-wide 'uncaughtException' and
    // 'unhandledRejection' handlers (which rethrow, printing the whole minified bundle). Remove
    // them: they change nothing we want and pile up with every tokenizer loaded.
    const exceptionHandlers = new Set(process.listeners('uncaughtException'));
    const rejectionHandlers = new Set(process.listeners('unhandledRejection'));
    try {
      await processor.load(modelPath);
    } finally {
      for (const l of process.listeners('uncaughtException')) if (!exceptionHandlers.has(l)) process.off('uncaughtException', l);
      for (const l of process.listeners('unhandledRejection')) if (!rejectionHandlers.has(l)) process.off('unhandledRejection', l);
    }
    const status = processor.processor.status();
    const message = status.ToString();
    status.delete();
    if (message !== 'OK') throw new UserError(`${modelPath} is not a SentencePiece model (${message.split('\n')[0]})`);
    const fingerprint = createHash('sha256').update(bytes).digest('hex');
    return new SentencePieceTokenizer(modelPath, fingerprint, info, processor);
  }

  encode(text: string): number[] {
    // The wasm glue converts a lone surrogate by swallowing the next character; make the string
    // well-formed first (lone surrogates become U+FFFD, which encodes as <unk>).
    return this.processor.encodeIds(text.replace(LONE_SURROGATES, '\ufffd'));
  }

  decode(ids: ArrayLike<number>): string {
    const kept: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      }
      if (!this.silentIds.has(id) && id < this.info.pieces.length) kept.push(id);
    }
    return kept.length === 0 ? '' : this.processor.decodeIds(kept);
  }

  idToPiece(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
    if (id < this.info.pieces.length) return this.info.pieces[id];
    // An id appended for a special the model lacks (see completeSpecialIds).
    return id === this.padId ? '<pad>' : id === this.unkId ? '<unk>' : id === this.bosId ? '<s>' : '</s>';
  }

  /** The normalization rule the model was trained with ('identity', 'nmt_nfkc', ...). */
  get normalization(): string {
    return this.info.normalization;
  }

  files(): string[] {
    const vocab = this.modelPath.replace(/\.model$/, '.vocab');
    return vocab !== this.modelPath && existsSync(vocab) ? [this.modelPath, vocab] : [this.modelPath];
  }
}
