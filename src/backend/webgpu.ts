/**
 * The WebGPU engine: tfjs' `@tensorflow/tfjs-backend-webgpu` on Dawn's Node binding (npm `webgpu`),
 * which drives Vulkan (Linux), Metal (macOS) or D3D12 (Windows) with no CUDA install.
 *
 * Start-up order matters: tfjs-backend-webgpu registers its backend only if `navigator.gpu` exists
 * when it is first imported, so Dawn's globals and `navigator.gpu` are installed first and the
 * package is imported dynamically after. We request the adapter ourselves, decide from it (the
 * `auto` engine takes only a real GPU, not a software one such as Mesa's lavapipe), and register
 * the backend on that very adapter's device; when anything fails the backend is removed again, so
 * the registry never holds a 'webgpu' entry that cannot initialize.
 *
 * Probing for `auto` and `doctor` runs in a short child process: Dawn prints start-up warnings
 * straight to the process's stderr from C++ (lavapipe: "maxDynamic…BuffersPerPipelineLayout
 * artificially reduced…", on every adapter enumeration), which JavaScript cannot filter, and a
 * faulty Vulkan driver that crashes during enumeration takes the child down, not the command.
 * The in-process start happens only when the webgpu engine is actually used.
 *
 * Env: FT_WEBGPU_FLAGS — Dawn's `create()` flags, comma-separated `name=value`, e.g.
 * `backend=vulkan,adapter=NVIDIA` (adapter: a case-sensitive substring of the adapter's name; a
 * wrong one fails with the list of adapters). A value may itself hold commas
 * (`enable-dawn-features=a,b`): a comma starts a new flag only when `name=` follows it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { packageRequire } from '../package-root.ts';
import { pathToFileURL } from 'node:url';
import { UserError } from '../errors.ts';

/** The adapter limits `doctor` shows: the ones that bound tensor and workgroup sizes. */
export const WEBGPU_KEY_LIMITS = [
  'maxBufferSize',
  'maxStorageBufferBindingSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupsPerDimension',
] as const;
const INFO_FIELDS = ['vendor', 'architecture', 'device', 'description'] as const;
/** Features worth knowing about (tfjs uses timestamp-query for profiling). */
const KEY_FEATURES = ['shader-f16', 'timestamp-query', 'subgroups'] as const;

export interface WebGpuAdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for a software implementation (e.g. Mesa lavapipe): `auto` does not use it. */
  isFallbackAdapter: boolean;
  limits: Record<(typeof WEBGPU_KEY_LIMITS)[number], number>;
  features: string[];
}

/** What a probe or start found: an adapter, or why there is none. */
export type WebGpuStatus =
  | { adapter: WebGpuAdapterDescription; reason?: undefined; flags: string[] }
  | { adapter?: undefined; reason: string; flags: string[] };

/** Splits FT_WEBGPU_FLAGS (see the header) into Dawn's `create()` flags. */
export function parseWebGpuFlags(raw: string | undefined): string[] {
  const text = (raw ?? '').trim();
  if (!text) return [];
  const flags = text.split(/,(?=\s*[A-Za-z][\w-]*=)/).map((f) => f.trim());
  for (const flag of flags) {
    if (!/^[A-Za-z][\w-]*=/.test(flag)) {
      throw new UserError(`FT_WEBGPU_FLAGS: expected comma-separated name=value flags (e.g. backend=vulkan,adapter=NVIDIA), got '${flag}'`);
    }
  }
  return flags;
}

/** The plain-data view of a GPUAdapter. */
function describeAdapter(adapter: GPUAdapter): WebGpuAdapterDescription {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const info = ((adapter as any).info ?? {}) as any;
  const limits = {} as WebGpuAdapterDescription['limits'];
  for (const name of WEBGPU_KEY_LIMITS) limits[name] = Number(adapter.limits[name]);
  const out = {} as WebGpuAdapterDescription;
  for (const field of INFO_FIELDS) out[field] = String(info[field] ?? '');
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  out.isFallbackAdapter = Boolean(info.isFallbackAdapter ?? (adapter as any).isFallbackAdapter);
  out.limits = limits;
  out.features = KEY_FEATURES.filter((f) => adapter.features.has(f));
  return out;
}

/** The adapter request both the probe and the start make (tfjs' own default is the same). */
const ADAPTER_OPTIONS: GPURequestAdapterOptions = { powerPreference: 'high-performance' };
let probed: WebGpuStatus | undefined;
let deviceErrors = 0;
let started: (WebGpuStatus & { device?: GPUDevice }) | undefined;

/** The first line of an error, plus Dawn's list of adapters when it gives one. */
function reasonOf(err: unknown): string {
  const lines = String((err as Error)?.message ?? err).split('\n').map((l) => l.trim()).filter(Boolean);
  const adapters = lines.filter((l) => l.startsWith('*'));
  return adapters.length ? `${lines[0]} (available: ${adapters.map((l) => l.replace(/^\*\s*/, '')).join('; ')})` : lines[0] ?? 'unknown error';
}

/** Where the `webgpu` package lives, or why it cannot be used. */
function locateDawn(): { url: string } | { reason: string } {
  try {
    return { url: pathToFileURL(packageRequire.resolve('webgpu')).href };
  } catch {
    return { reason: "npm package 'webgpu' not installed (optional dependency)" };
  }
}

/**
 * What adapter Dawn would give this process, found in a child process (see the header for why).
 * Cached per process; also what `doctor` reports when another engine runs.
 */
export function probeWebGpu(): WebGpuStatus {
  if (started) return { ...(started.adapter ? { adapter: started.adapter } : { reason: started.reason! }), flags: started.flags };
  if (probed) return probed;
  const flags = parseWebGpuFlags(process.env.FT_WEBGPU_FLAGS);
  const dawn = locateDawn();
  if ('reason' in dawn) return (probed = { reason: dawn.reason, flags });
  const script = `
    const limitNames = ${JSON.stringify(WEBGPU_KEY_LIMITS)}, infoFields = ${JSON.stringify(INFO_FIELDS)}, keyFeatures = ${JSON.stringify(KEY_FEATURES)};
    let out;
    try {
      const { create, globals } = await import(${JSON.stringify(dawn.url)});
      Object.assign(globalThis, globals);
      const gpu = create(${JSON.stringify(flags)});
      const a = await gpu.requestAdapter(${JSON.stringify(ADAPTER_OPTIONS)});
      if (!a) out = { none: true };
      else {
        const info = a.info ?? {}, d = { limits: {} };
        for (const f of infoFields) d[f] = String(info[f] ?? '');
        d.isFallbackAdapter = Boolean(info.isFallbackAdapter ?? a.isFallbackAdapter);
        for (const l of limitNames) d.limits[l] = Number(a.limits[l]);
        d.features = keyFeatures.filter((f) => a.features.has(f));
        out = { adapter: d };
      }
    } catch (err) { out = { error: String(err && err.message || err) }; }
    process.stdout.write(JSON.stringify(out));
    process.exit(0);`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, env: process.env });
  let result: { adapter?: WebGpuAdapterDescription; none?: boolean; error?: string } | undefined;
  try {
    result = JSON.parse(child.stdout);
  } catch {
    result = undefined;
  }
  if (result?.adapter) probed = { adapter: result.adapter, flags };
  else if (result?.none) probed = { reason: noAdapterReason(), flags };
  else if (result?.error) probed = { reason: reasonOf(new Error(result.error)), flags };
  else {
    const why = child.error ? child.error.message : child.signal ? `killed by ${child.signal}` : `exit code ${child.status}`;
    probed = { reason: `the adapter probe failed (${why}): ${child.stderr.trim().split('\n').pop() ?? ''}`.trim(), flags };
  }
  return probed;
}

function noAdapterReason(): string {
  return 'Dawn found no WebGPU adapter (no GPU driver with Vulkan/Metal/D3D12 support, or libvulkan.so.1 missing; software Vulkan needs Mesa >= 23)';
}

/**
 * Linux only: whether any GPU device node is visible to this process (Mesa's hardware drivers
 * open /dev/dri/renderD*, NVIDIA's /dev/nvidia*, WSL2's /dev/dxg). Without one the only adapters
 * Dawn can find are software ones, which `auto` does not use: the probe is skipped (it costs
 * about half a second, on every command). Elsewhere (macOS, Windows) always true.
 */
export function gpuDeviceNodeVisible(): boolean {
  if (process.platform !== 'linux') return true;
  if (existsSync('/dev/dxg')) return true;
  const has = (dir: string, pattern: RegExp): boolean => {
    try {
      return readdirSync(dir).some((f) => pattern.test(f));
    } catch {
      return false;
    }
  };
  return has('/dev/dri', /^renderD\d+$/) || has('/dev', /^nvidia\d+$/);
}

/** The adapter of the running webgpu engine, or the probe's result, or undefined when neither ran. */
export function webGpuStatus(): WebGpuStatus | undefined {
  if (started) return started.adapter ? { adapter: started.adapter, flags: started.flags } : { reason: started.reason!, flags: started.flags };
  return probed;
}

/**
 * Starts the webgpu engine in this process and makes it the active tfjs backend. With
 * `allowFallbackAdapter` false a software adapter is refused. Resolves to the adapter, or to the
 * reason it could not start (and then no 'webgpu' backend is left registered).
 */
export async function startWebGpu(allowFallbackAdapter: boolean): Promise<WebGpuStatus> {
  if (started?.adapter && started.device) {
    if (!allowFallbackAdapter && started.adapter.isFallbackAdapter) return { reason: softwareReason(started.adapter), flags: started.flags };
    if (tf.findBackend('webgpu') && (await tf.setBackend('webgpu'))) return { adapter: started.adapter, flags: started.flags };
  }
  const flags = parseWebGpuFlags(process.env.FT_WEBGPU_FLAGS);
  const fail = (reason: string): WebGpuStatus => {
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    started = { reason, flags };
    return started;
  };
  const dawn = locateDawn();
  if ('reason' in dawn) return fail(dawn.reason);
  let adapter: GPUAdapter | null;
  let device: GPUDevice;
  try {
    const { create, globals } = (await import(dawn.url)) as { create(flags: string[]): GPU; globals: object };
    Object.assign(globalThis, globals);
    const gpu = create(flags);
    const g = globalThis as unknown as { navigator?: { gpu?: GPU } };
    if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
    adapter = await gpu.requestAdapter(ADAPTER_OPTIONS);
    if (!adapter) return fail(noAdapterReason());
    const described = describeAdapter(adapter);
    if (!allowFallbackAdapter && described.isFallbackAdapter) return fail(softwareReason(described));
    device = await adapter.requestDevice(deviceDescriptor(adapter));
    // Importing the package registers the stock backend (its factory would request an adapter of
    // its own) and every webgpu kernel; the factory is replaced by one on our device.
    const webgpu = (await import('@tensorflow/tfjs-backend-webgpu')) as unknown as {
      WebGPUBackend: new (device: GPUDevice, adapterInfo?: unknown) => tf.KernelBackend;
      webgpu_util: WebGpuUtil;
    };
    const info = (adapter as unknown as { info?: unknown }).info;
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    tf.registerBackend('webgpu', () => new webgpu.WebGPUBackend(device, info), 3);
    const { registerWebGpuKernels } = await import('./kernels/webgpu.ts');
    registerWebGpuKernels(webgpu.webgpu_util);
    if (!(await tf.setBackend('webgpu'))) return fail('tfjs could not initialize the webgpu backend');
    await tf.ready();
    // The first op proves the device runs shaders (a broken driver fails here, not mid-training).
    const probe = tf.tidy(() => tf.add(tf.fill([2048], 1), tf.fill([2048], 2)).sum());
    const value = (await probe.data())[0];
    probe.dispose();
    if (value !== 6144) return fail(`the webgpu device computed a wrong result (1+2 summed over 2048 gave ${value})`);
    started = { adapter: described, flags, device };
    // tfjs never checks for device errors: an invalid pipeline (a limit exceeded) would make
    // kernels write nothing while training carries on. Dawn prints each error; we count them.
    device.addEventListener('uncapturederror', () => {
      deviceErrors++;
    });
    void device.lost.then((lost) => {
      if (lost.reason !== 'destroyed') process.stderr.write(`[factorized-transformer] webgpu device lost: ${lost.message}\n`);
    });
    return { adapter: described, flags };
  } catch (err) {
    return fail(reasonOf(err));
  }
}

/** Uncaptured WebGPU errors (validation, out-of-memory) on the engine's device so far: 0 when all is well. */
export function webGpuErrorCount(): number {
  return deviceErrors;
}

/** The helpers of tfjs-backend-webgpu that our kernels use (passed in: the package is optional). */
export interface WebGpuUtil {
  flatDispatchLayout(shape: number[]): { x: number[] };
  computeDispatch(layout: { x: number[] }, outputShape: number[], workgroupSize?: [number, number, number]): [number, number, number];
}

function softwareReason(a: WebGpuAdapterDescription): string {
  return `only a software adapter (${a.vendor} ${a.architecture}: ${a.description || a.device}); FT_BACKEND=webgpu uses it anyway`;
}

/** The device tfjs' own factory would request (the adapter's full limits for what tfjs uses), plus storage buffers per stage. */
function deviceDescriptor(adapter: GPUAdapter): GPUDeviceDescriptor {
  const l = adapter.limits;
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query');
  if (adapter.features.has('bgra8unorm-storage')) requiredFeatures.push('bgra8unorm-storage');
  return {
    requiredFeatures,
    requiredLimits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      // Not in tfjs' own request (its default is 8): kernels with many inputs (AddN, concat) bind one each.
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  };
}
