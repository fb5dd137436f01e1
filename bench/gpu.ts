/**
 * `npm run bench -- gpu [--quick]`: the GPU engine (webgpu: Dawn on Vulkan / Metal / D3D12).
 * Training tokens/s of transformer_small and transformer_base (one Adam update on a fixed batch,
 * as bench/train-translation.ts) and beam-5 decoding sentences/s (as bench/decode.ts), each beside
 * PyTorch on CUDA for the same model, batch and work (bench/reference/gpu_cuda.py) when a python3
 * with a CUDA build of torch is found (the newest among PYTHON, FT_BENCH_PYTHONS or bench/.venv,
 * /usr/bin/python3 and python3 on the PATH: common.ts referencePythons); otherwise each line says
 * why the reference was skipped.
 *
 * bench/run.ts starts the webgpu engine for this benchmark whatever --backend says. Where there is
 * no adapter it stops with the reason: CPU figures under this name would mislead. On a software
 * adapter (Mesa's lavapipe) the figures are a smoke test, not a GPU measurement; `--quick` makes
 * the work small enough for one.
 */
import * as tf from '@tensorflow/tfjs';
import { describeBackend } from '../src/backend/index.ts';
import { compared, runReference, timeMedian, type Benchmark, type BenchResult, type ReferenceResult } from './common.ts';
import { timeBeamDecode, type DecodeWork } from './decode.ts';
import { translationTrainBench, type TranslationBatch } from './train-translation.ts';

const MODELS = ['transformer_small', 'transformer_base'] as const;

interface GpuWork {
  train: TranslationBatch & { steps: number; warmup: number };
  decode: DecodeWork;
}

/** Full: the CPU benchmarks' batch (128 x 32 target tokens) and decode work (16 sentences, 20 tokens). */
function work(quick: boolean): GpuWork {
  return quick
    ? { train: { vocab: 8000, batch: 8, srcLen: 16, tgtLen: 16, steps: 1, warmup: 1 }, decode: { vocab: 8000, sentences: 2, srcLen: 8, len: 4, beam: 5 } }
    : { train: { vocab: 8000, batch: 128, srcLen: 32, tgtLen: 32, steps: 5, warmup: 2 }, decode: { vocab: 8000, sentences: 16, srcLen: 24, len: 20, beam: 5 } };
}

const CUDA_PROBE = { code: 'import torch\nassert torch.cuda.is_available(), "no CUDA device"', need: 'PyTorch with CUDA (torch.cuda.is_available())' };

/** The newest CUDA PyTorch among the interpreters (common.ts referencePythons); no second 1.x run. */
function cudaReference(args: Record<string, string | number>): Promise<ReferenceResult> {
  return runReference('gpu_cuda.py', args, { probe: CUDA_PROBE, timeoutMs: 1_200_000, legacy: false });
}

/** The adapter and engine, as doctor reports them, for every line's `extra`. */
function engine(): Record<string, unknown> {
  const d = describeBackend();
  const a = d.webgpu.adapter;
  return {
    engine: d.active,
    adapter: a ? `${a.description || a.device} (${a.vendor}, ${a.architecture})` : d.webgpu.reason,
    softwareAdapter: a?.isFallbackAdapter ?? null,
    webgpuCpuForward: tf.env().getBool('WEBGPU_CPU_FORWARD'),
  };
}

export const run: Benchmark = async ({ quick }) => {
  if (tf.getBackend() !== 'webgpu') {
    const why = describeBackend().skipped.find((s) => s.name.includes('webgpu'))?.reason ?? `the active engine is ${tf.getBackend()}`;
    throw new Error(`the gpu benchmark needs the webgpu engine (a Vulkan, Metal or D3D12 adapter): ${why}`);
  }
  const { train, decode } = work(quick);
  const results: BenchResult[] = [];
  const skipped = new Set<string>();
  const note = (ref: ReferenceResult): ReferenceResult => {
    if (!ref.ok && !skipped.has(ref.reason)) {
      skipped.add(ref.reason);
      console.error(`gpu: skipped the PyTorch CUDA reference: ${ref.reason}`);
    }
    return ref;
  };
  for (const model of MODELS) {
    const bench = translationTrainBench(model, train);
    let ms: number;
    try {
      ms = await timeMedian(bench.step, train.steps, train.warmup);
    } finally {
      bench.dispose();
    }
    const ref = note(
      await cudaReference({
        task: 'train',
        model,
        vocab: train.vocab,
        batch: train.batch,
        'src-len': train.srcLen,
        'tgt-len': train.tgtLen,
        steps: train.steps,
        warmup: train.warmup,
      }),
    );
    results.push(
      compared(`gpu train ${model}`, bench.targetTokens / (ms / 1000), 'tokens/s', ref, 'tokens_per_s', {
        batch: `${train.batch}x${train.tgtLen} target tokens (+${train.batch}x${train.srcLen} source), vocab ${train.vocab}`,
        msPerStep: ms,
        ...engine(),
      }),
    );
  }
  for (const model of MODELS) {
    const { seconds, leakedTensors } = await timeBeamDecode(model, decode);
    const ref = note(
      await cudaReference({ task: 'decode', model, vocab: decode.vocab, sentences: decode.sentences, 'src-len': decode.srcLen, len: decode.len, beam: decode.beam }),
    );
    results.push(
      compared(`gpu decode ${model}`, decode.sentences / seconds, 'sentences/s', ref, 'sentences_per_s', {
        work: `${decode.sentences} sentences x ${decode.srcLen} source tokens, beam ${decode.beam}, ${decode.len} tokens + EOS each`,
        seconds,
        leakedTensors,
        ...engine(),
      }),
    );
  }
  return results;
};
