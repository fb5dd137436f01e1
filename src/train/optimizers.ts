/**
 * Adam, AdamW and Nesterov momentum (fairseq's NAG) on tf ops, with state we can save and restore
 * bit-for-bit.
 *
 * Why by hand: tfjs' own optimizers keep their slots in auto-named variables that are awkward to
 * checkpoint exactly, and cannot apply decoupled weight decay to only some weights (factor weights
 * get Frobenius decay instead, see docs/ARCHITECTURE.md §1.4). The update formulas follow torch.optim.Adam,
 * torch.optim.AdamW and fairseq.optim.nag so their numbers can be checked against PyTorch.
 */
import * as tf from '@tensorflow/tfjs';
import { UserError } from '../errors.ts';

export type OptimizerName = 'adam' | 'adamw' | 'nag';

export interface OptimizerConfig {
  name: OptimizerName;
  /** Adam β1, β2. Default [0.9, 0.999]. */
  betas?: [number, number];
  /** Adam ε. Default 1e-8. */
  eps?: number;
  /** NAG momentum. Default 0.99 (fairseq). */
  momentum?: number;
  /**
   * Weight decay for the parameters marked `decay`. adam: L2 added to the gradient (torch Adam);
   * adamw and nag: decoupled, p ← p·(1 − lr·wd). Default 0.
   */
  weightDecay?: number;
}

export interface OptimizedParam {
  /** Stable name used in the saved state (e.g. the LayerVariable's originalName). */
  name: string;
  variable: tf.Variable;
  /** Whether plain weight decay applies (false for factor weights, which get Frobenius decay). */
  decay: boolean;
}

/** What optimizer.json holds; the float32 slot buffers go to optimizer.bin in this order. */
export interface OptimizerStateMeta {
  format: 'factorized-transformer/optimizer@1';
  name: OptimizerName;
  config: Required<Omit<OptimizerConfig, 'name'>>;
  /** Number of updates applied. */
  step: number;
  /** NAG: the learning rate of the previous update (for fairseq's lr correction). */
  lrOld: number | null;
  slots: string[];
  params: { name: string; shape: number[] }[];
}

export interface OptimizerState {
  meta: OptimizerStateMeta;
  /** One buffer per (param, slot), param-major: p0.slot0, p0.slot1, p1.slot0, ... */
  buffers: Float32Array[];
}

function isSameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export class TrainOptimizer {
  readonly name: OptimizerName;
  readonly config: Required<Omit<OptimizerConfig, 'name'>>;
  private readonly params: OptimizedParam[];
  private readonly slotNames: string[];
  /** slots[i][j]: slot j of param i, a non-trainable variable updated in place. */
  private readonly slots: tf.Variable[][];
  private stepCount = 0;
  private lrOld: number | null = null;

  constructor(config: OptimizerConfig, params: OptimizedParam[]) {
    if (!['adam', 'adamw', 'nag'].includes(config.name)) {
      throw new UserError(`optimizer: unknown '${config.name}'; expected adam, adamw or nag`);
    }
    this.name = config.name;
    this.config = {
      betas: config.betas ?? [0.9, 0.999],
      eps: config.eps ?? 1e-8,
      momentum: config.momentum ?? 0.99,
      weightDecay: config.weightDecay ?? 0,
    };
    const [b1, b2] = this.config.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new UserError(`betas: expected two numbers in [0, 1), got [${b1}, ${b2}]`);
    if (!(this.config.weightDecay >= 0)) throw new UserError(`weightDecay: expected a number >= 0, got ${this.config.weightDecay}`);
    if (!(this.config.momentum >= 0 && this.config.momentum < 1)) {
      throw new UserError(`momentum: expected a number in [0, 1), got ${this.config.momentum}`);
    }
    this.params = params;
    this.slotNames = this.name === 'nag' ? ['momentum'] : ['m', 'v'];
    this.slots = params.map((p) => this.slotNames.map(() => tf.variable(tf.zerosLike(p.variable), false)));
  }

  get numUpdates(): number {
    return this.stepCount;
  }

  /** Applies one update with learning rate `lr`; `grads` is keyed by `variable.name`. */
  step(grads: Record<string, tf.Tensor>, lr: number): void {
    this.stepCount++;
    const t = this.stepCount;
    const { betas, eps, momentum, weightDecay } = this.config;
    const lrCorrect = this.lrOld === null ? 1 : lr / this.lrOld;
    // fairseq NAG: with lr 0 at the first warmup step the correction would be 0/0.
    const nagCorrect = Number.isFinite(lrCorrect) ? lrCorrect : 1;
    this.params.forEach((p, i) => {
      const grad = grads[p.variable.name];
      if (!grad) return; // a weight the loss does not reach: leave it and its state alone
      const wd = p.decay ? weightDecay : 0;
      tf.tidy(() => {
        const param = p.variable;
        if (this.name === 'nag') {
          const [buf] = this.slots[i];
          let next: tf.Tensor = param;
          if (wd > 0) next = tf.mul(next, 1 - lr * wd);
          next = tf.add(next, tf.mul(buf, momentum * momentum * nagCorrect));
          next = tf.sub(next, tf.mul(grad, (1 + momentum) * lr));
          buf.assign(tf.sub(tf.mul(buf, momentum * nagCorrect), tf.mul(grad, lr)));
          param.assign(next);
          return;
        }
        const [m, v] = this.slots[i];
        const [b1, b2] = betas;
        let g: tf.Tensor = grad;
        let base: tf.Tensor = param;
        if (this.name === 'adam' && wd > 0) g = tf.add(g, tf.mul(param, wd));
        if (this.name === 'adamw' && wd > 0) base = tf.mul(param, 1 - lr * wd);
        const mNew = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const vNew = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        const bc1 = 1 - Math.pow(b1, t);
        const bc2 = 1 - Math.pow(b2, t);
        const denom = tf.add(tf.div(tf.sqrt(vNew), Math.sqrt(bc2)), eps);
        param.assign(tf.sub(base, tf.mul(tf.div(mNew, denom), lr / bc1)));
        m.assign(mNew);
        v.assign(vNew);
      });
    });
    this.lrOld = lr;
  }

  /**
   * A copy of the state (for checkpoints). Async: the slots are read back with `data()`, as GPU
   * backends require; all reads are issued at once and the numbers are those of this moment, since
   * nothing can update the slots before the promise settles (`step` is synchronous).
   */
  async getState(): Promise<OptimizerState> {
    const slots = this.slots.flat();
    const values = await Promise.all(slots.map((slot) => slot.data() as Promise<Float32Array>));
    // data() may hand out the backend's own array (cpu): copy, so later updates cannot change it.
    const buffers = values.map((v) => Float32Array.from(v));
    return {
      meta: {
        format: 'factorized-transformer/optimizer@1',
        name: this.name,
        config: this.config,
        step: this.stepCount,
        lrOld: this.lrOld,
        slots: this.slotNames,
        params: this.params.map((p) => ({ name: p.name, shape: p.variable.shape })),
      },
      buffers,
    };
  }

  /** Restores a saved state; `where` names the file for error messages. */
  setState(state: OptimizerState, where = 'optimizer.json'): void {
    const { meta, buffers } = state;
    if (meta.name !== this.name) {
      throw new UserError(`${where}: optimizer is '${meta.name}' but the run is configured with '${this.name}'`);
    }
    if (meta.params.length !== this.params.length) {
      throw new UserError(`${where}: state for ${meta.params.length} weights, the model has ${this.params.length}`);
    }
    meta.params.forEach((saved, i) => {
      const shape = this.params[i].variable.shape;
      if (!isSameShape(saved.shape, shape)) {
        throw new UserError(`${where}: weight ${i} (${saved.name}) has shape [${saved.shape}], the model's is [${shape}]`);
      }
    });
    if (buffers.length !== this.params.length * this.slotNames.length) {
      throw new UserError(`${where}: expected ${this.params.length * this.slotNames.length} slot buffers, got ${buffers.length}`);
    }
    this.slots.forEach((row, i) =>
      row.forEach((slot, j) => {
        const buf = buffers[i * this.slotNames.length + j];
        if (buf.length !== slot.size) throw new UserError(`${where}: slot buffer of ${meta.params[i].name} has the wrong size`);
        tf.tidy(() => slot.assign(tf.tensor(buf, slot.shape, 'float32')));
      }),
    );
    this.stepCount = meta.step;
    this.lrOld = meta.lrOld;
  }

  dispose(): void {
    for (const row of this.slots) for (const slot of row) slot.dispose();
  }
}
