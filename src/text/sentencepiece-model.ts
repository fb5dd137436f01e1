/**
 * Reads the parts of a SentencePiece `.model` file (a serialized `ModelProto`) that the wasm
 * processor in `sentencepiece-js` does not expose: the piece list (for `vocabSize` and
 * `idToPiece`) and the special ids recorded by the trainer.
 *
 * Why by hand: the file is a protobuf, but we need four fields of it; a ~60-line wire-format
 * reader is smaller and easier to audit than a protobuf runtime plus the .proto schema.
 * Field numbers are those of sentencepiece_model.proto (ModelProto.pieces = 1,
 * ModelProto.trainer_spec = 2, ModelProto.normalizer_spec = 3; TrainerSpec.unk_id = 40,
 * bos_id = 41, eos_id = 42, pad_id = 43; SentencePiece.piece = 1, type = 3).
 */

export type PieceType = 'normal' | 'unknown' | 'control' | 'user_defined' | 'unused' | 'byte';

export interface SentencePieceModelInfo {
  pieces: string[];
  types: PieceType[];
  /** -1 when the model has no such piece (protobuf defaults: unk 0, bos 1, eos 2, pad -1). */
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  normalization: string;
}

const PIECE_TYPES: Record<number, PieceType> = {
  1: 'normal',
  2: 'unknown',
  3: 'control',
  4: 'user_defined',
  5: 'unused',
  6: 'byte',
};

class WireReader {
  pos = 0;
  constructor(private readonly bytes: Uint8Array, private readonly end = bytes.length) {}

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint, returned as a signed 32-bit integer (how int32 fields are read). */
  varint(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.bytes[this.pos++];
      if (shift < 32) result |= (b & 0x7f) << shift;
      shift += 7;
      if ((b & 0x80) === 0) return result | 0;
    }
    throw new Error('varint longer than 10 bytes');
  }

  /** Returns [fieldNumber, wireType]. */
  tag(): [number, number] {
    const t = this.varint() >>> 0;
    return [t >>> 3, t & 7];
  }

  lengthDelimited(): WireReader {
    const len = this.varint();
    if (len < 0 || this.pos + len > this.end) throw new Error('length-delimited field past the end');
    const sub = new WireReader(this.bytes, this.pos + len);
    sub.pos = this.pos;
    this.pos += len;
    return sub;
  }

  string(): string {
    const sub = this.lengthDelimited();
    return new TextDecoder('utf-8', { fatal: true }).decode(this.bytes.subarray(sub.pos, sub.end));
  }

  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.pos += 8;
    else if (wireType === 2) this.lengthDelimited();
    else if (wireType === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wireType}`);
    if (this.pos > this.end) throw new Error('field past the end');
  }
}

/** Throws a plain Error on malformed input; the caller turns it into a UserError naming the file. */
export function parseSentencePieceModel(bytes: Uint8Array): SentencePieceModelInfo {
  const info: SentencePieceModelInfo = {
    pieces: [],
    types: [],
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    normalization: '',
  };
  const r = new WireReader(bytes);
  while (!r.done) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 2) {
      const p = r.lengthDelimited();
      let piece: string | null = null;
      let type = 1;
      while (!p.done) {
        const [f, w] = p.tag();
        if (f === 1 && w === 2) piece = p.string();
        else if (f === 3 && w === 0) type = p.varint();
        else p.skip(w);
      }
      if (piece === null) throw new Error(`piece ${info.pieces.length} has no text`);
      if (!(type in PIECE_TYPES)) throw new Error(`piece ${info.pieces.length} has unknown type ${type}`);
      info.pieces.push(piece);
      info.types.push(PIECE_TYPES[type]);
    } else if (field === 2 && wire === 2) {
      const t = r.lengthDelimited();
      while (!t.done) {
        const [f, w] = t.tag();
        if (f === 40 && w === 0) info.unkId = t.varint();
        else if (f === 41 && w === 0) info.bosId = t.varint();
        else if (f === 42 && w === 0) info.eosId = t.varint();
        else if (f === 43 && w === 0) info.padId = t.varint();
        else t.skip(w);
      }
    } else if (field === 3 && wire === 2) {
      const n = r.lengthDelimited();
      while (!n.done) {
        const [f, w] = n.tag();
        if (f === 1 && w === 2) info.normalization = n.string();
        else n.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  if (info.pieces.length === 0) throw new Error('no pieces');
  for (const [name, id] of [['unk', info.unkId], ['bos', info.bosId], ['eos', info.eosId], ['pad', info.padId]] as const) {
    if (id >= info.pieces.length) throw new Error(`${name}_id ${id} is outside the ${info.pieces.length} pieces`);
  }
  return info;
}
