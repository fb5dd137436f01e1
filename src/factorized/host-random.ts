/**
 * The initial values of `tf.initializers.randomUniform` / `randomNormal`, computed on the host into
 * a Float32Array — bit for bit the numbers tfjs would put in the tensor for the same seed.
 *
 * Why: spectral initialization needs the random factors on the host (the SVD runs in JS, see
 * linalg.ts), and layers build synchronously inside `tf.layers` model construction. Reading the
 * initializer's tensor back (`dataSync`) is impossible on a GPU backend (webgpu in Node throws),
 * while generating the values here costs exactly what tfjs itself spends: its random ops also fill
 * a host buffer in JS (tfjs-core ops/random_uniform.ts, random_normal.ts) before uploading it.
 * So a layer draws its initial factors here, balances them in JS, and uploads them once.
 *
 * The uniform and polar-normal loops are tfjs-core's (ops/rand_util.ts: UniformRandom, MPRandGauss,
 * not part of its public API), over the same generator tfjs uses: the `seedrandom` package's Alea.
 * test/factorized.test.ts checks them against tf.randomUniform / tf.randomNormal bit for bit.
 */
import seedrandom from 'seedrandom';

const { alea } = seedrandom;

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** = `tf.randomUniform(shape, minval, maxval, 'float32', seed).dataSync()`. */
export function hostRandomUniform(shape: readonly number[], minval: number, maxval: number, seed: number): Float32Array {
  // tfjs: `new UniformRandom(min, max, null, seed)` seeds Alea with String(seed) (Math.random() when null).
  const random = alea(String(seed));
  const range = maxval - minval;
  const out = new Float32Array(sizeOf(shape));
  for (let i = 0; i < out.length; i++) out[i] = minval + range * random();
  return out;
}

/** = `tf.randomNormal(shape, mean, stddev, 'float32', seed).dataSync()` (Marsaglia's polar method). */
export function hostRandomNormal(shape: readonly number[], mean: number, stddev: number, seed: number): Float32Array {
  // tfjs: MPRandGauss seeds with `seed ? seed : Math.random()` — a seed of 0 is not reproducible there either.
  const random = alea(String(seed ? seed : Math.random()));
  const out = new Float32Array(sizeOf(shape));
  let spare = NaN;
  for (let i = 0; i < out.length; i++) {
    if (!Number.isNaN(spare)) {
      out[i] = spare;
      spare = NaN;
      continue;
    }
    let v1: number;
    let v2: number;
    let s: number;
    do {
      v1 = 2 * random() - 1;
      v2 = 2 * random() - 1;
      s = v1 * v1 + v2 * v2;
    } while (s >= 1 || s === 0);
    const mul = Math.sqrt((-2.0 * Math.log(s)) / s);
    out[i] = mean + stddev * v1 * mul;
    spare = mean + stddev * v2 * mul;
  }
  return out;
}
