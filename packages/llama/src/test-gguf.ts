// Test helpers (not part of the package): GGUF files rewritten in memory (metadata changed, split as llama.cpp's gguf-split does).
import { GGUFValueType, openGGUF, type GGMLType, type GGUFValue } from '@rama/checkpoint';

/** A metadata value with its GGUF type spelled out (for keys such as split.no, a u16). */
export interface Typed {
  type: number;
  value: number;
}

export type WriteValue = GGUFValue | Typed;

export interface WriteTensor {
  name: string;
  ne: readonly number[];
  type: GGMLType;
  data: Uint8Array;
}

/** A GGUF file's metadata in order and its tensors with their raw bytes. */
export interface GGUFContents {
  metadata: [string, WriteValue][];
  tensors: WriteTensor[];
}

/** Reads a whole GGUF file (path or bytes) into memory. */
export async function readGGUFContents(source: string | Uint8Array): Promise<GGUFContents> {
  const file = await openGGUF(source);
  try {
    const tensors: WriteTensor[] = [];
    for (const t of file.tensors.values()) {
      const data = new Uint8Array(t.byteLength);
      await file.readInto(t, data);
      tensors.push({ name: t.name, ne: t.ne, type: t.type, data });
    }
    return { metadata: [...file.metadata], tensors };
  } finally {
    await file.close();
  }
}

class Writer {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // room() may replace buf and view: call it before reading them.
  u8(v: number) { const at = this.room(1); this.view.setUint8(at, v); }
  u32(v: number) { const at = this.room(4); this.view.setUint32(at, v, true); }
  u64(v: number | bigint) { const at = this.room(8); this.view.setBigUint64(at, BigInt(v), true); }
  raw(b: Uint8Array) { const at = this.room(b.length); this.buf.set(b, at); }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.raw(b);
  }
  bytes(): Uint8Array { return this.buf.subarray(0, this.length); }
}

const T = GGUFValueType;

/** The GGUF type a value is written as: integers as u32 (i32 when negative), other numbers as f32. */
function typeOf(v: WriteValue): number {
  if (typeof v === 'object' && v !== null && 'type' in v && !ArrayBuffer.isView(v) && !Array.isArray(v)) return (v as Typed).type;
  if (typeof v === 'string') return T.STRING;
  if (typeof v === 'boolean') return T.BOOL;
  if (typeof v === 'bigint') return v < 0n ? T.INT64 : T.UINT64;
  if (typeof v === 'number') return Number.isInteger(v) ? (v < 0 ? T.INT32 : v < 2 ** 32 ? T.UINT32 : T.UINT64) : T.FLOAT32;
  return T.ARRAY;
}

function writeScalar(w: Writer, type: number, v: unknown): void {
  const b = new Uint8Array(8);
  const d = new DataView(b.buffer);
  switch (type) {
    case T.UINT8: case T.INT8: return w.u8(Number(v) & 0xff);
    case T.UINT16: d.setUint16(0, Number(v), true); return w.raw(b.subarray(0, 2));
    case T.INT16: d.setInt16(0, Number(v), true); return w.raw(b.subarray(0, 2));
    case T.UINT32: return w.u32(Number(v));
    case T.INT32: d.setInt32(0, Number(v), true); return w.raw(b.subarray(0, 4));
    case T.FLOAT32: d.setFloat32(0, Number(v), true); return w.raw(b.subarray(0, 4));
    case T.BOOL: return w.u8(v ? 1 : 0);
    case T.STRING: return w.str(String(v));
    case T.UINT64: d.setBigUint64(0, BigInt(v as number), true); return w.raw(b);
    case T.INT64: d.setBigInt64(0, BigInt(v as number), true); return w.raw(b);
    case T.FLOAT64: d.setFloat64(0, Number(v), true); return w.raw(b);
  }
  throw new Error(`cannot write GGUF type ${type}`);
}

function arrayType(v: ArrayLike<unknown>): number {
  if (v instanceof Uint8Array) return T.UINT8;
  if (v instanceof Int8Array) return T.INT8;
  if (v instanceof Uint16Array) return T.UINT16;
  if (v instanceof Int16Array) return T.INT16;
  if (v instanceof Uint32Array) return T.UINT32;
  if (v instanceof Int32Array) return T.INT32;
  if (v instanceof Float32Array) return T.FLOAT32;
  if (v instanceof Float64Array) return T.FLOAT64;
  if (v instanceof BigInt64Array) return T.INT64;
  if (v instanceof BigUint64Array) return T.UINT64;
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return T.STRING;
  throw new Error('cannot write this metadata array');
}

function writeValue(w: Writer, v: WriteValue): void {
  const type = typeOf(v);
  w.u32(type);
  if (type !== T.ARRAY) return writeScalar(w, type, typeof v === 'object' && !ArrayBuffer.isView(v) && !Array.isArray(v) ? (v as Typed).value : v);
  const arr = v as ArrayLike<unknown>;
  const et = arrayType(arr);
  w.u32(et);
  w.u64(arr.length);
  for (let i = 0; i < arr.length; i++) writeScalar(w, et, arr[i]);
}

/** A GGUF v3 file: metadata, tensor infos, then each tensor's data aligned to `alignment`. */
export function encodeGGUF(c: GGUFContents, alignment = 32): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  w.raw(new TextEncoder().encode('GGUF'));
  w.u32(3);
  w.u64(c.tensors.length);
  w.u64(c.metadata.length);
  for (const [k, v] of c.metadata) {
    w.str(k);
    writeValue(w, v);
  }
  const offsets: number[] = [];
  let off = 0;
  for (const t of c.tensors) {
    offsets.push(off);
    off = Math.ceil((off + t.data.length) / alignment) * alignment;
  }
  c.tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.ne.length);
    for (const n of t.ne) w.u64(n);
    w.u32(t.type.id);
    w.u64(offsets[i]);
  });
  const head = w.bytes();
  const start = Math.ceil(head.length / alignment) * alignment;
  const out = new Uint8Array(start + off);
  out.set(head);
  c.tensors.forEach((t, i) => out.set(t.data, start + offsets[i]));
  return out;
}

/** `c` with metadata keys set (added at the end when new) or, for an undefined value, removed. */
export function withMetadata(c: GGUFContents, changes: Record<string, WriteValue | undefined>): GGUFContents {
  const metadata = c.metadata.filter(([k]) => !(k in changes) || changes[k] !== undefined).map(([k, v]): [string, WriteValue] => [k, k in changes ? changes[k]! : v]);
  for (const [k, v] of Object.entries(changes)) if (v !== undefined && !metadata.some(([m]) => m === k)) metadata.push([k, v]);
  return { metadata, tensors: c.tensors };
}

/**
 * Splits a model as llama.cpp's gguf-split does: `parts` lists the tensor
 * counts of each split; the first carries all metadata, every split carries
 * split.no (u16), split.count (u16) and split.tensors.count (i32).
 */
export function splitGGUF(c: GGUFContents, parts: readonly number[]): GGUFContents[] {
  const out: GGUFContents[] = [];
  let at = 0;
  parts.forEach((n, i) => {
    const split: [string, WriteValue][] = [
      ['split.no', { type: T.UINT16, value: i }],
      ['split.count', { type: T.UINT16, value: parts.length }],
      ['split.tensors.count', { type: T.INT32, value: c.tensors.length }],
    ];
    out.push({ metadata: i === 0 ? [...c.metadata, ...split] : split, tensors: c.tensors.slice(at, at + n) });
    at += n;
  });
  return out;
}
