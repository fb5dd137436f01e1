/** Decoding: greedy and batched beam search over any incremental DecoderStepModel. */
export { beamSearch } from './beam-search.ts';
export type { BeamSearchOptions } from './beam-search.ts';
export { greedyDecode } from './greedy.ts';
export type { GreedyOptions } from './greedy.ts';
export { constrainLogProbs, maxLengths } from './constraints.ts';
export type { LengthOptions } from './constraints.ts';
export type { DecoderStepModel, Hypothesis } from './types.ts';
