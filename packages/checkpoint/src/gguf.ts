/**
 * GGUF (llama.cpp's model format, versions 2 and 3): header, metadata and
 * tensor table, read progressively from a ByteSource and validated against
 * the file's size before anything large is allocated. Tensor data is not
 * read here: `readInto` copies one tensor's raw ggml bytes on demand.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64
 * metadata count; metadata as (string key, u32 type, value); tensor infos as
 * (string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset); then
 * padding to `general.alignment` (default 32) and the data section, where
 * each tensor's offset (relative to the section) is aligned. A string is a
 * u64 byte length and UTF-8 bytes; an array is a u32 element type, a u64
 * count and the elements.
 */
import { ArgumentError, FormatError, fmtBytes, type ByteSource } from '@rama/core';
import { blobSource, bufferSource, openFileSource } from './source.js';

/** The first four bytes of every GGUF file. */
export const GGUF_MAGIC = 'GGUF';
/** Alignment of the data section and of each tensor when `general.alignment` is absent. */
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** Deepest nesting of arrays accepted in metadata (real files nest at most 1). */
export const GGUF_MAX_ARRAY_DEPTH = 8;

/** Metadata value types (gguf_type). */
export const GGUFValueType = {
  /** uint8 */
  UINT8: 0,
  /** int8 */
  INT8: 1,
  /** uint16, little-endian (as every value) */
  UINT16: 2,
  /** int16 */
  INT16: 3,
  /** uint32 */
  UINT32: 4,
  /** int32 */
  INT32: 5,
  /** float32 */
  FLOAT32: 6,
  /** one byte, 0 or 1 */
  BOOL: 7,
  /** uint64 length, then UTF-8 bytes */
  STRING: 8,
  /** element type (uint32), uint64 count, then the elements */
  ARRAY: 9,
  /** uint64 */
  UINT64: 10,
  /** int64 */
  INT64: 11,
  /** float64 */
  FLOAT64: 12,
} as const;

/**
 * A metadata value. Integers and floats are numbers (64-bit integers as a
 * bigint when beyond 2^53); arrays of numbers are typed arrays (bool arrays
 * a Uint8Array of 0/1, 64-bit integers BigInt64Array/BigUint64Array);
 * arrays of strings are string[]; arrays of arrays are arrays of values.
 */
export type GGUFValue =
  | number | bigint | boolean | string
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array
  | BigInt64Array | BigUint64Array
  | string[] | GGUFValue[];

/** A ggml tensor type: its name, elements per block and bytes per block (ggml_type_traits). */
export interface GGMLType {
  /** The id GGUF's tensor table stores. */
  readonly id: number;
  /** llama.cpp's name: F32, F16, Q8_0, Q4_K, ... */
  readonly name: string;
  /** Elements per block (1 for plain types, 32 or 256 for quantized ones). */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly bytesPerBlock: number;
}

const TYPES: readonly GGMLType[] = [
  [0, 'F32', 1, 4], [1, 'F16', 1, 2], [2, 'Q4_0', 32, 18], [3, 'Q4_1', 32, 20], [6, 'Q5_0', 32, 22], [7, 'Q5_1', 32, 24],
  [8, 'Q8_0', 32, 34], [9, 'Q8_1', 32, 36], [10, 'Q2_K', 256, 84], [11, 'Q3_K', 256, 110], [12, 'Q4_K', 256, 144],
  [13, 'Q5_K', 256, 176], [14, 'Q6_K', 256, 210], [15, 'Q8_K', 256, 292], [24, 'I8', 1, 1], [25, 'I16', 1, 2],
  [26, 'I32', 1, 4], [27, 'I64', 1, 8], [28, 'F64', 1, 8], [30, 'BF16', 1, 2],
].map(([id, name, blockSize, bytesPerBlock]) => Object.freeze({ id, name, blockSize, bytesPerBlock }) as GGMLType);

/** The ggml types this reader knows the layout of, by id. */
export const GGML_TYPES: ReadonlyMap<number, GGMLType> = new Map(TYPES.map((t) => [t.id, t]));

/** Names of ggml types that exist but whose layout this reader does not describe (for error messages). */
const OTHER_TYPE_NAMES: Record<number, string> = {
  4: 'Q4_2 (removed from ggml)', 5: 'Q4_3 (removed from ggml)', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S',
  20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 29: 'IQ1_M', 31: 'Q4_0_4_4 (removed)', 32: 'Q4_0_4_8 (removed)',
  33: 'Q4_0_8_8 (removed)', 34: 'TQ1_0', 35: 'TQ2_0', 36: 'IQ4_NL_4_4 (removed)', 37: 'IQ4_NL_4_8 (removed)',
  38: 'IQ4_NL_8_8 (removed)', 39: 'MXFP4',
};

/** A ggml type's name for messages, known or not. */
export function ggmlTypeName(id: number): string {
  return GGML_TYPES.get(id)?.name ?? OTHER_TYPE_NAMES[id] ?? `unknown type ${id}`;
}

/** One tensor of the file. */
export interface GGUFTensorInfo {
  /** Its name in the file, e.g. blk.0.attn_q.weight. */
  readonly name: string;
  /** ggml's dimensions, fastest-varying first: a [rows, cols] matrix has ne = [cols, rows]. */
  readonly ne: readonly number[];
  /** Its ggml type. */
  readonly type: GGMLType;
  /** Elements (the product of ne). */
  readonly elements: number;
  /** Absolute offset of the tensor's first byte in the file. */
  readonly byteOffset: number;
  /** Bytes of its ggml blocks. */
  readonly byteLength: number;
}

/** An open GGUF file: its metadata and tensor table, parsed and checked; tensor data is read on demand. */
export interface GGUFFile {
  /** The name used in error messages. */
  readonly source: string;
  /** The GGUF version: 2 or 3. */
  readonly version: number;
  /** Bytes. */
  readonly fileSize: number;
  /** Alignment of the data section and tensors: `general.alignment`, or 32. */
  readonly alignment: number;
  /** Where the data section starts. */
  readonly dataOffset: number;
  /** Keys in file order. */
  readonly metadata: ReadonlyMap<string, GGUFValue>;
  /** Tensors by name, in file order. */
  readonly tensors: ReadonlyMap<string, GGUFTensorInfo>;
  /** Copies `dst.byteLength` bytes of a tensor's raw ggml data, from `offset` bytes into it (default 0). */
  readInto(t: GGUFTensorInfo, dst: Uint8Array, offset?: number): Promise<void>;
  /** Releases the file handle. Safe to call twice. */
  close(): Promise<void>;
}

/** Options of `openGGUF`. */
export interface OpenGGUFOptions {
  /** Name for error messages (default: the path, a File's name, "<blob>" or "<buffer>"). */
  name?: string;
  /** Largest single read, in bytes (files and Blobs). Mainly for tests. */
  chunkSize?: number;
  /** Bytes read at a time while parsing metadata (default 1 MiB). Mainly for tests. */
  windowSize?: number;
}

/** Whether `head` (a file's first bytes, at least 4) starts with GGUF's magic. */
export function isGGUF(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x47 && head[1] === 0x47 && head[2] === 0x55 && head[3] === 0x46;
}

function isBlob(x: unknown): x is Blob {
  return typeof Blob !== 'undefined' && x instanceof Blob;
}

/** A ByteSource for a path, Blob or bytes, and the name messages use. */
export async function openModelSource(
  source: string | Blob | ArrayBuffer | Uint8Array,
  opts: { name?: string; chunkSize?: number; what?: string } = {},
): Promise<{
  /** The open bytes. */
  src: ByteSource;
  /** The name for messages. */
  name: string;
}> {
  if (typeof source === 'string') {
    const name = opts.name ?? source;
    return { src: await openFileSource(source, { name, what: opts.what ?? 'model', chunkSize: opts.chunkSize }), name };
  }
  if (isBlob(source)) {
    const fileName = (source as Blob & { name?: unknown }).name;
    const name = opts.name ?? (typeof fileName === 'string' && fileName ? fileName : '<blob>');
    return { src: blobSource(source, name, opts.chunkSize), name };
  }
  if (source instanceof Uint8Array) return { src: bufferSource(source, opts.name ?? '<buffer>'), name: opts.name ?? '<buffer>' };
  if (source instanceof ArrayBuffer) return { src: bufferSource(new Uint8Array(source), opts.name ?? '<buffer>'), name: opts.name ?? '<buffer>' };
  throw new ArgumentError(`expected a path, Blob, ArrayBuffer or Uint8Array, got ${Object.prototype.toString.call(source)}`);
}

/** Opens and validates a GGUF file from a path (Node), a Blob or bytes. Throws FormatError for anything malformed. */
export async function openGGUF(source: string | Blob | ArrayBuffer | Uint8Array, opts: OpenGGUFOptions = {}): Promise<GGUFFile> {
  const { src, name } = await openModelSource(source, { ...opts, what: 'GGUF file' });
  try {
    return await readGGUF(src, name, opts);
  } catch (e) {
    await src.close().catch(() => {});
    throw e;
  }
}

/** Parses a GGUF file from an open ByteSource (which the returned file then owns). */
export async function readGGUF(src: ByteSource, name: string, opts: { windowSize?: number } = {}): Promise<GGUFFile> {
  const size = src.size;
  const r = new Reader(src, name, opts.windowSize ?? 1 << 20);
  const fail = (msg: string): never => {
    throw new FormatError(`${name}: ${msg}`);
  };

  if (size < 4) fail(`is ${size} bytes, too short for a GGUF file`);
  await r.need(4, 'the magic');
  const magic = r.bytes(4);
  if (!isGGUF(magic)) fail(`is not a GGUF file (starts with ${hex(magic)}, expected "GGUF")`);
  await r.need(4, 'the version');
  const version = r.u32();
  if (version === 1) fail('is GGUF version 1, which is not supported (versions 2 and 3 are; convert it with a newer llama.cpp)');
  if ((version & 0xffff) === 0 && version !== 0) {
    fail(`is a big-endian GGUF file (version ${bswap32(version)} byte-swapped), which is not supported: only little-endian files are`);
  }
  if (version !== 2 && version !== 3) fail(`has GGUF version ${version}; versions 2 and 3 are supported`);

  await r.need(16, 'the tensor and metadata counts');
  const tensorCount = r.u64('tensor count');
  const kvCount = r.u64('metadata count');
  // Each metadata entry takes at least 13 bytes (key length, type, a 1-byte value), each tensor info 32.
  if (kvCount > r.left() / 13) fail(`says it has ${kvCount} metadata entries, more than the ${fmtBytes(r.left())} bytes left can hold`);
  if (tensorCount > r.left() / 32) fail(`says it has ${tensorCount} tensors, more than the ${fmtBytes(r.left())} bytes left can hold`);

  const metadata = new Map<string, GGUFValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = await r.string(`metadata key ${i}`);
    if (metadata.has(key)) fail(`has the metadata key "${key}" twice`);
    await r.need(4, `the type of "${key}"`);
    const type = r.u32();
    metadata.set(key, await r.value(type, `metadata "${key}"`, 0));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const a = metadata.get('general.alignment');
  if (a !== undefined) {
    if (typeof a !== 'number' || !Number.isInteger(a) || a <= 0 || (a & (a - 1)) !== 0) {
      fail(`general.alignment is ${String(a)}, expected a power of two`);
    }
    alignment = a as number;
  }

  interface Raw { name: string; ne: number[]; type: GGMLType; elements: number; offset: number; byteLength: number }
  const raws: Raw[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const tname = await r.string(`tensor ${i}'s name`);
    const what = `tensor "${tname}"`;
    if (seen.has(tname)) fail(`has two tensors named "${tname}"`);
    seen.add(tname);
    await r.need(4, `${what}'s dimension count`);
    const nDims = r.u32();
    if (nDims < 1 || nDims > 4) fail(`${what} has ${nDims} dimensions; 1 to 4 are allowed`);
    await r.need(8 * nDims + 12, `${what}'s shape, type and offset`);
    const ne: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const n = r.u64(`${what} dimension ${d}`);
      if (n < 1) fail(`${what} has dimension ${d} of size ${n}; sizes must be at least 1`);
      ne.push(n);
      elements *= n;
      if (elements > size * 8) fail(`${what} has ${ne.join(' x ')}... elements, more than the ${fmtBytes(size)}-byte file can hold`);
    }
    const typeId = r.u32();
    const type = GGML_TYPES.get(typeId);
    if (!type) fail(`${what} has ggml type ${ggmlTypeName(typeId)}, which is not supported`);
    if (ne[0] % type!.blockSize !== 0) fail(`${what} is ${type!.name} with rows of ${ne[0]}, not a multiple of its block size ${type!.blockSize}`);
    const offset = r.u64(`${what}'s offset`);
    if (offset % alignment !== 0) fail(`${what}'s offset ${offset} is not a multiple of the alignment ${alignment}`);
    const byteLength = (elements / type!.blockSize) * type!.bytesPerBlock;
    raws.push({ name: tname, ne, type: type!, elements, offset, byteLength });
  }

  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  if (tensorCount > 0 && dataOffset > size) fail(`ends at byte ${size}, before its data section (at ${dataOffset})`);
  const tensors = new Map<string, GGUFTensorInfo>();
  for (const t of raws) {
    const byteOffset = dataOffset + t.offset;
    if (!(byteOffset + t.byteLength <= size)) {
      fail(`tensor "${t.name}" (${t.type.name}, ${t.ne.join(' x ')}) lies at bytes ${byteOffset}..${byteOffset + t.byteLength}, past the end of the ${fmtBytes(size)}-byte file`);
    }
    tensors.set(t.name, Object.freeze({ name: t.name, ne: Object.freeze(t.ne), type: t.type, elements: t.elements, byteOffset, byteLength: t.byteLength }));
  }
  const sorted = [...tensors.values()].sort((x, y) => x.byteOffset - y.byteOffset);
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1];
    if (sorted[i].byteOffset < p.byteOffset + p.byteLength) fail(`tensors "${p.name}" and "${sorted[i].name}" overlap`);
  }
  r.drop();

  return {
    source: name,
    version,
    fileSize: size,
    alignment,
    dataOffset,
    metadata,
    tensors,
    async readInto(t, dst, offset = 0) {
      if (!(dst instanceof Uint8Array) || !Number.isSafeInteger(offset) || offset < 0 || offset + dst.byteLength > t.byteLength) {
        throw new ArgumentError(`${name}: readInto(${t.name}): ${dst?.byteLength} bytes at ${offset} do not lie within its ${t.byteLength} bytes`);
      }
      if (tensors.get(t.name) !== t) throw new ArgumentError(`${name}: readInto(${t.name}): not a tensor of this file`);
      await src.readAt(dst, t.byteOffset + offset);
    },
    close: () => src.close(),
  };
}

const bswap32 = (v: number) => (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Fixed-size numeric value types: bytes per element and the typed array they become. */
const NUMERIC: Record<number, { bytes: number; make: (buf: ArrayBuffer) => GGUFValue }> = {
  [GGUFValueType.UINT8]: { bytes: 1, make: (b) => new Uint8Array(b) },
  [GGUFValueType.INT8]: { bytes: 1, make: (b) => new Int8Array(b) },
  [GGUFValueType.UINT16]: { bytes: 2, make: (b) => new Uint16Array(b) },
  [GGUFValueType.INT16]: { bytes: 2, make: (b) => new Int16Array(b) },
  [GGUFValueType.UINT32]: { bytes: 4, make: (b) => new Uint32Array(b) },
  [GGUFValueType.INT32]: { bytes: 4, make: (b) => new Int32Array(b) },
  [GGUFValueType.FLOAT32]: { bytes: 4, make: (b) => new Float32Array(b) },
  [GGUFValueType.BOOL]: { bytes: 1, make: (b) => new Uint8Array(b) },
  [GGUFValueType.UINT64]: { bytes: 8, make: (b) => new BigUint64Array(b) },
  [GGUFValueType.INT64]: { bytes: 8, make: (b) => new BigInt64Array(b) },
  [GGUFValueType.FLOAT64]: { bytes: 8, make: (b) => new Float64Array(b) },
};

const littleEndianHost = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * Reads the file front to back through a window of bytes: `need(n)` makes
 * sure the next n bytes are in the window (reading more from the source, or
 * failing when the file ends first); the typed reads after it are synchronous.
 */
class Reader {
  pos = 0;
  private win = new Uint8Array(0);
  private view = new DataView(this.win.buffer);
  private winStart = 0;

  constructor(private readonly src: ByteSource, private readonly name: string, private readonly windowSize: number) {}

  left(): number {
    return this.src.size - this.pos;
  }

  async need(n: number, what: string): Promise<void> {
    if (this.pos + n <= this.winStart + this.win.length) return;
    if (n > this.left()) {
      throw new FormatError(`${this.name}: is truncated: ${what} needs ${fmtBytes(n)} bytes at ${this.pos}, but the file ends at ${this.src.size}`);
    }
    const len = Math.min(Math.max(n, this.windowSize), this.left());
    this.win = new Uint8Array(len);
    await this.src.readAt(this.win, this.pos);
    this.view = new DataView(this.win.buffer);
    this.winStart = this.pos;
  }

  drop(): void {
    this.win = new Uint8Array(0);
    this.view = new DataView(this.win.buffer);
    this.winStart = this.pos;
  }

  private at(n: number): number {
    const i = this.pos - this.winStart;
    this.pos += n;
    return i;
  }

  bytes(n: number): Uint8Array {
    const i = this.at(n);
    return this.win.subarray(i, i + n);
  }

  u32(): number {
    return this.view.getUint32(this.at(4), true);
  }

  /** A u64 count, size or offset: must fit in a double exactly. */
  u64(what: string): number {
    const v = this.view.getBigUint64(this.at(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`${this.name}: ${what} is ${v}, larger than any file`);
    return Number(v);
  }

  async string(what: string): Promise<string> {
    await this.need(8, `${what}'s length`);
    const len = this.u64(`${what}'s length`);
    if (len > this.left()) throw new FormatError(`${this.name}: ${what} is ${fmtBytes(len)} bytes long, but only ${fmtBytes(this.left())} bytes are left`);
    await this.need(len, what);
    return this.decode(this.bytes(len), what);
  }

  /** The next string, when its length and bytes are both in the window; else undefined (nothing consumed). */
  private stringInWindow(what: string, i: number): string | undefined {
    const at = this.pos - this.winStart;
    if (at + 8 > this.win.length) return undefined;
    const len = this.view.getBigUint64(at, true);
    if (BigInt(at + 8) + len > BigInt(this.win.length)) return undefined;
    this.pos += 8;
    return this.decode(this.bytes(Number(len)), `${what}[${i}]`);
  }

  private decode(b: Uint8Array, what: string): string {
    let ascii = b.length <= 64;
    for (let i = 0; ascii && i < b.length; i++) if (b[i] >= 0x80) ascii = false;
    if (ascii) return String.fromCharCode(...b);
    try {
      return utf8.decode(b);
    } catch {
      throw new FormatError(`${this.name}: ${what} is not valid UTF-8`);
    }
  }

  async value(type: number, what: string, depth: number): Promise<GGUFValue> {
    const T = GGUFValueType;
    const num = NUMERIC[type];
    if (num) {
      await this.need(num.bytes, what);
      const i = this.at(num.bytes);
      const v = this.view;
      switch (type) {
        case T.UINT8: return v.getUint8(i);
        case T.INT8: return v.getInt8(i);
        case T.UINT16: return v.getUint16(i, true);
        case T.INT16: return v.getInt16(i, true);
        case T.UINT32: return v.getUint32(i, true);
        case T.INT32: return v.getInt32(i, true);
        case T.FLOAT32: return v.getFloat32(i, true);
        case T.BOOL: {
          const b = v.getUint8(i);
          if (b > 1) throw new FormatError(`${this.name}: ${what} is a bool of value ${b}, expected 0 or 1`);
          return b === 1;
        }
        case T.FLOAT64: return v.getFloat64(i, true);
        default: {
          const big = type === T.UINT64 ? v.getBigUint64(i, true) : v.getBigInt64(i, true);
          const n = Number(big);
          return Number.isSafeInteger(n) ? n : big;
        }
      }
    }
    if (type === T.STRING) return this.string(what);
    if (type !== T.ARRAY) throw new FormatError(`${this.name}: ${what} has value type ${type}, not a GGUF type (0..12)`);

    if (depth >= GGUF_MAX_ARRAY_DEPTH) throw new FormatError(`${this.name}: ${what} nests arrays deeper than ${GGUF_MAX_ARRAY_DEPTH}`);
    await this.need(12, `${what}'s element type and count`);
    const et = this.u32();
    const count = this.u64(`${what}'s element count`);
    const each = NUMERIC[et]?.bytes ?? (et === T.STRING ? 8 : et === T.ARRAY ? 12 : 0);
    if (each === 0) throw new FormatError(`${this.name}: ${what} is an array of value type ${et}, not a GGUF type (0..12)`);
    if (count > this.left() / each) {
      throw new FormatError(`${this.name}: ${what} says it has ${fmtBytes(count)} elements, more than the ${fmtBytes(this.left())} bytes left can hold`);
    }
    const numeric = NUMERIC[et];
    if (numeric) {
      const bytes = count * numeric.bytes;
      const buf = new ArrayBuffer(bytes);
      const dst = new Uint8Array(buf);
      // Copy through the window, a window at a time (an array may be larger than it).
      for (let done = 0; done < bytes;) {
        const n = Math.min(bytes - done, this.windowSize);
        await this.need(n, what);
        dst.set(this.bytes(n), done);
        done += n;
      }
      if (!littleEndianHost) swapInPlace(dst, numeric.bytes);
      if (et === T.BOOL) for (const b of dst) if (b > 1) throw new FormatError(`${this.name}: ${what} holds a bool of value ${b}, expected 0 or 1`);
      return numeric.make(buf);
    }
    const out: GGUFValue[] = [];
    for (let i = 0; i < count; i++) {
      // Strings already in the window are read without an await (a vocabulary has 10^5 of them).
      const s = et === T.STRING ? this.stringInWindow(what, i) : undefined;
      out.push(s ?? (await this.value(et, `${what}[${i}]`, depth + 1)));
    }
    return out as GGUFValue;
  }
}

function swapInPlace(b: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let i = 0; i < b.length; i += width) b.subarray(i, i + width).reverse();
}
