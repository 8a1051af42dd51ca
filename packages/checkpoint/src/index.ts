/**
 * @rama/checkpoint: reads llama2.c checkpoints (legacy v0, v1 fp32 and v2
 * Q8_0). The header is validated against the real file size before anything
 * big is allocated; tensors are then read one at a time, straight into memory
 * the caller provides (a backend's heap or a mapped GPU buffer).
 */
import { ArgumentError } from '@rama/core';
import { parseHeader, HEADER_BYTES, type CheckpointFormat, type CheckpointLayout, type ModelConfig, type TensorEntry } from './header.js';
import { blobSource, bufferSource, openFileSource, type ByteSource } from './source.js';

export { parseHeader, fmtBytes, MAGIC, HEADER_BYTES, V0_HEADER_BYTES, MAX_V0_DIM, MAX_LAYERS } from './header.js';
export type { CheckpointFormat, CheckpointLayout, ModelConfig, TensorEntry } from './header.js';
// openFileSource now lives in @rama/core/node; re-exported for existing callers.
export { openFileSource, type ByteSource, type OpenFileOptions } from './source.js';
export {
  openGGUF, readGGUF, isGGUF, openModelSource, ggmlTypeName, GGML_TYPES, GGUFValueType, GGUF_MAGIC, GGUF_DEFAULT_ALIGNMENT, GGUF_MAX_ARRAY_DEPTH,
} from './gguf.js';
export type { GGUFFile, GGUFTensorInfo, GGUFValue, GGMLType, OpenGGUFOptions } from './gguf.js';
export { ggmlToF32, ggmlToQ80, q80GroupSizeOf, convertsToF32, f16At } from './gguf-convert.js';
export { openGGUFSplits, joinSplits, ggufSplitPaths, type GGUFSource } from './gguf-split.js';
export { openSafetensors, readSafetensors, SAFETENSORS_DTYPES, MAX_SAFETENSORS_HEADER } from './safetensors.js';
export type { SafetensorsFile, SafetensorsTensor } from './safetensors.js';

/** A Q8_0 tensor as separate arrays: int8 values row-major and one f32 scale per group. */
export interface Q80Data {
  /** The int8 values, row-major. */
  q: Int8Array;
  /** One f32 scale per group. */
  scales: Float32Array;
}

/** An open llama2.c checkpoint: its header, checked against the file size, and its tensor table. */
export interface Checkpoint {
  /** The name used in error messages (the path, a File's name, or opts.name). */
  readonly source: string;
  /** Which llama2.c version the file is. */
  readonly format: CheckpointFormat;
  /** The model's dimensions. */
  readonly config: ModelConfig;
  /** v2 only: elements per quantization group. */
  readonly groupSize?: number;
  /** Bytes. */
  readonly fileSize: number;
  /**
   * Tensors by name, in file order: "tok_embeddings", "rms_final", "wcls"
   * (absent when the classifier is shared) and, per layer l,
   * "layers.{l}.rms_att", ".wq", ".wk", ".wv", ".wo", ".rms_ffn", ".w1", ".w2", ".w3".
   */
  readonly tensors: Map<string, TensorEntry>;
  /** Copies a tensor's bytes (standard layout) into dst; dst.byteLength must equal entry.byteLength. */
  readInto(entry: TensorEntry, dst: Uint8Array): Promise<void>;
  /** A fresh typed array per call: Float32Array for f32, { q, scales } for q8_0. */
  read(name: string): Promise<Float32Array | Q80Data>;
  /** Releases the file handle. Reads afterwards fail. Safe to call twice. */
  close(): Promise<void>;
}

/** Options of `openCheckpoint`. */
export interface OpenOptions {
  /** Name for error messages (default: the path, a File's name, "<blob>" or "<buffer>"). */
  name?: string;
  /** Largest single read, in bytes (default 1 GiB for files). Mainly for tests. */
  chunkSize?: number;
}

function isBlob(x: unknown): x is Blob {
  return typeof Blob !== 'undefined' && x instanceof Blob;
}

/**
 * Opens a checkpoint from a path (Node only), a Blob/File, or bytes in memory,
 * reads and validates its header, and returns the tensor table. Throws
 * FormatError for anything malformed.
 */
export async function openCheckpoint(
  source: string | Blob | ArrayBuffer | Uint8Array,
  opts: OpenOptions = {},
): Promise<Checkpoint> {
  let src: ByteSource;
  let name: string;
  if (typeof source === 'string') {
    name = opts.name ?? source;
    src = await openFileSource(source, { name, what: 'checkpoint', chunkSize: opts.chunkSize });
  } else if (isBlob(source)) {
    const fileName = (source as Blob & { name?: unknown }).name;
    name = opts.name ?? (typeof fileName === 'string' && fileName ? fileName : '<blob>');
    src = blobSource(source, name, opts.chunkSize);
  } else if (source instanceof Uint8Array) {
    name = opts.name ?? '<buffer>';
    src = bufferSource(source, name);
  } else if (source instanceof ArrayBuffer) {
    name = opts.name ?? '<buffer>';
    src = bufferSource(new Uint8Array(source), name);
  } else {
    throw new ArgumentError(`openCheckpoint: expected a path, Blob, ArrayBuffer or Uint8Array, got ${Object.prototype.toString.call(source)}`);
  }

  let layout: CheckpointLayout;
  try {
    const head = new Uint8Array(Math.min(HEADER_BYTES, src.size));
    await src.readAt(head, 0);
    layout = parseHeader(head, src.size, name);
  } catch (e) {
    await src.close().catch(() => {});
    throw e;
  }

  const { tensors } = layout;
  const fileSize = src.size;

  const readInto = async (entry: TensorEntry, dst: Uint8Array): Promise<void> => {
    if (!(dst instanceof Uint8Array) || dst.byteLength !== entry.byteLength) {
      throw new ArgumentError(
        `${name}: readInto(${entry.label}): destination has ${dst?.byteLength} bytes, the tensor has ${entry.byteLength}`,
      );
    }
    if (!(entry.byteOffset >= 0 && entry.byteOffset + entry.byteLength <= fileSize)) {
      throw new ArgumentError(
        `${name}: readInto(${entry.label}): bytes ${entry.byteOffset}..${entry.byteOffset + entry.byteLength} lie outside the ${fileSize}-byte file`,
      );
    }
    await src.readAt(dst, entry.byteOffset);
  };

  const read = async (tensorName: string): Promise<Float32Array | Q80Data> => {
    const entry = tensors.get(tensorName);
    if (!entry) {
      throw new ArgumentError(`${name}: no tensor named "${tensorName}" (has ${tensors.size}, e.g. tok_embeddings, layers.0.wq, rms_final)`);
    }
    const buf = new ArrayBuffer(entry.byteLength);
    await readInto(entry, new Uint8Array(buf));
    if (entry.dtype === 'f32') return new Float32Array(buf);
    const n = entry.shape.reduce((a, b) => a * b, 1);
    const ns = n / (entry.groupSize as number);
    const q = new Int8Array(buf, 0, n);
    const scales = n % 4 === 0 ? new Float32Array(buf, n, ns) : new Float32Array(buf.slice(n, n + 4 * ns));
    return { q, scales };
  };

  const ckpt: Checkpoint = {
    source: name,
    format: layout.format,
    config: layout.config,
    ...(layout.groupSize !== undefined ? { groupSize: layout.groupSize } : {}),
    fileSize,
    tensors,
    readInto,
    read,
    close: () => src.close(),
  };
  return ckpt;
}
