/** The benchmark protocol: every benchmark returns result lines; `bench/run.ts` prints them. */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** The baseline measured in the same run (same unit), or null when none could run. */
  baseline: number | null;
  /** value / baseline (or as the benchmark defines it, e.g. ours / pytorch), null without baseline. */
  ratio: number | null;
  /** What the baseline is, e.g. 'PyTorch 2.13.0+cpu' (the printed line names it). */
  baselineName?: string;
  /** A second baseline: the same reference under PyTorch 1.x, when the first is PyTorch ≥ 2 and both exist. */
  pytorch1?: { version: string; value: number; ratio: number };
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
export type ReferenceResult =
  | {
      ok: true;
      value: Record<string, number>;
      /** torch.__version__ of the interpreter that ran it, and the interpreter. */
      torch: string;
      python: string;
      /** The same script under the newest PyTorch 1.x found, when the baseline is PyTorch ≥ 2 and one is. */
      legacy?: ReferenceResult;
    }
  | { ok: false; reason: string };

/** How runReference finds and checks its interpreter. */
export interface ReferenceOptions {
  timeoutMs?: number;
  /** Interpreters to consider (default: referencePythons()). */
  pythons?: string[];
  /** Python code that must exit 0 (default `import torch`), and what to say when it does not. */
  probe?: { code: string; need: string };
  /** Also run the script under the newest PyTorch 1.x found, as `legacy` (default true). */
  legacy?: boolean;
}

/**
 * The interpreters runReference considers, in order of preference among equal torch versions:
 * PYTHON; then FT_BENCH_PYTHONS (':'-separated; when set, even empty, it replaces the rest), else
 * bench/.venv/bin/python (the PyTorch 2 venv README.md describes), /usr/bin/python3 (Debian's
 * python3-torch) and python3 on the PATH.
 */
export function referencePythons(): string[] {
  const env = process.env;
  const rest =
    env.FT_BENCH_PYTHONS !== undefined
      ? env.FT_BENCH_PYTHONS.split(':').filter(Boolean)
      : [fileURLToPath(new URL('./.venv/bin/python', import.meta.url)), '/usr/bin/python3', 'python3'];
  return [...new Set([...(env.PYTHON ? [env.PYTHON] : []), ...rest])];
}

interface Probed {
  python: string;
  torch: string;
  /** sys.prefix: a venv and its base interpreter differ here, two names of one interpreter do not. */
  prefix: string;
}

/** Probe results of this run (one child process per interpreter and probe, not one per benchmark). */
const probeCache = new Map<string, Probed | null>();

function probePython(python: string, code: string): Probed | null {
  const key = `${python}\0${code}`;
  if (!probeCache.has(key)) {
    const script = `${code}\nimport json, sys, torch\nprint(json.dumps({"torch": torch.__version__, "prefix": sys.prefix}))`;
    const r = spawnSync(python, ['-c', script], { encoding: 'utf8', timeout: 120_000 });
    let found: Probed | null = null;
    if (r.status === 0) {
      try {
        const v = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { torch: string; prefix: string };
        found = { python, torch: v.torch, prefix: v.prefix };
      } catch {
        found = null;
      }
    }
    probeCache.set(key, found);
  }
  return probeCache.get(key) ?? null;
}

/** [major, minor, patch] of a torch version string such as '2.13.0+cpu' or '1.13.0a0'. */
function versionKey(v: string): number[] {
  return (v.match(/^(\d+)\.(\d+)(?:\.(\d+))?/) ?? []).slice(1, 4).map((x) => Number(x ?? 0));
}

function newest(found: Probed[]): Probed | undefined {
  const cmp = (a: Probed, b: Probed) => {
    const [x, y] = [versionKey(a.torch), versionKey(b.torch)];
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return y[i] - x[i];
    return 0;
  };
  return [...found].sort(cmp)[0]; // stable: the earlier candidate wins a tie
}

/**
 * Runs `bench/reference/<script>` and parses the last stdout line as JSON. Of the interpreters
 * that pass the probe, the one with the newest PyTorch runs it (so a PyTorch ≥ 2 is the baseline
 * wherever one is found); when that is ≥ 2 and a PyTorch 1.x is also found, the script runs again
 * under the newest 1.x as `legacy` (a second column, as the README's figures had 1.13). Same
 * environment as ours, so a preset OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (or the one the engine
 * chose) applies to both.
 */
export async function runReference(script: string, args: Record<string, string | number>, options: ReferenceOptions = {}): Promise<ReferenceResult> {
  const pythons = options.pythons ?? referencePythons();
  const probe = options.probe ?? { code: 'import torch', need: 'PyTorch (see README.md: Engine, GPU and benchmarks)' };
  const found: Probed[] = [];
  for (const p of pythons) {
    const r = probePython(p, probe.code);
    if (r && !found.some((f) => f.prefix === r.prefix && f.torch === r.torch)) found.push(r);
  }
  const best = newest(found);
  if (!best) return { ok: false, reason: `no ${probe.need} for ${pythons.join(' or ')}` };
  const result = runScript(best, script, args, options.timeoutMs);
  const old = newest(found.filter((f) => versionKey(f.torch)[0] < 2));
  if (result.ok && options.legacy !== false && versionKey(best.torch)[0] >= 2 && old) {
    result.legacy = runScript(old, script, args, options.timeoutMs);
  }
  return result;
}

function runScript(py: Probed, script: string, args: Record<string, string | number>, timeoutMs = 600_000): ReferenceResult {
  const path = join(dirname(fileURLToPath(import.meta.url)), 'reference', script);
  const argv = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const r = spawnSync(py.python, [path, ...argv], { encoding: 'utf8', timeout: timeoutMs, env: process.env });
  if (r.status !== 0) {
    const why = (r.stderr || String(r.error ?? '')).trim().split('\n').pop() ?? 'failed';
    return { ok: false, reason: `${script} failed under PyTorch ${py.torch} (${py.python}): ${why}` };
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return { ok: true, value: JSON.parse(line) as Record<string, number>, torch: py.torch, python: py.python };
  } catch {
    return { ok: false, reason: `${script} printed no JSON result under PyTorch ${py.torch}` };
  }
}

/**
 * A benchmark line comparing ours with a reference result field (ratio = ours / reference); the
 * PyTorch 1.x run, when there is one, becomes `pytorch1` beside it.
 */
export function compared(name: string, value: number, unit: string, ref: ReferenceResult, field: string, extra: Record<string, unknown>): BenchResult {
  const baseline = ref.ok ? ref.value[field] : null;
  const legacy = ref.ok ? ref.legacy : undefined;
  const legacyValue = legacy?.ok ? legacy.value[field] : undefined;
  return {
    name,
    value,
    unit,
    baseline: baseline ?? null,
    ratio: baseline ? value / baseline : null,
    ...(ref.ok ? { baselineName: `PyTorch ${ref.torch}` } : {}),
    ...(legacy?.ok && legacyValue ? { pytorch1: { version: legacy.torch, value: legacyValue, ratio: value / legacyValue } } : {}),
    extra: {
      ...extra,
      baselineEngine: 'pytorch',
      ...(ref.ok ? { pytorch: { ...ref.value, torch: ref.torch, python: ref.python } } : { baselineSkipped: ref.reason }),
      ...(legacy && !legacy.ok ? { pytorch1Skipped: legacy.reason } : {}),
      ...(legacy?.ok ? { pytorch1: { ...legacy.value, torch: legacy.torch, python: legacy.python } } : {}),
    },
  };
}
