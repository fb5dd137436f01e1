import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend, parseWebGpuFlags } from '../src/backend/index.ts';
import { UserError } from '../src/errors.ts';

describe('backend', () => {
  it('starts a backend and computes', async () => {
    const info = await initBackend();
    expect(['tensorflow', 'tensorflow-gpu', 'webgpu', 'wasm', 'cpu']).toContain(info.name);
    expect(tf.getBackend()).toBeTruthy();
    const y = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 2])).dataSync());
    expect(Array.from(y)).toEqual([3, 3, 3, 3]);
  });

  it('gather gradient works (UnsortedSegmentSum) and matches a dense computation', async () => {
    await initBackend();
    const table = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
    const ids = tf.tensor1d([2, 0, 2], 'int32');
    const g = tf.grad((t: tf.Tensor) => tf.gather(t, ids).sum())(table);
    expect(Array.from(await g.data())).toEqual([1, 1, 0, 0, 2, 2]);
    tf.dispose([table, ids, g]);
  });

  it('parses FT_WEBGPU_FLAGS: comma-separated name=value, a value may hold commas', () => {
    expect(parseWebGpuFlags(undefined)).toEqual([]);
    expect(parseWebGpuFlags(' ')).toEqual([]);
    expect(parseWebGpuFlags('backend=vulkan,adapter=NVIDIA H200')).toEqual(['backend=vulkan', 'adapter=NVIDIA H200']);
    expect(parseWebGpuFlags('adapter=llvmpipe,enable-dawn-features=allow_unsafe_apis,dump_shaders')).toEqual([
      'adapter=llvmpipe',
      'enable-dawn-features=allow_unsafe_apis,dump_shaders',
    ]);
    expect(() => parseWebGpuFlags('vulkan')).toThrow(UserError);
  });

  it('a forced webgpu that cannot start falls back cleanly: reason given, no webgpu left registered, ops run', async () => {
    // An adapter name that matches nothing: Dawn refuses (and lists the adapters), or the package
    // or Vulkan is missing altogether; either way the engine must fall back, not break.
    const saved = process.env.FT_WEBGPU_FLAGS;
    process.env.FT_WEBGPU_FLAGS = 'adapter=NoSuchAdapter-0000';
    try {
      const info = await initBackend({ backend: 'webgpu', verbose: false });
      expect(info.name).not.toBe('webgpu');
      expect(info.skipped.find((s) => s.name === 'webgpu')?.reason).toBeTruthy();
      expect(tf.findBackend('webgpu')).toBeFalsy();
      expect(tf.engine().registryFactory.webgpu).toBeUndefined();
      expect(tf.getBackend()).toBe(info.name);
      expect(Array.from(await tf.add(tf.ones([2]), tf.ones([2])).data())).toEqual([2, 2]);
    } finally {
      if (saved === undefined) delete process.env.FT_WEBGPU_FLAGS;
      else process.env.FT_WEBGPU_FLAGS = saved;
      await initBackend({ verbose: false });
    }
  });

  it('rejects an unknown backend with a one-line error', async () => {
    await expect(initBackend({ backend: 'gpu' as never })).rejects.toThrow(/unknown backend 'gpu'/);
  });
});
