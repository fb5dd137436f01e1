/**
 * The compression experiment's report: report.md, report.html and figures/, built from the grid
 * report's parts (results.ts reads the runs, report.ts formats and renders). Each fine-tuned arm is
 * compared, paired by seed, with the low-rank model trained from scratch (SI + FD) for the same
 * total number of updates (teacher + fine-tuning); a second table gives what the compression
 * itself did before any fine-tuning.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configurationCurveSpec, renderSvg } from './charts.ts';
import { COMPRESSED_DIR, type CompressRecord } from './compress-runner.ts';
import { armName, parseCompressSpec, type CompressSpec } from './compress-spec.ts';
import { FIGURES_DIR, formatMeanStd, formatPaired, provenanceLine, REPORT_HTML, REPORT_MD, runsTable, writeReportPage, type Figure } from './report.ts';
import { meanStd, pairedBySeed, readExperiment, runValidLoss, type RunRecord } from './results.ts';
import { SPEC_JSON } from './runner.ts';

interface Table {
  header: string[];
  rows: string[][];
}

/** True when `dir` holds a compression experiment (its stored spec says `"kind": "compress"`). */
export function isCompressExperiment(dir: string): boolean {
  const file = join(dir, SPEC_JSON);
  if (!existsSync(file)) return false;
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { kind?: unknown }).kind === 'compress';
  } catch {
    return false;
  }
}

const METHOD_LABEL: Record<string, string> = {
  teacher: 'teacher (full rank)',
  'ft-fd': 'compressed + fine-tuned, FD',
  'ft-wd': 'compressed + fine-tuned, weight decay',
  'scratch-si-fd': 'from scratch, SI + FD',
};

/** `attn-ffn-ft-fd` → { arm: 'attn-ffn', method: 'ft-fd' }. */
function splitVariant(variant: string | null): { arm: string; method: string } {
  const v = variant ?? '';
  const m = /^(attn(?:-ffn)?)-(.+)$/.exec(v);
  return m ? { arm: m[1], method: m[2] } : { arm: '—', method: v };
}

const count = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');

/** One row per configuration (rank scale × arm × method), with the paired difference to the arm's scratch run. */
export function compressSummaryTable(runs: RunRecord[]): Table {
  const groups = new Map<string, RunRecord[]>();
  for (const r of runs) groups.set(r.configuration, [...(groups.get(r.configuration) ?? []), r]);
  const bleu = (r: RunRecord) => r.done?.test?.bleu ?? NaN;
  const rows = [...groups.values()].map((group) => {
    const first = group[0];
    const { arm, method } = splitVariant(first.variant);
    const finished = group.filter((r) => r.done);
    const reference = runs.filter((r) => r.done && r.rankScale === first.rankScale && r.variant === `${arm}-scratch-si-fd`);
    const paired = (pick: (r: RunRecord) => number) => (method.startsWith('ft-') ? pairedBySeed(finished, reference, pick) : null);
    return [
      String(first.rankScale ?? '—'),
      arm === 'attn-ffn' ? 'attention + FFN' : arm === 'attn' ? 'attention' : '—',
      METHOD_LABEL[method] ?? method,
      `${finished.length}/${group.length}`,
      finished.length ? count(meanStd(finished.map((r) => r.done!.steps)).mean) : '—',
      count(finished[0]?.done?.numParameters ?? NaN),
      formatMeanStd(meanStd(finished.map(runValidLoss)), 3),
      formatPaired(paired(runValidLoss), false, 3),
      formatMeanStd(meanStd(finished.map(bleu)), 2),
      formatPaired(paired(bleu), true, 2),
    ];
  });
  return {
    header: ['rank scale', 'factorized', 'method', 'seeds done', 'updates', 'parameters', 'final valid loss', 'Δ loss vs scratch (paired, 95 % CI)', 'test BLEU', 'Δ BLEU vs scratch (paired, 95 % CI)'],
    rows,
  };
}

/**
 * Frobenius decay against plain weight decay while fine-tuning the same compressed model: per rank
 * scale and arm, the mean over seeds of (ft-fd − ft-wd of the same seed, i.e. the same compressed
 * start and the same batches) with its 95 % t-interval. This is the paper's "FD beats weight decay
 * on factorized layers" question asked of a compressed model.
 */
export function fdVersusWdTable(runs: RunRecord[]): Table {
  const done = runs.filter((r) => r.done);
  const keys = [...new Set(done.map((r) => `${r.rankScale}|${splitVariant(r.variant).arm}`))];
  const bleu = (r: RunRecord) => r.done?.test?.bleu ?? NaN;
  const rows = keys.flatMap((key) => {
    const [rankScale, arm] = key.split('|');
    const of = (method: string) => done.filter((r) => String(r.rankScale) === rankScale && r.variant === `${arm}-${method}`);
    const [fd, wd] = [of('ft-fd'), of('ft-wd')];
    const loss = pairedBySeed(fd, wd, runValidLoss);
    if (!loss) return [];
    const bleuGain = pairedBySeed(fd, wd, bleu);
    return [[rankScale, arm === 'attn-ffn' ? 'attention + FFN' : 'attention', String(loss.n), formatPaired(loss, false, 3), formatPaired(bleuGain, true, 2)]];
  });
  return { header: ['rank scale', 'factorized', 'seeds', 'Δ valid loss, FD − WD (paired, 95 % CI)', 'Δ test BLEU, FD − WD (paired, 95 % CI)'], rows };
}

/** The compressions' records in `dir`/compressed. */
export function readCompressRecords(dir: string): CompressRecord[] {
  const folder = join(dir, COMPRESSED_DIR);
  if (!existsSync(folder)) return [];
  return readdirSync(folder)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(folder, f), 'utf8')) as CompressRecord);
}

/** What compression alone did, per rank scale and arm (mean ± std over seeds). */
export function compressionTable(records: CompressRecord[]): Table {
  const groups = new Map<string, CompressRecord[]>();
  for (const r of records) {
    const key = `${r.part.rankScale} ${armName(r.part.linear)}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const error = (rs: CompressRecord[], type: string) => formatMeanStd(meanStd(rs.map((r) => r.errors[type]?.mean ?? NaN)), 3);
  return {
    header: ['rank scale', 'factorized', 'seeds', 'attention rank', 'parameters', 'rel. error QK', 'rel. error OV', 'rel. error FFN', 'valid loss teacher', 'valid loss compressed'],
    rows: [...groups.values()].map((rs) => {
      const r = rs[0];
      return [
        String(r.part.rankScale),
        r.part.linear ? 'attention + FFN' : 'attention',
        String(rs.length),
        `${r.attentionRank.before} → ${r.attentionRank.after}`,
        `${count(r.parameters.before)} → ${count(r.parameters.after)}`,
        error(rs, 'attention QK'),
        error(rs, 'attention OV'),
        r.part.linear ? error(rs, 'FFN') : '—',
        formatMeanStd(meanStd(rs.map((x) => x.validLoss?.before ?? NaN)), 3),
        formatMeanStd(meanStd(rs.map((x) => x.validLoss?.after ?? NaN)), 3),
      ];
    }),
  };
}

function describe(spec: CompressSpec | null): string[] {
  const lines: string[] = [];
  if (spec?.description) lines.push(spec.description, '');
  if (spec) {
    const D = spec.teacher.maxSteps;
    const F = spec.fineTune.maxSteps;
    lines.push(
      `Task **translation**, preset \`${spec.preset ?? 'transformer_small'}\`, data ${spec.data ? `\`${spec.data.dir}\`` : 'the embedded default corpus'}; ` +
        `teacher ${D} updates at full rank; each compressed model fine-tuned ${F} updates; from-scratch runs ${D + F} updates (the same total); ` +
        `weight decay ${spec.regularization.weightDecay}, Frobenius decay ${spec.regularization.frobeniusDecay} (FD arms).`,
      '',
    );
  }
  lines.push(
    'Compression: every attention head\'s QK and OV products replaced by their truncated SVD at the new rank (and, for "attention + FFN", each FFN kernel by its truncated SVD); ' +
      'relative error = ‖P − P_r‖_F / ‖P‖_F per layer, averaged over layers. Test scores are those of each run\'s best checkpoint (lowest validation loss). ' +
      'Mean ± sample std over the finished seeds; Δ vs scratch: the mean over seeds of (fine-tuned run − the from-scratch SI + FD run of the same rank scale, arm and seed) with its 95 % t-interval; ' +
      '"no difference detected" where the interval covers 0.',
  );
  return lines;
}

/** Builds report.md, report.html and figures/ (validation curves per configuration) in `dir`. */
export async function writeCompressReport(dir: string): Promise<{ markdown: string; html: string; figures: string[] }> {
  const results = readExperiment(dir);
  const spec = results.spec ? parseCompressSpec(results.spec, join(dir, SPEC_JSON)) : null;
  const summary = compressSummaryTable(results.runs);
  const fdVersusWd = fdVersusWdTable(results.runs);
  const compression = compressionTable(readCompressRecords(dir));
  const perRun = runsTable(results);

  const groups = new Map<string, RunRecord[]>();
  for (const run of results.runs) groups.set(run.configuration, [...(groups.get(run.configuration) ?? []), run]);
  const figures: Figure[] = [];
  for (const [configuration, runs] of groups) {
    figures.push({
      file: `${FIGURES_DIR}/curve-${configuration.replace(/[^A-Za-z0-9._-]/g, '_')}.svg`,
      title: `${configuration}: validation loss per seed`,
      svg: await renderSvg(configurationCurveSpec(configuration, runs)),
    });
  }
  rmSync(join(dir, FIGURES_DIR), { recursive: true, force: true });
  mkdirSync(join(dir, FIGURES_DIR), { recursive: true });
  for (const f of figures) writeFileSync(join(dir, f.file), f.svg);

  const unfinished = results.runs.filter((r) => !r.done).length;
  const status = `${results.runs.length - unfinished} of ${results.runs.length} training runs finished${unfinished ? ` (${unfinished} unfinished: left out of the means)` : ''}.`;
  writeReportPage(dir, {
    title: `Experiment: ${results.name}`,
    intro: describe(spec),
    status: [status, provenanceLine(results.runs)].filter(Boolean).join(' '),
    sections: [
      { heading: 'Results by configuration', table: summary },
      { heading: 'Frobenius decay vs weight decay in fine-tuning', table: fdVersusWd },
      { heading: 'The compression itself (before fine-tuning)', table: compression },
      { heading: 'Every run', table: perRun },
    ],
    figures,
    textColumns: 3,
  });
  return { markdown: join(dir, REPORT_MD), html: join(dir, REPORT_HTML), figures: figures.map((f) => join(dir, f.file)) };
}
