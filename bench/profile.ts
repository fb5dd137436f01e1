/**
 * `npm run bench -- profile [--json]`: kernel calls and time per kernel type for one training step
 * of the quickstart's model (transformer_small_cpu at its 512-token batch, as
 * bench/train-translation-cpu.ts) and one beam step of decoding it (beam 5, as bench/decode-cpu.ts):
 * where the time goes, so that each fusion is chosen by measurement. A diagnosis, not a figure:
 * profiling adds its own cost, so each section also gives the step's unprofiled time.
 *
 * How: `tf.profile()`, tfjs' public profiler. The engine records every kernel it dispatches (name,
 * shapes) and times it with the backend's timer; on wasm, where kernels run synchronously (the
 * native BLAS addon and the wasm thread pool block until done), that timer is the wall time around
 * the call (backend_wasm `time()`), so `kernelTimeMs` is available and exact there. Our kernels call
 * other kernels' functions directly, not through the engine, so nothing is counted twice. The
 * alternatives are worse: `DEBUG` logs and checks every kernel (and reads every output back), and
 * wrapping the registry's kernel functions would change what is measured.
 *
 * One beam step is isolated without touching the search: beamSearch runs with a model wrapper that
 * stops it right after step k's cache reorder, once at k − 1 and once at k; the kernels the second
 * run made beyond the first (checked to be a common prefix) are exactly step k's, decoder pass,
 * top-k and reorder included, with their own timings.
 */
import * as tf from '@tensorflow/tfjs';
import { beamSearch, type DecoderStepModel } from '../src/decode/index.ts';
import { TransformerSeq2Seq } from '../src/models/index.ts';
import { timeMedian, type Benchmark, type BenchResult } from './common.ts';
import { randomIds } from './train-step.ts';
import { cpuPresetBatch, cpuPresetConfig, PRESET } from './train-translation-cpu.ts';
import { benchSeq2SeqConfig, engineSummary, translationTrainBench } from './train-translation.ts';
import { mlmTrainBench } from './train-mlm.ts';
import { bertConfigFor, resolveMlmConfig } from '../src/tasks/mlm-config.ts';

interface KernelRow {
  name: string;
  calls: number;
  ms: number;
}

interface Profiled {
  kernels: { name: string; ms: number }[];
  wallMs: number;
}

/**
 * The kernels `query` ran. tf.profile also records ops with a custom gradient (tf.customGrad, e.g.
 * `fusedMatMul__op`, `logSoftmax__op`, our `forward` scopes) as entries whose time includes the
 * kernels they ran, which are recorded too: only registered kernels of the active backend are kept,
 * so every call is counted once.
 */
async function profiled(query: () => Promise<number | void>): Promise<Profiled> {
  const t0 = performance.now();
  let inner: number | void = undefined;
  const info = await tf.profile(async () => {
    inner = await query();
    return [];
  });
  const wallMs = inner ?? performance.now() - t0;
  const backend = tf.getBackend();
  const kernels = info.kernels.filter((k) => tf.getKernel(k.name, backend) !== undefined);
  return { kernels: kernels.map((k) => ({ name: k.name, ms: k.kernelTimeMs as number })), wallMs };
}

/** Per kernel type: calls and total ms, sorted by total time. */
function byKernel(kernels: Profiled['kernels']): KernelRow[] {
  const rows = new Map<string, KernelRow>();
  for (const k of kernels) {
    const row = rows.get(k.name) ?? { name: k.name, calls: 0, ms: 0 };
    row.calls += 1;
    row.ms += k.ms;
    rows.set(k.name, row);
  }
  return [...rows.values()].sort((a, b) => b.ms - a.ms);
}

class StopSearch extends Error {}

/**
 * `model`, except that the search stops (StopSearch) right after the cache reorder of step `last`;
 * `timing.ms` is then that step's wall time, from its decoder pass to the end of its reorder.
 */
function stoppingAfter<S>(model: DecoderStepModel<S>, last: number, timing: { ms: number }): DecoderStepModel<S> {
  let step = 0;
  let t0 = 0;
  return {
    bosId: model.bosId,
    eosId: model.eosId,
    padId: model.padId,
    maxTargetPositions: model.maxTargetPositions,
    startDecoding: (source, copies) => model.startDecoding(source, copies),
    decodeStep: (state, tokens) => {
      if (step === last) t0 = performance.now();
      return model.decodeStep(state, tokens);
    },
    reorderDecoderState: (state, rows, sameSource) => {
      model.reorderDecoderState(state, rows, sameSource);
      if (step++ === last) {
        timing.ms = performance.now() - t0;
        throw new StopSearch();
      }
    },
    disposeDecoderState: (state) => model.disposeDecoderState(state),
  };
}

async function trainStepProfile(quick: boolean): Promise<{ rows: KernelRow[]; p: Profiled; unprofiledMs: number; what: string }> {
  const shape = cpuPresetBatch();
  const bench = translationTrainBench(PRESET, shape);
  try {
    const unprofiledMs = await timeMedian(bench.step, quick ? 1 : 3, 1);
    const p = await profiled(bench.step);
    return { rows: byKernel(p.kernels), p, unprofiledMs, what: `${shape.batch}x${shape.tgtLen} target tokens, vocab ${shape.vocab}` };
  } finally {
    bench.dispose();
  }
}

/** One step of `train mlm`'s defaults (bench/train-mlm-default.ts: bert_small, 16x128 tokens). */
async function mlmStepProfile(quick: boolean): Promise<{ rows: KernelRow[]; p: Profiled; unprofiledMs: number; what: string }> {
  const config = resolveMlmConfig({ preset: 'bert_small' });
  const seqLen = config.data.maxLength;
  const shape = { batch: quick ? 2 : Math.floor(config.train.maxTokens / seqLen), seqLen, masked: Math.round(config.data.maskProbability * seqLen) };
  const bench = mlmTrainBench(bertConfigFor(config, { vocabSize: 8000, padId: 0 }), shape);
  try {
    const unprofiledMs = await timeMedian(bench.step, quick ? 1 : 3, 1);
    const p = await profiled(bench.step);
    return { rows: byKernel(p.kernels), p, unprofiledMs, what: `${shape.batch}x${shape.seqLen} tokens, ${shape.masked} masked, vocab 8000` };
  } finally {
    bench.dispose();
  }
}

async function beamStepProfile(quick: boolean): Promise<{ rows: KernelRow[]; p: Profiled; unprofiledMs: number; what: string }> {
  const { data, decode } = cpuPresetConfig();
  const [sentences, srcLen, len, k] = [quick ? 4 : 16, 24, 20, 10];
  const model = new TransformerSeq2Seq(benchSeq2SeqConfig(PRESET, data.vocabSize));
  try {
    const ids = randomIds(sentences * srcLen, data.vocabSize, 5);
    const source = Array.from({ length: sentences }, (_, i) => Array.from(ids.subarray(i * srcLen, (i + 1) * srcLen)));
    const opts = { beamSize: decode.beam, minLen: len, maxLenA: 0, maxLenB: len };
    /** Runs the search through step `last`; resolves to that step's wall time in ms. */
    const upTo = (last: number) => async () => {
      const timing = { ms: NaN };
      try {
        await beamSearch(stoppingAfter(model, last, timing), source, opts);
      } catch (err) {
        if (!(err instanceof StopSearch)) throw err;
      }
      return timing.ms;
    };
    await upTo(k)(); // warm-up
    const times: number[] = [];
    for (let i = 0; i < (quick ? 1 : 3); i++) times.push(await upTo(k)());
    const unprofiledMs = times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
    const before = await profiled(upTo(k - 1));
    const through = await profiled(upTo(k));
    const n = before.kernels.length;
    if (through.kernels.slice(0, n).some((kern, i) => kern.name !== before.kernels[i].name)) {
      throw new Error('profile: the beam search did not repeat the same kernels; cannot isolate one step');
    }
    const step = through.kernels.slice(n);
    const p = { kernels: step, wallMs: through.wallMs };
    return { rows: byKernel(step), p, unprofiledMs, what: `step ${k} of ${sentences} sentences x beam ${decode.beam} (${sentences * decode.beam} rows), vocab ${data.vocabSize}` };
  } finally {
    model.dispose();
  }
}

function printTable(title: string, rows: KernelRow[], totalMs: number, calls: number): void {
  const pad = (s: string, n: number) => s.padStart(n);
  const width = Math.max(6, ...rows.map((r) => r.name.length));
  console.log(`\n${title}`);
  console.log(`${'kernel'.padEnd(width)}  ${pad('calls', 6)}  ${pad('total ms', 9)}  ${pad('ms/call', 8)}  ${pad('%', 5)}`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(width)}  ${pad(String(r.calls), 6)}  ${pad(r.ms.toFixed(2), 9)}  ${pad((r.ms / r.calls).toFixed(3), 8)}  ${pad(((100 * r.ms) / totalMs).toFixed(1), 5)}`,
    );
  }
  console.log(`${'total'.padEnd(width)}  ${pad(String(calls), 6)}  ${pad(totalMs.toFixed(2), 9)}`);
}

export const run: Benchmark = async ({ json, quick }) => {
  const results: BenchResult[] = [];
  for (const [name, section] of [
    ['profile train-step', await trainStepProfile(quick)],
    ['profile mlm-step', await mlmStepProfile(quick)],
    ['profile beam-step', await beamStepProfile(quick)],
  ] as const) {
    const calls = section.p.kernels.length;
    const kernelMs = section.rows.reduce((s, r) => s + r.ms, 0);
    if (!json) printTable(`${name}: ${name === 'profile mlm-step' ? 'bert_small' : PRESET}, ${section.what}`, section.rows, kernelMs, calls);
    results.push({
      name,
      value: calls,
      unit: 'kernel calls',
      baseline: null,
      ratio: null,
      extra: {
        model: name === 'profile mlm-step' ? 'bert_small' : PRESET,
        work: section.what,
        kernelMs,
        profiledWallMs: section.p.wallMs,
        unprofiledMs: section.unprofiledMs,
        engine: engineSummary(),
        ...(json ? { kernels: section.rows } : { kernelTypes: section.rows.length }),
      },
    });
  }
  return results;
};
