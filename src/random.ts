/**
 * One seeded random stream for the whole process (dropout masks, shuffling, masking), whose state
 * is saved in checkpoints so a resumed run draws exactly the numbers an uninterrupted one would.
 *
 * Why by hand: tfjs' own random ops take a seed per call but keep no resumable state, and
 * Math.random cannot be seeded. mulberry32 is tiny, fast and good enough for these uses.
 */
import * as tf from '@tensorflow/tfjs';

export interface RandomState {
  state: number;
}

export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  nextInt(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A 31-bit seed for a tfjs random op. */
  nextSeed(): number {
    return Math.floor(this.next() * 2147483647);
  }

  /** In-place Fisher–Yates shuffle. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }

  getState(): RandomState {
    return { state: this.state };
  }

  setState(s: RandomState): void {
    this.state = s.state >>> 0;
  }
}

/** The process-wide stream that layers use for dropout. The trainer seeds and checkpoints it. */
export const globalRandom = new SeededRandom(1234);

/** Seeds the process-wide stream. */
export function setGlobalSeed(seed: number): void {
  globalRandom.setState({ state: seed >>> 0 });
}

/**
 * Inverted dropout drawn from the process-wide stream, so it is reproducible and resumable.
 * Returns `x` itself (no copy) when not training or rate is 0.
 */
export function seededDropout<T extends tf.Tensor>(x: T, rate: number, training: boolean): T {
  if (!training || rate <= 0) return x;
  return tf.dropout(x, rate, undefined, globalRandom.nextSeed()) as T;
}
