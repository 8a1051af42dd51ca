/**
 * safetensors (Hugging Face's weight format): a u64 little-endian header
 * length N, N bytes of JSON — `{ "__metadata__": { string: string },
 * name: { "dtype", "shape", "data_offsets": [begin, end] } }` — then the data,
 * offsets relative to its start, row-major. The header is validated against
 * the file size before anything is read; tensor data is read on demand.
 */
import { ArgumentError, FormatError, fmtBytes, type ByteSource } from '@rama/core';
import { openModelSource } from './gguf.js';

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPES: Readonly<Record<string, number>> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, I64: 8, U64: 8, F64: 8,
};

/** Largest header accepted (the format's own reference implementation caps it at 100 MB). */
export const MAX_SAFETENSORS_HEADER = 100_000_000;

/** One tensor of a safetensors file. */
export interface SafetensorsTensor {
  /** Its name, e.g. model.layers.0.self_attn.q_proj.weight. */
  readonly name: string;
  /** safetensors' dtype: F32, F16, BF16, ... (SAFETENSORS_DTYPES). */
  readonly dtype: string;
  /** Row-major dimensions (PyTorch's order: a Linear's weight is [out, in]). */
  readonly shape: readonly number[];
  /** Elements (the product of shape). */
  readonly elements: number;
  /** Absolute offset of its first byte in the file. */
  readonly byteOffset: number;
  /** Bytes. */
  readonly byteLength: number;
}

/** An open safetensors file: its header, checked against the file size; data is read on demand. */
export interface SafetensorsFile {
  /** The name used in error messages. */
  readonly source: string;
  /** Bytes. */
  readonly fileSize: number;
  /** `__metadata__` (strings), empty when absent. */
  readonly metadata: ReadonlyMap<string, string>;
  /** Tensors by name, in data order. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
  /** Copies a tensor's raw bytes (or `dst.byteLength` of them from `offset`). */
  readInto(t: SafetensorsTensor, dst: Uint8Array, offset?: number): Promise<void>;
  /** Releases the file handle. Safe to call twice. */
  close(): Promise<void>;
}

/** Opens and validates a safetensors file from a path (Node), a Blob or bytes. */
export async function openSafetensors(source: string | Blob | ArrayBuffer | Uint8Array, opts: { name?: string } = {}): Promise<SafetensorsFile> {
  const { src, name } = await openModelSource(source, { name: opts.name, what: 'safetensors file' });
  try {
    return await readSafetensors(src, name);
  } catch (e) {
    await src.close().catch(() => {});
    throw e;
  }
}

/** Parses a safetensors file from an open ByteSource (which the returned file then owns). */
export async function readSafetensors(src: ByteSource, name: string): Promise<SafetensorsFile> {
  const fail = (msg: string): never => {
    throw new FormatError(`${name}: ${msg}`);
  };
  const size = src.size;
  if (size < 8) fail(`is ${size} bytes, too short for a safetensors file (an 8-byte header length first)`);
  const head = new Uint8Array(8);
  await src.readAt(head, 0);
  const n = new DataView(head.buffer).getBigUint64(0, true);
  if (n > BigInt(size - 8)) fail(`says its header is ${n} bytes, more than the ${fmtBytes(size - 8)} bytes after the length: not a safetensors file, or truncated`);
  if (n > BigInt(MAX_SAFETENSORS_HEADER)) fail(`says its header is ${n} bytes, more than the ${fmtBytes(MAX_SAFETENSORS_HEADER)} accepted`);
  const headerLength = Number(n);
  const bytes = new Uint8Array(headerLength);
  await src.readAt(bytes, 8);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    fail(`its header is not UTF-8 JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('its header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = size - dataStart;
  const metadata = new Map<string, string>();
  const list: SafetensorsTensor[] = [];
  for (const [key, v] of Object.entries(json as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail('__metadata__ is not an object');
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== 'string') fail(`__metadata__.${k} is not a string`);
        metadata.set(k, s as string);
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (t === null || typeof t !== 'object') fail(`tensor ${key} is not an object`);
    const width = typeof t!.dtype === 'string' ? SAFETENSORS_DTYPES[t!.dtype] : undefined;
    if (width === undefined) fail(`tensor ${key} has dtype ${JSON.stringify(t!.dtype)}, not a safetensors dtype`);
    const shape = t!.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor ${key} has shape ${JSON.stringify(shape)}, expected non-negative integers`);
    const elements = (shape as number[]).reduce((a, d) => a * d, 1);
    const off = t!.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0) || off[1] < off[0]) {
      fail(`tensor ${key} has data_offsets ${JSON.stringify(off)}, expected [begin, end]`);
    }
    const [begin, end] = off as [number, number];
    if (end - begin !== elements * width!) fail(`tensor ${key} (${t!.dtype} [${(shape as number[]).join(', ')}]) needs ${elements * width!} bytes, its data_offsets span ${end - begin}`);
    if (end > dataLength) fail(`tensor ${key} ends at byte ${end} of the data, past its end (${dataLength} bytes): truncated?`);
    list.push({ name: key, dtype: t!.dtype as string, shape: shape as number[], elements, byteOffset: dataStart + begin, byteLength: end - begin });
  }
  list.sort((a, b) => a.byteOffset - b.byteOffset);
  for (let i = 1; i < list.length; i++) {
    const p = list[i - 1];
    if (list[i].byteOffset < p.byteOffset + p.byteLength) fail(`tensors ${p.name} and ${list[i].name} overlap`);
  }
  const tensors = new Map(list.map((t) => [t.name, t]));
  let closed = false;
  return {
    source: name,
    fileSize: size,
    metadata,
    tensors,
    async readInto(t, dst, offset = 0) {
      if (closed) throw new ArgumentError(`${name}: the file is closed`);
      if (tensors.get(t.name) !== t) throw new ArgumentError(`${name}: readInto(${t.name}): not a tensor of this file`);
      if (offset < 0 || offset + dst.byteLength > t.byteLength) throw new ArgumentError(`${name}: readInto(${t.name}): bytes ${offset}..${offset + dst.byteLength} outside its ${t.byteLength}`);
      await src.readAt(dst, t.byteOffset + offset);
    },
    async close() {
      closed = true;
      await src.close();
    },
  };
}
