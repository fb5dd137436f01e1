/**
 * `experiment report DIR`: the Markdown table (report.md), the figures (figures/*.svg) and one
 * HTML page with both (report.html, the SVGs inlined so the page stands alone in a browser).
 */
import { expandGrid } from './spec.ts';
import { isShortOfBudget } from './runner.ts';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configurationCurveSpec, rankScaleCurveSpec, rankScaleDeltaSpec, renderSvg, summarySpec } from './charts.ts';
import {
  earlierBudgets,
  readExperiment,
  resultsAtEarlierBudget,
  runValidLoss,
  summarize,
  testScoreOf,
  type ConfigurationSummary,
  type ExperimentResults,
  verdict,
  type MeanStd,
  type PairedDifference,
  type RunRecord,
} from './results.ts';

export const REPORT_MD = 'report.md';
export const REPORT_HTML = 'report.html';
export const FIGURES_DIR = 'figures';

function fixed(x: number, digits: number): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '—';
}

/** `2.345 ± 0.012` (n > 1), `2.345` (n = 1), `—` (no value). */
export function formatMeanStd(m: MeanStd, digits: number): string {
  if (m.n === 0) return '—';
  return m.n > 1 ? `${fixed(m.mean, digits)} ± ${fixed(m.std, digits)}` : fixed(m.mean, digits);
}

function formatCount(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '—';
  return s >= 120 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(0)} s`;
}

function signed(x: number, digits: number): string {
  return Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(digits)}` : '—';
}

/**
 * The paired difference to the baseline: `-0.035 [-0.052, -0.018] better`, or `… no difference
 * detected` where the 95 % interval covers 0; empty for the baseline itself.
 */
export function formatPaired(d: PairedDifference | null, higherIsBetter: boolean, digits: number): string {
  if (d === null || d.n === 0) return '';
  if (d.n < 2) return `${signed(d.mean, digits)} (${verdict(d, higherIsBetter)})`;
  return `${signed(d.mean, digits)} [${signed(d.low, digits)}, ${signed(d.high, digits)}] ${verdict(d, higherIsBetter)}`;
}

interface Table {
  header: string[];
  rows: string[][];
}

export function summaryTable(results: ExperimentResults, summaries: ConfigurationSummary[]): Table {
  const score = testScoreOf(results.task);
  return {
    header: ['rank scale', 'variant', 'seeds done', 'parameters', 'compression', 'final valid loss', 'Δ loss vs baseline (paired, 95 % CI)', score.label, `Δ ${score.label.replace(/^test /, '')} vs baseline (paired, 95 % CI)`, 'steps', 'wall time / run'],
    rows: summaries.map((s) => [
      s.rankScale === null ? '—' : String(s.rankScale),
      s.variant ?? s.configuration,
      `${s.finished}/${s.runs}`,
      formatCount(s.parameters),
      fixed(s.compressionRatio, 3),
      formatMeanStd(s.finalValidLoss, 3),
      formatPaired(s.lossVsBaseline, false, 3),
      formatMeanStd(s.testScore, 2),
      formatPaired(s.scoreVsBaseline, score.higherIsBetter, 2),
      s.steps.n ? formatCount(s.steps.mean) : '—',
      formatSeconds(s.wallSeconds.mean),
    ]),
  };
}

export function runsTable(results: ExperimentResults): Table {
  const score = testScoreOf(results.task);
  return {
    header: ['run', 'status', 'steps', 'parameters', 'final valid loss', score.label, 'train time', 'eval time'],
    rows: results.runs.map((r) => {
      const d = r.done;
      const lastStep = r.valid.length ? r.valid[r.valid.length - 1].step : r.train.length ? r.train[r.train.length - 1].step : NaN;
      return [
        r.name,
        d ? 'done' : 'unfinished',
        formatCount(d ? d.steps : lastStep),
        formatCount(d?.numParameters ?? NaN),
        fixed(runValidLoss(r), 3),
        fixed(d?.test?.[score.key] ?? NaN, 2),
        formatSeconds(d?.trainWallSeconds ?? NaN),
        formatSeconds(d?.evalWallSeconds ?? NaN),
      ];
    }),
  };
}

export function markdownTable(t: Table): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [`| ${t.header.map(esc).join(' | ')} |`, `|${t.header.map(() => '---').join('|')}|`];
  for (const row of t.rows) lines.push(`| ${row.map(esc).join(' | ')} |`);
  return lines.join('\n');
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function htmlTable(t: Table): string {
  const head = `<tr>${t.header.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr>`;
  const body = t.rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table>\n<thead>${head}</thead>\n<tbody>\n${body}\n</tbody>\n</table>`;
}

/**
 * Where and when the runs were measured, from their done.json records: the dates they finished,
 * the machines and the tfjs backends they trained on (records from before 2026-11-30 carry only
 * the date; the line says how many).
 */
export function provenanceLine(runs: RunRecord[]): string {
  const done = runs.map((r) => r.done).filter((d): d is NonNullable<typeof d> => d !== null && typeof d.finishedAt === 'string');
  if (!done.length) return '';
  const days = done.map((d) => d.finishedAt.slice(0, 10)).sort();
  const span = days[0] === days[days.length - 1] ? days[0] : `${days[0]} to ${days[days.length - 1]}`;
  const distinct = (xs: string[]) => [...new Set(xs)].sort().join('; ');
  const machines = distinct(done.flatMap((d) => (d.machine ? [`${d.machine.platform}, ${d.machine.cpus} × ${d.machine.cpuModel}, Node ${d.machine.node}`] : [])));
  const backends = distinct(done.flatMap((d) => (d.notes?.backend ? [d.notes.backend] : [])));
  const engineName = (engine: string) => (engine === 'onnx' ? 'ONNX Runtime' : engine);
  const decoded = done.flatMap((d) => (d.notes?.decodeEngine ? [engineName(d.notes.decodeEngine)] : []));
  const decodeEngines = distinct(decoded);
  const unrecorded = done.filter((d) => !d.machine).length;
  const extended = done.filter((d) => d.extendedFrom);
  const extendedFrom = distinct(extended.map((d) => earlierBudgets(d).map(formatCount).join(' → ')));
  return (
    `Runs finished ${span} (UTC). ` +
    (machines ? `Machine: ${machines}. ` : '') +
    (backends ? `Trained on the tfjs backend ${backends}. ` : '') +
    (decodeEngines ? `Test translations decoded by ${decodeEngines} (recorded by ${decoded.length} of ${done.length} runs). ` : '') +
    (extended.length
      ? `${extended.length} of ${done.length} runs were extended to a larger budget from their checkpoint at ${extendedFrom} updates (the same schedule, so the same as training to it at once; their earlier results are in the table at that budget). `
      : '') +
    (unrecorded ? `${unrecorded} of ${done.length} runs finished before runs recorded their machine and backend.` : '')
  ).trim();
}

/** One report page: the same content as report.md and as report.html (figures inline). */
export interface ReportPage {
  title: string;
  /** Paragraphs (markdown: **bold** and `code` are carried into the HTML). */
  intro: string[];
  status: string;
  sections: { heading: string; table: Table }[];
  figures: Figure[];
  /** How many leading table columns are text (left-aligned in the HTML). */
  textColumns: number;
}

/** Writes `page` as report.md and report.html in `dir` (shared by the grid and compression reports). */
export function writeReportPage(dir: string, page: ReportPage): void {
  const md = [
    `# ${page.title}`,
    '',
    ...page.intro,
    '',
    page.status,
    '',
    ...page.sections.flatMap((section) => [`## ${section.heading}`, '', markdownTable(section.table), '']),
    '## Figures',
    '',
    ...page.figures.map((f) => `![${f.title}](${f.file})`),
    '',
  ].join('\n');
  writeFileSync(join(dir, REPORT_MD), md);
  const leftAligned = Array.from({ length: page.textColumns }, (_, i) => (i === 0 ? 'td:first-child' : `td:nth-child(${i + 1})`)).join(', ');
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(page.title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; }
${leftAligned} { text-align: left; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; }
</style>
</head>
<body>
<h1>${escapeHtml(page.title)}</h1>
${page.intro
  .filter((l) => l)
  .map((l) => `<p>${escapeHtml(l).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>').replace(/`(.+?)`/g, '<code>$1</code>')}</p>`)
  .join('\n')}
<p>${escapeHtml(page.status)}</p>
${page.sections.map((section) => `<h2>${escapeHtml(section.heading)}</h2>\n${htmlTable(section.table)}`).join('\n')}
<h2>Figures</h2>
${page.figures.map((f) => `<figure>${f.svg}<figcaption>${escapeHtml(f.title)}</figcaption></figure>`).join('\n')}
</body>
</html>
`;
  writeFileSync(join(dir, REPORT_HTML), html);
}

function figureFileName(key: string): string {
  return `${key.replace(/[^A-Za-z0-9._-]/g, '_')}.svg`;
}

export interface Figure {
  /** Path relative to the experiment folder. */
  file: string;
  title: string;
  svg: string;
}

/** Renders every figure: the summary, one per rank scale, one per configuration. */
export async function renderFigures(results: ExperimentResults): Promise<Figure[]> {
  const figures: Figure[] = [];
  const finished = results.runs.filter((r) => r.done && r.rankScale !== null);
  if (finished.length > 0) {
    figures.push({ file: `${FIGURES_DIR}/summary.svg`, title: 'Final scores by rank scale', svg: await renderSvg(summarySpec(results)) });
  }
  const rankScales = [...new Set(results.runs.map((r) => r.rankScale).filter((x): x is number => x !== null))].sort((a, b) => a - b);
  for (const rs of rankScales) {
    const runs = results.runs.filter((r) => r.rankScale === rs);
    figures.push({ file: `${FIGURES_DIR}/${figureFileName(`curves-rs${rs}`)}`, title: `Rank scale ${rs}: all variants`, svg: await renderSvg(rankScaleCurveSpec(rs, runs)) });
    const delta = rankScaleDeltaSpec(rs, runs);
    if (delta) figures.push({ file: `${FIGURES_DIR}/${figureFileName(`delta-rs${rs}`)}`, title: `Rank scale ${rs}: difference to the baseline`, svg: await renderSvg(delta) });
  }
  const groups = new Map<string, RunRecord[]>();
  for (const run of results.runs) groups.set(run.configuration, [...(groups.get(run.configuration) ?? []), run]);
  for (const [configuration, runs] of groups) {
    figures.push({
      file: `${FIGURES_DIR}/${figureFileName(`curve-${configuration}`)}`,
      title: `${configuration}: validation loss per seed`,
      svg: await renderSvg(configurationCurveSpec(configuration, runs)),
    });
  }
  return figures;
}

/** Which layers the rank scale factorizes (spec.ts `grid.factorize`, `grid.factorizeLinear`). */
function factorizedLayers(s: NonNullable<ExperimentResults['spec']>): string {
  if (s.grid.factorize === 'all') {
    return 'Factorized at each rank scale below 1, as the paper\'s code: attention, feed-forward layers, token embeddings and the output projection (tied to the embeddings or factorized itself); at rank scale 1 attention is factorized at full rank and everything else is dense.';
  }
  if (s.grid.factorizeLinear) return 'Factorized at each rank scale: attention and the feed-forward layers (and an untied output projection); embeddings dense.';
  return 'Factorized at each rank scale: attention only; feed-forward layers, embeddings and output projection dense.';
}

function describe(results: ExperimentResults): string[] {
  const s = results.spec;
  const lines: string[] = [];
  if (s?.description) lines.push(s.description, '');
  if (s) {
    const budget = [s.budget.maxSteps !== undefined ? `${s.budget.maxSteps} updates` : null, s.budget.maxTimeMinutes !== undefined ? `${s.budget.maxTimeMinutes} min` : null]
      .filter(Boolean)
      .join(', at most ');
    lines.push(
      `Task **${s.task}**, preset \`${s.preset ?? (s.task === 'translation' ? 'transformer_small' : 'bert_small')}\`, ` +
        `data ${s.data ? `\`${s.data.dir}\`` : 'the embedded default corpus'}; budget ${budget} per run; ` +
        `weight decay ${s.regularization.weightDecay}, Frobenius decay ${s.regularization.frobeniusDecay} (fd, si-fd). ` +
        factorizedLayers(s),
      '',
    );
  }
  lines.push(
    'Variants (what each run sets): **baseline** = default init, Frobenius decay 0; **si** = spectral init, Frobenius decay 0; ' +
      '**fd** = default init, Frobenius decay on the factor products; **si-fd** = spectral init + Frobenius decay; ' +
      (s?.grid.variants.includes('si-rebalance')
        ? '**si-rebalance** = spectral init with the feed-forward and embedding factors re-balanced from two random factors instead of the truncated SVD of a dense init, Frobenius decay 0 (the same as si wherever those layers are dense); '
        : '') +
      'every arm uses the same plain weight decay: on all weights in baseline and si, on the non-factor weights in fd and si-fd (whose factors get Frobenius decay instead). ' +
      'Compression = parameters of the whole model (every weight, each factorized layer as its two factors) / parameters of the same model with every layer dense. Test scores are those of each run\'s best checkpoint ' +
      '(lowest validation loss / perplexity). Mean ± sample std over the finished seeds; ' +
      'Δ vs baseline: the mean over seeds of (run − the baseline run with the same seed, i.e. the same batches) at the same rank scale, ' +
      'with its 95 % t-interval; "no difference detected" where the interval covers 0.',
  );
  return lines;
}

export interface ReportFiles {
  markdown: string;
  html: string;
  figures: string[];
}

/** Builds report.md, report.html and figures/ in the experiment folder `dir`. */
export async function writeReport(dir: string): Promise<ReportFiles> {
  const results = readExperiment(dir);
  const summaries = summarize(results);
  const summary = summaryTable(results, summaries);
  const perRun = runsTable(results);
  const figures = await renderFigures(results);

  rmSync(join(dir, FIGURES_DIR), { recursive: true, force: true });
  mkdirSync(join(dir, FIGURES_DIR), { recursive: true });
  for (const f of figures) writeFileSync(join(dir, f.file), f.svg);

  const unfinished = results.runs.filter((r) => !r.done).length;
  // Runs of the grid not started yet (a grid run in parts) are said too, so a partial report reads as one.
  const planned = results.spec ? expandGrid(results.spec).length : results.runs.length;
  const notStarted = Math.max(0, planned - results.runs.length);
  // Finished runs a larger budget has not extended yet: the table would compare them with longer runs.
  const budget = results.spec?.budget.maxSteps;
  const shortOfBudget = results.runs.filter((r) => r.done && isShortOfBudget(r.done, budget)).length;
  const status =
    `${results.runs.length - unfinished} of ${planned} planned runs finished` +
    (unfinished ? `; ${unfinished} unfinished (shown in the curves and the per-run table, left out of the means)` : '') +
    (notStarted ? `; ${notStarted} not started yet (rerunning the same command resumes the grid)` : '') +
    (shortOfBudget ? `; ${shortOfBudget} finished short of the spec's ${formatCount(budget!)} updates and not extended yet (see the steps column; rerunning the same command extends them)` : '') +
    '.';
  const provenance = provenanceLine(results.runs);
  // The results at each budget the runs were extended from stay in the report (done.json keeps them).
  const budgets = [...new Set(results.runs.flatMap((r) => (r.done ? earlierBudgets(r.done) : [])))].sort((a, b) => b - a);
  const earlierSections = budgets.flatMap((steps) => {
    const earlier = resultsAtEarlierBudget(results, steps);
    return earlier ? [{ heading: `Results by configuration at ${formatCount(steps)} updates (before the extension)`, table: summaryTable(earlier, summarize(earlier)) }] : [];
  });
  writeReportPage(dir, {
    title: `Experiment: ${results.name}`,
    intro: describe(results),
    status: provenance ? `${status} ${provenance}` : status,
    sections: [{ heading: 'Results by configuration', table: summary }, ...earlierSections, { heading: 'Every run', table: perRun }],
    figures,
    textColumns: 2,
  });
  return { markdown: join(dir, REPORT_MD), html: join(dir, REPORT_HTML), figures: figures.map((f) => join(dir, f.file)) };
}
