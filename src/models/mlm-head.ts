/**
 * The masked-LM head of BERT: gather the hidden states at the masked positions, transform them
 * (dense + GELU + layer norm) and project onto the vocabulary with the input embedding matrix
 * (tied weights) plus an output bias.
 *
 * The gather comes first so that the vocabulary projection — the costliest matmul of a small BERT
 * (d × V per token) — runs only for the ~15 % of positions that are predicted.
 */
import * as tf from '@tensorflow/tfjs';
import type { TokenEmbedding } from './embedding.ts';
import type { LayerArgs } from '../layer-args.ts';
import { layerNorm } from './sublayers.ts';
import { globalRandom } from '../random.ts';
import { asComputedMask, passThroughMask } from '../attention/keras-mask.ts';

function single(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(inputs) ? inputs[0] : inputs;
}

/**
 * `[hidden [B, T, d], positions [B, P] int32]` → `[B, P, d]`: the hidden state of each listed
 * position of its own row. Padding entries of `positions` may point anywhere inside the row.
 */
export class GatherPositions extends tf.layers.Layer {
  static readonly className = 'GatherPositions';

  constructor(args?: LayerArgs) {
    super(args ?? {});
    // Accepts a Keras mask on `hidden` and drops it: output row p is the position `positions[p]`
    // names, not position p, and padding entries of `positions` are the labels' business.
    this.supportsMasking = true;
  }

  override computeMask(_inputs: tf.Tensor | tf.Tensor[], _mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return asComputedMask(null);
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape {
    const [hidden, positions] = inputShape as tf.Shape[];
    return [positions[0], positions[1], hidden[2]];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const [hidden, positions] = inputs as tf.Tensor[];
      const [batch, length, dim] = hidden.shape as [number, number, number];
      const predictions = positions.shape[1] as number;
      // Row b's position t lives at b·T + t of the flattened [B·T, d] view.
      const rowOffsets = tf.mul(tf.range(0, batch, 1, 'int32'), tf.scalar(length, 'int32')).reshape([batch, 1]);
      const flat = tf.add(tf.cast(positions, 'int32'), rowOffsets).reshape([batch * predictions]);
      return tf.gather(hidden.reshape([batch * length, dim]), flat).reshape([batch, predictions, dim]);
    });
  }
}
tf.serialization.registerClass(GatherPositions);

/** Adds a learned bias over the last axis (the vocabulary bias of the MLM head). */
export class OutputBias extends tf.layers.Layer {
  static readonly className = 'OutputBias';
  bias!: tf.LayerVariable;

  constructor(args?: LayerArgs) {
    super(args ?? {});
    this.supportsMasking = true; // per position
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return passThroughMask(inputs, mask);
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tf.Shape;
    this.bias = this.addWeight('bias', [shape[shape.length - 1] as number], 'float32', tf.initializers.zeros());
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => tf.add(single(inputs), this.bias.read()));
  }
}
tf.serialization.registerClass(OutputBias);

export interface MaskedLMHeadConfig {
  modelDim: number;
  /** Layer-name prefix, so that several heads can live in one model. */
  name?: string;
}

/**
 * BERT's MLM head, built from layers so that the whole model stays a functional, serializable
 * tf.LayersModel: `apply(hidden, positions)` returns symbolic logits `[B, P, V]`.
 * The projection is the encoder's `TokenEmbedding` applied to hidden states (same weights: tied).
 */
export class MaskedLMHead {
  readonly gather: GatherPositions;
  readonly transform: tf.layers.Layer;
  readonly layerNorm: tf.layers.Layer;
  readonly outputBias: OutputBias;

  constructor(
    config: MaskedLMHeadConfig,
    private readonly embedding: TokenEmbedding,
  ) {
    const prefix = config.name ?? 'mlm_head';
    this.gather = new GatherPositions({ name: `${prefix}_gather` });
    this.transform = tf.layers.dense({
      units: config.modelDim,
      activation: 'gelu',
      // Seeded from the process stream like every other weight, so a run's seed fixes its whole init.
      kernelInitializer: tf.initializers.truncatedNormal({ stddev: 0.02, seed: globalRandom.nextSeed() }),
      name: `${prefix}_transform`,
    });
    this.layerNorm = layerNorm(`${prefix}_norm`);
    this.outputBias = new OutputBias({ name: `${prefix}_output_bias` });
  }

  /**
   * Starts the vocabulary bias at the data's log unigram probabilities, so the untrained head
   * already predicts token frequencies and training spends its first updates on context instead
   * of on base rates (with Adam, a bias moves about lr per update: from 0 to log p ≈ −8 would take
   * thousands of updates). Call after the model is built.
   */
  setOutputBias(values: Float32Array): void {
    const bias = this.outputBias.bias;
    if (!bias || values.length !== bias.shape[0]) {
      throw new Error(`MaskedLMHead.setOutputBias: expected ${bias?.shape[0]} values, got ${values.length}`);
    }
    const t = tf.tensor1d(values);
    bias.write(t);
    t.dispose();
  }

  apply(hidden: tf.SymbolicTensor, positions: tf.SymbolicTensor): tf.SymbolicTensor {
    const gathered = this.gather.apply([hidden, positions]) as tf.SymbolicTensor;
    const transformed = this.layerNorm.apply(this.transform.apply(gathered)) as tf.SymbolicTensor;
    const logits = this.embedding.apply(transformed) as tf.SymbolicTensor;
    return this.outputBias.apply(logits) as tf.SymbolicTensor;
  }
}

/** Sums over the real (non-pad) predictions of one batch. */
export interface MaskedPredictionScores {
  /** Σ −log p(label) over the real predictions. */
  sumNll: number;
  /** Number of real predictions (labels ≠ padId). */
  count: number;
  /** How many real predictions have their label as the arg-max. */
  correct: number;
}

/**
 * Scores MLM logits `[B, P, V]` against labels `[B, P]` (padding entries hold `padId`), with a
 * numerically stable log-softmax. Used by evaluation; training uses the trainer's cross-entropy.
 * Reads its results with `await data()`: GPU backends cannot read synchronously.
 */
export async function scoreMaskedPredictions(logits: tf.Tensor, labels: Int32Array, padId: number): Promise<MaskedPredictionScores> {
  const vocab = logits.shape[logits.shape.length - 1] as number;
  const n = labels.length;
  if (logits.size !== n * vocab) throw new Error(`scoreMaskedPredictions: logits [${logits.shape}] do not match ${n} labels`);
  const [nllT, argmaxT] = tf.tidy(() => {
    const flat = logits.reshape([n, vocab]);
    const logProbs = tf.logSoftmax(flat);
    const safeLabels = tf.tensor1d(Array.from(labels, (id) => (id === padId ? 0 : id)), 'int32');
    const flatIndex = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(vocab, 'int32')), safeLabels);
    const nll = tf.neg(tf.gather(logProbs.reshape([n * vocab]), flatIndex));
    return [nll, tf.argMax(flat, 1)];
  });
  const [nll, argmax] = await Promise.all([nllT.data(), argmaxT.data()]);
  tf.dispose([nllT, argmaxT]);
  let sumNll = 0;
  let count = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    if (labels[i] === padId) continue;
    sumNll += nll[i];
    count++;
    if (argmax[i] === labels[i]) correct++;
  }
  return { sumNll, count, correct };
}
