/**
 * `doctor`: what this installation can do — engine, versions, cores, memory, optional tools —
 * so a slow or failing run can be explained before it starts.
 */
import * as tf from '@tensorflow/tfjs';
import type { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import os from 'node:os';
import { backendInfo, probeWebGpu, type WebGpuStatus } from '../../backend/index.ts';
import type { CliIo } from '../io.ts';
import { packagePath } from '../../package-root.ts';

export interface DoctorReport {
  node: string;
  tfjs: string;
  backend: string | null;
  skippedBackends: { name: string; reason: string }[];
  /** The WebGPU adapter (vendor, architecture, device, key limits) or why there is none. */
  webgpu: WebGpuStatus;
  cpus: number;
  memoryGiB: number;
  spmTrain: string | null;
  checkpointsWritable: boolean;
}

/** Path of the `spm_train` tool (SentencePiece trainer), or null when not on PATH. */
export function findSpmTrain(): string | null {
  const result = spawnSync('sh', ['-c', 'command -v spm_train'], { encoding: 'utf8' });
  // No `sh` on the PATH (e.g. `env -i PATH=` around the GPU bundle's launcher): no stdout at all.
  const path = (result.stdout ?? '').trim();
  return result.status === 0 && path ? path : null;
}

export function collectDoctorReport(): DoctorReport {
  const info = backendInfo();
  let checkpointsWritable = true;
  try {
    accessSync(packagePath('checkpoints'), constants.W_OK);
  } catch {
    checkpointsWritable = false;
  }
  return {
    node: process.version,
    tfjs: tf.version.tfjs,
    backend: info?.name ?? null,
    skippedBackends: info?.skipped ?? [],
    webgpu: probeWebGpu(),
    cpus: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    spmTrain: findSpmTrain(),
    checkpointsWritable,
  };
}

const GIB = 2 ** 30;
const MIB = 2 ** 20;
function bytes(n: number): string {
  return n >= GIB ? `${Math.round((n / GIB) * 10) / 10} GiB` : n >= MIB ? `${Math.round(n / MIB)} MiB` : `${Math.round(n / 1024)} KiB`;
}

/** The adapter in a few lines: who made it, what it is, and the limits that bound tensor sizes. */
function webGpuLines(status: WebGpuStatus): string[] {
  const flags = status.flags.length ? ` (FT_WEBGPU_FLAGS ${status.flags.join(',')})` : '';
  const a = status.adapter;
  if (!a) return [`webgpu      no adapter: ${status.reason}${flags}`];
  const l = a.limits;
  return [
    `webgpu      ${a.vendor || '?'} ${a.architecture || '?'}, ${a.description || a.device}${a.isFallbackAdapter ? ' [software adapter: auto skips it, --backend webgpu uses it]' : ''}${flags}`,
    `  limits    maxBufferSize ${bytes(l.maxBufferSize)}, maxStorageBufferBindingSize ${bytes(l.maxStorageBufferBindingSize)}, ` +
      `maxComputeWorkgroupStorageSize ${bytes(l.maxComputeWorkgroupStorageSize)}, maxComputeInvocationsPerWorkgroup ${l.maxComputeInvocationsPerWorkgroup}`,
    ...(a.features.length ? [`  features  ${a.features.join(', ')}`] : []),
  ];
}

export function registerDoctorCommand(program: Command, io: CliIo): void {
  program
    .command('doctor')
    .description('check the installation: compute engine, versions, cores, memory, optional tools')
    .option('--json', 'print the report as JSON')
    .action((opts: { json?: boolean }) => {
      const report = collectDoctorReport();
      if (opts.json) {
        io.stdout(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      const lines = [
        `node        ${report.node}`,
        `tfjs        ${report.tfjs}`,
        `backend     ${report.backend ?? 'none'}`,
        ...report.skippedBackends.map((s) => `  skipped   ${s.name}: ${s.reason}`),
        ...webGpuLines(report.webgpu),
        `cpus        ${report.cpus}`,
        `memory      ${report.memoryGiB} GiB`,
        `spm_train   ${report.spmTrain ?? 'not found (only needed to train a new SentencePiece model; install Debian/Ubuntu package "sentencepiece")'}`,
        `checkpoints ${report.checkpointsWritable ? 'writable' : 'NOT writable'}`,
      ];
      io.stdout(`${lines.join('\n')}\n`);
    });
}
