/** The benchmark protocol: every benchmark returns result lines; `bench/run.ts` prints them. */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** The baseline measured in the same run (same unit), or null when none could run. */
  baseline: number | null;
  /** value / baseline (or as the benchmark defines it, e.g. ours / pytorch), null without baseline. */
  ratio: number | null;
  /** Free-form context: shapes, backend, notes, peak RSS, why a baseline was skipped. */
  extra?: Record<string, unknown>;
}

export interface BenchOptions {
  json: boolean;
  /** Smaller sizes / fewer repetitions, for smoke-testing a benchmark. */
  quick: boolean;
}

export type Benchmark = (opts: BenchOptions) => Promise<BenchResult[]>;

/** Median wall time in ms of `fn` over `reps` runs after `warmup` runs. */
export async function timeMedian(fn: () => unknown | Promise<unknown>, reps: number, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
