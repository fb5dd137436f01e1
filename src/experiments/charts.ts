/**
 * The report's figures, as Vega-Lite specs rendered to SVG headless (vega's View renders SVG in
 * Node without a canvas): validation loss per configuration (one line per seed), per rank scale
 * (one colour per variant, one dash per seed), and a summary of final scores against rank scale.
 */
import type { TopLevelSpec } from 'vega-lite';
import { VARIANTS } from './spec.ts';
import { runValidLoss, testScoreOf, type ExperimentResults, type RunRecord } from './results.ts';

/** Renders a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  // Loaded here, not at import: vega/vega-lite are optional peer dependencies (only reports need them).
  const [vega, { compile }] = await Promise.all([import('vega'), import('vega-lite')]).catch((e: Error) => {
    throw new Error(`report figures need the optional packages vega and vega-lite (npm install vega vega-lite): ${e.message}`);
  });
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

interface CurveRow {
  run: string;
  variant: string;
  seed: string;
  step: number;
  loss: number;
}

function curveRows(runs: RunRecord[]): CurveRow[] {
  return runs.flatMap((r) =>
    r.valid
      .filter((p) => Number.isFinite(p.loss))
      .map((p) => ({ run: r.name, variant: r.variant ?? r.configuration, seed: r.seed === null ? r.name : `seed ${r.seed}`, step: p.step, loss: p.loss })),
  );
}

// Vega's default palette (tableau10) in VARIANTS order: a variant keeps its colour in every figure,
// and a legend lists only the variants the figure has.
const PALETTE = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac'];

function variantScale(rows: { variant: string }[]): { domain: string[]; range: string[] } {
  const present = new Set(rows.map((r) => r.variant));
  const domain = VARIANTS.filter((v) => present.has(v));
  return { domain, range: domain.map((v) => PALETTE[VARIANTS.indexOf(v) % PALETTE.length]) };
}

/** Validation loss against step for one configuration, one line per seed. */
export function configurationCurveSpec(configuration: string, runs: RunRecord[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${configuration}: validation loss`, fontSize: 13 },
    width: 360,
    height: 220,
    background: 'white',
    data: { values: curveRows(runs) },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'update' },
      y: { field: 'loss', type: 'quantitative', title: 'valid loss (nats/token)', scale: { zero: false } },
      color: { field: 'seed', type: 'nominal', title: 'run' },
      tooltip: [{ field: 'run' }, { field: 'step' }, { field: 'loss', format: '.4f' }],
    },
  };
}

/** Validation loss against step for every run at one rank scale: colour = variant, dash = seed. */
export function rankScaleCurveSpec(rankScale: number, runs: RunRecord[]): TopLevelSpec {
  const rows = curveRows(runs);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `rank scale ${rankScale}: validation loss by variant`, fontSize: 13 },
    width: 420,
    height: 260,
    background: 'white',
    data: { values: rows },
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'update' },
      y: { field: 'loss', type: 'quantitative', title: 'valid loss (nats/token)', scale: { zero: false } },
      color: { field: 'variant', type: 'nominal', title: 'variant', scale: variantScale(rows) },
      strokeDash: { field: 'seed', type: 'nominal', title: 'seed' },
      detail: { field: 'run' },
    },
  };
}

/**
 * Validation loss minus the baseline's (same rank scale, same seed, same step) for every other
 * run at one rank scale: curves that overlap in the plain plot separate here. Null when there is
 * nothing to compare (no baseline, or no other variant).
 */
export function rankScaleDeltaSpec(rankScale: number, runs: RunRecord[]): TopLevelSpec | null {
  const rows: { run: string; variant: string; seed: string; step: number; delta: number }[] = [];
  for (const run of runs) {
    if (run.variant === 'baseline' || run.variant === null) continue;
    const base = runs.find((b) => b.variant === 'baseline' && b.seed === run.seed);
    if (!base) continue;
    const baseAt = new Map(base.valid.map((p) => [p.step, p.loss]));
    for (const p of run.valid) {
      const b = baseAt.get(p.step);
      if (b !== undefined && Number.isFinite(p.loss) && Number.isFinite(b)) {
        rows.push({ run: run.name, variant: run.variant, seed: `seed ${run.seed}`, step: p.step, delta: p.loss - b });
      }
    }
  }
  if (rows.length === 0) return null;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `rank scale ${rankScale}: valid loss minus baseline (same seed; below 0 = better)`, fontSize: 13 },
    width: 420,
    height: 220,
    background: 'white',
    data: { values: rows },
    layer: [
      { mark: { type: 'rule', color: '#888' }, encoding: { y: { datum: 0, type: 'quantitative' } } },
      {
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'step', type: 'quantitative', title: 'update' },
          y: { field: 'delta', type: 'quantitative', title: 'Δ valid loss (nats/token)' },
          color: { field: 'variant', type: 'nominal', title: 'variant', scale: variantScale(rows) },
          strokeDash: { field: 'seed', type: 'nominal', title: 'seed' },
          detail: { field: 'run' },
          tooltip: [{ field: 'run' }, { field: 'step' }, { field: 'delta', format: '+.4f' }],
        },
      },
    ],
  } as TopLevelSpec;
}

/** Final valid loss and the test score of every finished run against rank scale, mean line per variant. */
export function summarySpec(results: ExperimentResults): TopLevelSpec {
  const score = testScoreOf(results.task);
  const rows = results.runs
    .filter((r) => r.done && r.rankScale !== null)
    .map((r) => ({
      run: r.name,
      variant: r.variant ?? r.configuration,
      rankScale: r.rankScale,
      validLoss: runValidLoss(r),
      test: r.done!.test?.[score.key] ?? null,
    }));
  const panel = (field: string, title: string) => ({
    width: 300,
    height: 220,
    layer: [
      {
        mark: { type: 'point' as const, filled: true, opacity: 0.8, size: 60 },
        encoding: {
          x: { field: 'rankScale', type: 'quantitative' as const, title: 'rank scale', scale: { type: 'log' as const, base: 2 } },
          y: { field, type: 'quantitative' as const, title, scale: { zero: false } },
          color: { field: 'variant', type: 'nominal' as const, scale: variantScale(rows) },
          tooltip: [{ field: 'run' }, { field, format: '.3f' }],
        },
      },
      {
        mark: { type: 'line' as const, point: false },
        encoding: {
          x: { field: 'rankScale', type: 'quantitative' as const, scale: { type: 'log' as const, base: 2 } },
          y: { field, type: 'quantitative' as const, aggregate: 'mean' as const },
          color: { field: 'variant', type: 'nominal' as const, scale: variantScale(rows) },
        },
      },
    ],
  });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${results.name}: final scores by rank scale (points = runs, lines = mean over seeds)`, fontSize: 13 },
    background: 'white',
    data: { values: rows },
    hconcat: [panel('validLoss', 'final valid loss (nats/token)'), panel('test', score.label)],
  } as TopLevelSpec;
}
