// sentencepiece-js ships no types; this declares the part of its API we use.
declare module 'sentencepiece-js' {
  export class SentencePieceProcessor {
    load(path: string): Promise<void>;
    encodeIds(text: string): number[];
    encodePieces(text: string): string[];
    decodeIds(ids: number[]): string;
    /** The embind-wrapped C++ processor (used to read the load status). */
    processor: { status(): { ToString(): string; delete(): void } };
  }
  const spm: { SentencePieceProcessor: typeof SentencePieceProcessor };
  export default spm;
}
