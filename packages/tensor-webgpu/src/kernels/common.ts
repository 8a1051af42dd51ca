/// <reference types="@webgpu/types" />
import { ArgumentError, BackendError, type CheckedRows } from '@rama/backend';
import { elemChunks, type GpuTensor, type Part } from '../tensor.js';

/** A storage binding: read-only or read-write. Binding 0 is the step buffer (read-only storage), 1 the params uniform. */
export type Access = 'read' | 'rw';

/** A GPU program as plain data: its WGSL and the storage bindings it declares from @binding(2) on. */
export interface KernelDef {
  name: string;
  storage: Access[];
  wgsl: string;
}

/**
 * Words of the step buffer before the rows' (position, slot) pairs: word 0 is
 * the step's row count, words 1..STEP_HEADER-1 the row counts of gathered data
 * (see RowFlow).
 */
export const STEP_HEADER = 8;

/**
 * Declarations every kernel starts with: the step buffer (binding 0), which
 * the host writes with queue.writeBuffer just before the step's submission, so
 * cached bind groups never hold per-step values. Its u32 words:
 *   [0]                          the step's row count
 *   [1 .. STEP_HEADER)           row counts of gathered data in this step
 *   [STEP_HEADER + 2r], [.. + 1] row r's position and KV slot
 */
export const STEP_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> step: array<u32>;
// Rows an op processes: word w of the step buffer (a RowFlow's word).
fn rowCount(w: u32) -> u32 { return step[w]; }
// Row r's position in its sequence, and its sequence's KV slot.
fn rowPos(r: u32) -> u32 { return step[${STEP_HEADER}u + 2u * r]; }
fn rowSlot(r: u32) -> u32 { return step[${STEP_HEADER + 1}u + 2u * r]; }
`;

/**
 * Correctly rounded a / b for a >= 0 and b > 0, both normal (or a == 0).
 * WGSL's "/" may be off by 2.5 ulp; llama2.c's results depend on exact f32
 * division in Q8_0 quantization (x / scale before rounding), so we divide by
 * restoring long division on the 24-bit mantissas. Other inputs (subnormal,
 * inf, nan) fall back to "/".
 */
export const DIV_RN_WGSL = /* wgsl */ `
fn div_rn(a: f32, b: f32) -> f32 {
  let ab = bitcast<u32>(a);
  let bb = bitcast<u32>(b);
  let ea = i32((ab >> 23u) & 0xffu);
  let eb = i32((bb >> 23u) & 0xffu);
  if (ea == 0 || eb == 0 || ea == 255 || eb == 255 || (ab >> 31u) != 0u || (bb >> 31u) != 0u) { return a / b; }
  var ma = (ab & 0x7fffffu) | 0x800000u;
  let mb = (bb & 0x7fffffu) | 0x800000u;
  var e = ea - eb + 127;
  if (ma < mb) { ma = ma << 1u; e = e - 1; }
  var q = 0u;
  var rem = ma;
  for (var i = 0; i < 24; i++) {
    q = q << 1u;
    if (rem >= mb) { rem = rem - mb; q = q | 1u; }
    rem = rem << 1u;
  }
  // rem is twice the remainder: more than mb means more than half an ulp.
  if (rem > mb || (rem == mb && (q & 1u) == 1u)) { q = q + 1u; }
  if (q == 0x1000000u) { q = 0x800000u; e = e + 1; }
  if (e <= 0 || e >= 255) { return a / b; }
  return bitcast<f32>((u32(e) << 23u) | (q & 0x7fffffu));
}
`;

/**
 * f16 bits to f32 with integer operations only: unpack2x16float may flush
 * f16 subnormals to zero, and an f32 multiply of a subnormal may too
 * (WGSL allows both), so a subnormal's value is its fraction (an integer,
 * converted exactly) times 2^-24, and a normal's bits are rebuilt with the
 * exponent rebiased; exponent 31 (inf, NaN) keeps f32's all-ones exponent.
 */
export const F16_WGSL = /* wgsl */ `
fn f16v(h: u32) -> f32 {
  let e = (h >> 10u) & 0x1fu;
  let f = h & 0x3ffu;
  let sign = (h & 0x8000u) << 16u;
  if (e == 0u) { return bitcast<f32>(sign | bitcast<u32>(f32(f) * 5.9604644775390625e-8)); }
  if (e == 31u) { return bitcast<f32>(sign | 0x7f800000u | (f << 13u)); }
  return bitcast<f32>(sign | ((e + 112u) << 23u) | (f << 13u));
}
`;

/** Packs a kernel's params uniform: u32 and f32 scalars in declaration order. */
export class Params {
  private readonly words: number[] = [];
  private readonly kinds: ('u' | 'f')[] = [];
  u(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`param ${v} is not a u32`);
    this.words.push(v);
    this.kinds.push('u');
    return this;
  }
  f(v: number): this {
    this.words.push(v);
    this.kinds.push('f');
    return this;
  }
  /** Pads to a multiple of 4 words (16 bytes), e.g. before an array<vec4<f32>>. */
  pad(): this {
    while (this.words.length % 4) this.u(0);
    return this;
  }
  bytes(): ArrayBuffer {
    this.pad();
    const buf = new ArrayBuffer(Math.max(16, 4 * this.words.length));
    const u = new Uint32Array(buf);
    const f = new Float32Array(buf);
    this.words.forEach((w, i) => (this.kinds[i] === 'u' ? (u[i] = w) : (f[i] = w)));
    return buf;
  }
}

/**
 * How many rows an op processes in this step (`count`, known when recording,
 * which sizes the dispatch) and the step-buffer word its shader reads that
 * count from (`word`: 0 for the step's rows, 1.. for the rows of a gather's
 * output and what is computed from it). The word, not the count, goes into
 * the cached params, so a bind group serves steps of any row count.
 */
export interface RowFlow {
  count: number;
  word: number;
}

/** The services kernels record work through (implemented by the backend and its Step). */
export interface Recorder {
  /** The step's rows, and each row's position and KV slot (also as `layout`, for @rama/backend's checks). */
  readonly rows: number;
  readonly layout: CheckedRows;
  readonly positions: readonly number[];
  readonly slots: readonly number[];
  /**
   * Dispatches `kernel` with a bind group made once per `key` (cached until a
   * tensor in `tensors` is freed): params and buffers are built by `make` only
   * the first time.
   */
  dispatch(
    kernel: string,
    key: string,
    tensors: GpuTensor[],
    make: () => { params: Params; buffers: GPUBuffer[] },
    x: number,
    y?: number,
    z?: number,
  ): void;
  /** Queues a buffer-to-buffer copy in order with the dispatches. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void;
  /** A scratch buffer of at least `bytes`, shared by every op of one kind; lives until dispose. */
  scratch(kind: string, bytes: number): GPUBuffer;
  /**
   * RoPE's rotation table for (headSize, theta), [positions, headSize] f32 as
   * (cos, sin) pairs, holding at least `positions` positions. Built on the
   * host the first time, then rebuilt only when a step needs more positions.
   */
  ropeTable(headSize: number, theta: number, positions: number, freqFactors?: Float32Array): GpuTensor;
  readonly packedDot: boolean;
  /** Which matmul kernels to dispatch (see MatmulKernels). */
  readonly matmulKernels: MatmulKernels;
}

/**
 * The matmul kernel variant: 'rows' (one thread per output, looping over the
 * whole input row: fast on a CPU implementation such as SwiftShader) or
 * 'workgroups' (one workgroup per output, threads striding over the row with
 * coalesced loads, then a reduction in workgroup memory: for GPUs).
 */
export type MatmulKernels = 'rows' | 'workgroups';

export function expect(cond: boolean, op: string, what: string): void {
  if (!cond) throw new ArgumentError(`${op}: ${what}`);
}

export function expectDtype(op: string, t: GpuTensor, ...dtypes: string[]): void {
  expect(dtypes.includes(t.dtype), op, `${t.label} must be ${dtypes.join(' or ')}, got ${t.dtype}`);
}

/** Workgroup counts for `n` groups of work, spread over x and y (each at most 65535). */
export function grid2(n: number): [number, number] {
  if (n <= 65535) return [Math.max(1, n), 1];
  return [65535, Math.ceil(n / 65535)];
}

export function singlePart(op: string, t: GpuTensor): GPUBuffer {
  if (t.parts.length !== 1) {
    throw new BackendError(`${op}: ${t.label} (${t.byteLength} bytes) must fit in one buffer binding`);
  }
  return t.parts[0].buffer;
}

/**
 * Queues copies of elements [s0, s0 + n) of `src` to [d0, d0 + n) of `dst`
 * (tensors or a one-part view of a scratch buffer): one copyBufferToBuffer per
 * pair of parts the range crosses. src and dst must not share a buffer.
 */
export function copyElems(rec: Recorder, src: { parts: Part[] }, s0: number, dst: { parts: Part[] }, d0: number, n: number): void {
  for (const ch of elemChunks([dst, src], d0, d0 + n, [0, s0 - d0])) {
    const [dp, sp] = ch.parts;
    rec.copy(sp.buffer, 4 * (ch.e0 + s0 - d0 - sp.e0), dp.buffer, 4 * (ch.e0 - dp.e0), 4 * (ch.e1 - ch.e0));
  }
}

/** Splits 0..n into runs [start, end) where `continues(i)` says item i extends the run of item i - 1. */
export function runs(n: number, continues: (i: number) => boolean): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && continues(i)) out[out.length - 1][1] = i + 1;
    else out.push([i, i + 1]);
  }
  return out;
}
