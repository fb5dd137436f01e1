/**
 * A small ONNX graph builder over onnx-proto's protobuf classes: named inputs/outputs, float32 and
 * int64 initializers, nodes with auto-named outputs, and `encode()` to the ModelProto bytes
 * onnxruntime loads. Only what src/onnx/export.ts needs (opset 17, float32 activations).
 */
import onnxProto from 'onnx-proto';
import { endianness } from 'node:os';
import { InternalError } from '../errors.ts';

const { onnx } = onnxProto;

/** ONNX default-domain opset: 17 is the first with LayerNormalization. */
export const OPSET = 17;
/** IR version 8 goes with opset 17 (ONNX 1.12). */
const IR_VERSION = 8;

export type ElemType = 'float32' | 'int32' | 'int64';
/** A dimension: a fixed size or a symbolic name (batch rows, sequence length, ...). */
export type Dim = number | string;
export type AttrValue = number | number[] | { float: number };

const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
};

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function valueInfo(name: string, elem: ElemType, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM[elem],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new InternalError(`ONNX attribute '${name}': ${value} is not an integer; wrap floats as { float }`);
    return { name, type: T.INT, i: value };
  }
  return { name, type: T.FLOAT, f: value.float };
}

export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(readonly name: string) {
    // raw_data is little-endian by the ONNX spec; our typed arrays are in the host's order.
    if (endianness() !== 'LE') throw new InternalError('ONNX export needs a little-endian host');
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new InternalError(`ONNX graph '${this.name}': name '${name}' is used twice`);
    this.names.add(name);
    return name;
  }

  input(name: string, elem: ElemType, dims: Dim[]): string {
    this.inputs.push(valueInfo(this.claim(name), elem, dims));
    return name;
  }

  /** Declares `value` (a node output) as a graph output named `name` (an Identity if renamed). */
  output(value: string, name: string, elem: ElemType, dims: Dim[]): void {
    const out = value === name ? value : this.node('Identity', [value], {}, name);
    this.outputs.push(valueInfo(out, elem, dims));
  }

  /** A float32 weight, copied into the model. */
  float(name: string, data: Float32Array, dims: number[]): string {
    if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new InternalError(`ONNX initializer '${name}': ${data.length} values for dims [${dims}]`);
    this.initializers.push({ name: this.claim(name), dims, dataType: ELEM.float32, rawData: bytesOf(Float32Array.from(data)) });
    return name;
  }

  /** An int64 constant (shapes, axes, slice bounds). */
  ints(name: string, values: number[], dims: number[] = [values.length]): string {
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    this.initializers.push({ name: this.claim(name), dims, dataType: ELEM.int64, rawData: bytesOf(data) });
    return name;
  }

  /** An int32 scalar constant (compared with int32 ids). */
  int32Scalar(name: string, value: number): string {
    this.initializers.push({ name: this.claim(name), dims: [], dataType: ELEM.int32, rawData: bytesOf(Int32Array.of(value)) });
    return name;
  }

  /** A float32 scalar constant. */
  scalar(name: string, value: number): string {
    return this.float(name, Float32Array.of(value), []);
  }

  /** Adds a node; returns its (first) output's name. `''` in `inputs` skips an optional input. */
  node(op: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputName?: string): string {
    const out = this.claim(outputName ?? `${op.toLowerCase()}_${this.counter++}`);
    this.nodes.push({
      opType: op,
      name: `${out}_node`,
      input: inputs,
      output: [out],
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return out;
  }

  /** The serialized ModelProto. */
  encode(): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'factorized-transformer',
      opsetImport: [{ domain: '', version: OPSET }],
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
