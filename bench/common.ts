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

/** Peak resident set size of this process so far, in MiB. */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** Result of a PyTorch reference script: its JSON line, or why it did not run. */
export type ReferenceResult = { ok: true; value: Record<string, number> } | { ok: false; reason: string };

/** How runReference finds and checks its interpreter. */
export interface ReferenceOptions {
  timeoutMs?: number;
  /**
   * Interpreters to try in order; the first that passes the probe runs the script. Default: PYTHON,
   * else /usr/bin/python3 (Debian's python3-torch), else python3 on the PATH.
   */
  pythons?: string[];
  /** Python code that must exit 0 (default `import torch`), and what to say when it does not. */
  probe?: { code: string; need: string };
}

function defaultPythons(existsSync: (p: string) => boolean): string[] {
  if (process.env.PYTHON) return [process.env.PYTHON];
  return existsSync('/usr/bin/python3') ? ['/usr/bin/python3', 'python3'] : ['python3'];
}

/**
 * Runs `bench/reference/<script>` with Debian's python3 + python3-torch (PYTHON env overrides the
 * interpreter) and parses the last stdout line as JSON. Same environment as ours, so a preset
 * OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (or the one the engine chose) applies to both.
 */
export async function runReference(script: string, args: Record<string, string | number>, options: ReferenceOptions = {}): Promise<ReferenceResult> {
  const { spawnSync } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  const { dirname, join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const pythons = options.pythons ?? defaultPythons(existsSync);
  const probe = options.probe ?? { code: 'import torch', need: 'PyTorch (apt-get install python3-torch to compare)' };
  const python = pythons.find((p) => spawnSync(p, ['-c', probe.code], { encoding: 'utf8' }).status === 0);
  if (!python) return { ok: false, reason: `no ${probe.need} for ${[...new Set(pythons)].join(' or ')}` };
  const path = join(dirname(fileURLToPath(import.meta.url)), 'reference', script);
  const argv = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const r = spawnSync(python, [path, ...argv], { encoding: 'utf8', timeout: options.timeoutMs ?? 600_000, env: process.env });
  if (r.status !== 0) {
    const why = (r.stderr || String(r.error ?? '')).trim().split('\n').pop() ?? 'failed';
    return { ok: false, reason: `${script} failed: ${why}` };
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return { ok: true, value: JSON.parse(line) as Record<string, number> };
  } catch {
    return { ok: false, reason: `${script} printed no JSON result` };
  }
}

/** A benchmark line comparing ours with a reference result field (ratio = ours / reference). */
export function compared(name: string, value: number, unit: string, ref: ReferenceResult, field: string, extra: Record<string, unknown>): BenchResult {
  const baseline = ref.ok ? ref.value[field] : null;
  return {
    name,
    value,
    unit,
    baseline: baseline ?? null,
    ratio: baseline ? value / baseline : null,
    extra: { ...extra, baselineEngine: 'pytorch', ...(ref.ok ? { pytorch: ref.value } : { baselineSkipped: ref.reason }) },
  };
}
