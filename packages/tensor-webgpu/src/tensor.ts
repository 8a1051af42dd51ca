/// <reference types="@webgpu/types" />
import { BackendError, byteLengthOf, colsOf, elementCount, type DType, type Tensor, type TensorDesc } from '@rama/backend';

/**
 * One GPU buffer holding a contiguous range of a tensor's elements.
 * A part is either whole rows [r0, r1) or (when one row alone is larger than a
 * binding may be) a segment of a single row. q8_0 parts are always whole rows,
 * laid out as the rows' int8 values (padded to 4 bytes), then their f32 scales;
 * f16 and bf16 parts whole rows of the file's 16-bit elements (padded to 4
 * bytes); q4_0 parts whole rows of blocks, their nibbles (16 bytes a block)
 * then their f16 scales (2 bytes a block, padded to 4); q4_k and q5_k parts
 * whole rows of the file's blocks; q6_k parts whole rows of blocks, their
 * first 208 bytes then their f16 scales (see matrixPacking).
 */
export interface Part {
  buffer: GPUBuffer;
  /** First and one-past-last element of the flat tensor held here. */
  e0: number;
  e1: number;
  /** Rows touched: [r0, r1); for a row segment r1 = r0 + 1. */
  r0: number;
  r1: number;
  wholeRows: boolean;
  /** q8_0, q4_0, q6_k: byte offset of the scales in the buffer. */
  scaleOffset: number;
  bytes: number;
}

export type PartPlan = Omit<Part, 'buffer'>;

let nextId = 1;

export class GpuTensor implements Tensor {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly label: string;
  readonly groupSize?: number;
  readonly byteLength: number;
  /** Leading dimensions flattened: the number of rows of the [rows, cols] view. */
  readonly rows: number;
  readonly cols: number;
  freed = false;

  constructor(desc: TensorDesc, readonly parts: Part[], readonly owner: object) {
    this.shape = [...desc.shape];
    this.dtype = desc.dtype;
    this.label = desc.label;
    if (desc.groupSize !== undefined) this.groupSize = desc.groupSize;
    this.byteLength = byteLengthOf(desc);
    this.cols = colsOf(desc);
    this.rows = this.cols === 0 ? 0 : elementCount(desc.shape) / this.cols;
  }

  /** Element count. */
  get size(): number {
    return this.rows * this.cols;
  }
}

const align4 = (n: number): number => Math.ceil(n / 4) * 4;

/**
 * How a part of k whole rows of a packed matrix type is laid out: its bytes,
 * where its scales start (0 where they are inline), and a row's average size.
 * - f16, bf16: the file's elements, two per u32 (a part starts at its first element).
 * - q4_0: the blocks' nibbles (16 bytes each), then their f16 scales (2 bytes each).
 * - q4_k, q5_k: the file's blocks as they are (144 and 176 bytes: whole words).
 * - q6_k: each block's first 208 bytes (ql, qh, scales), then every block's f16 d:
 *   the file's 210-byte blocks are not word-aligned.
 */
function matrixPacking(dtype: DType, cols: number): { bytesFor(k: number): number; scaleOffset(k: number): number; rowBytes: number } | undefined {
  const blocks = (k: number, size: number): number => (k * cols) / size;
  switch (dtype) {
    case 'f16':
    case 'bf16':
      return { bytesFor: (k) => align4(2 * k * cols), scaleOffset: () => 0, rowBytes: 2 * cols };
    case 'q4_0':
      return { bytesFor: (k) => 16 * blocks(k, 32) + align4(2 * blocks(k, 32)), scaleOffset: (k) => 16 * blocks(k, 32), rowBytes: (18 * cols) / 32 };
    case 'q4_k':
    case 'q5_k': {
      const size = dtype === 'q4_k' ? 144 : 176;
      return { bytesFor: (k) => size * blocks(k, 256), scaleOffset: () => 0, rowBytes: (size * cols) / 256 };
    }
    case 'q6_k':
      return { bytesFor: (k) => 208 * blocks(k, 256) + align4(2 * blocks(k, 256)), scaleOffset: (k) => 208 * blocks(k, 256), rowBytes: (210 * cols) / 256 };
    default:
      return undefined;
  }
}

/**
 * Splits a tensor into parts of at most `limit` bytes each: by rows, or, when
 * a single row is larger than `limit` (f32/i32 only), into row segments.
 * f16, bf16, q4_0 and the k-quants (matrices) are split by whole rows only.
 */
export function planParts(desc: TensorDesc, limit: number): PartPlan[] {
  const cols = colsOf(desc);
  const n = elementCount(desc.shape);
  const rows = cols === 0 ? 0 : n / cols;
  const plans: PartPlan[] = [];
  if (desc.dtype === 'q8_0') {
    const gs = desc.groupSize!;
    const bytesFor = (k: number): number => align4(k * cols) + (4 * k * cols) / gs;
    let per = rows;
    if (bytesFor(per) > limit) per = Math.floor(limit / (cols + (4 * cols) / gs));
    while (per > 0 && bytesFor(per) > limit) per--;
    if (per === 0) {
      throw new BackendError(
        `${desc.label}: one q8_0 row of ${cols} elements needs ${bytesFor(1)} bytes in one buffer binding, but the device allows ${limit}`,
      );
    }
    for (let r0 = 0; r0 < rows || (rows === 0 && r0 === 0); r0 += per) {
      const r1 = Math.min(rows, r0 + per);
      plans.push({ e0: r0 * cols, e1: r1 * cols, r0, r1, wholeRows: true, scaleOffset: align4((r1 - r0) * cols), bytes: bytesFor(r1 - r0) });
      if (rows === 0) break;
    }
    return plans;
  }
  const packed = matrixPacking(desc.dtype, cols);
  if (packed) {
    // Matrices for matmul: whole rows per part, each part's bytes word-aligned (see matrixPacking).
    const { bytesFor, scaleOffset } = packed;
    let per = rows;
    if (bytesFor(per) > limit) per = Math.floor(limit / packed.rowBytes);
    while (per > 0 && bytesFor(per) > limit) per--;
    if (per === 0) {
      throw new BackendError(
        `${desc.label}: one ${desc.dtype} row of ${cols} elements needs ${bytesFor(1)} bytes in one buffer binding, but the device allows ${limit}`,
      );
    }
    for (let r0 = 0; r0 < rows; r0 += per) {
      const r1 = Math.min(rows, r0 + per);
      plans.push({ e0: r0 * cols, e1: r1 * cols, r0, r1, wholeRows: true, scaleOffset: scaleOffset(r1 - r0), bytes: bytesFor(r1 - r0) });
    }
    return plans;
  }
  const rowBytes = 4 * cols;
  if (4 * n <= limit) {
    return [{ e0: 0, e1: n, r0: 0, r1: rows, wholeRows: true, scaleOffset: 0, bytes: 4 * n }];
  }
  if (rowBytes <= limit) {
    const per = Math.floor(limit / rowBytes);
    for (let r0 = 0; r0 < rows; r0 += per) {
      const r1 = Math.min(rows, r0 + per);
      plans.push({ e0: r0 * cols, e1: r1 * cols, r0, r1, wholeRows: true, scaleOffset: 0, bytes: 4 * (r1 - r0) * cols });
    }
    return plans;
  }
  const seg = Math.floor(limit / 4);
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += seg) {
      const c1 = Math.min(cols, c0 + seg);
      plans.push({ e0: r * cols + c0, e1: r * cols + c1, r0: r, r1: r + 1, wholeRows: false, scaleOffset: 0, bytes: 4 * (c1 - c0) });
    }
  }
  return plans;
}

/** True when the single part's bytes are exactly the standard layout, so a TensorFill can write straight into it. */
export function isStandardLayout(desc: TensorDesc, plans: PartPlan[]): boolean {
  if (plans.length !== 1) return false;
  if (desc.dtype === 'q4_0' || desc.dtype === 'q6_k') return false;
  return desc.dtype !== 'q8_0' || elementCount(desc.shape) % 4 === 0;
}

/** Copies the standard-layout bytes of a tensor into one part's buffer bytes (repacking q8_0). */
export function copyIntoPart(desc: TensorDesc, src: Uint8Array, p: PartPlan, dst: Uint8Array): void {
  if (desc.dtype === 'f16' || desc.dtype === 'bf16') {
    dst.set(src.subarray(2 * p.e0, 2 * p.e1));
    return;
  }
  if (desc.dtype === 'q4_k' || desc.dtype === 'q5_k') {
    const size = desc.dtype === 'q4_k' ? 144 : 176;
    dst.set(src.subarray((size * p.e0) / 256, (size * p.e1) / 256));
    return;
  }
  if (desc.dtype === 'q6_k') {
    const b0 = p.e0 / 256;
    for (let b = b0; b < p.e1 / 256; b++) {
      dst.set(src.subarray(210 * b, 210 * b + 208), 208 * (b - b0));
      dst[p.scaleOffset + 2 * (b - b0)] = src[210 * b + 208];
      dst[p.scaleOffset + 2 * (b - b0) + 1] = src[210 * b + 209];
    }
    return;
  }
  if (desc.dtype === 'q4_0') {
    const b0 = p.e0 / 32;
    for (let b = b0; b < p.e1 / 32; b++) {
      dst.set(src.subarray(18 * b + 2, 18 * b + 18), 16 * (b - b0));
      dst[p.scaleOffset + 2 * (b - b0)] = src[18 * b];
      dst[p.scaleOffset + 2 * (b - b0) + 1] = src[18 * b + 1];
    }
    return;
  }
  if (desc.dtype !== 'q8_0') {
    dst.set(src.subarray(4 * p.e0, 4 * p.e1));
    return;
  }
  const gs = desc.groupSize!;
  const n = elementCount(desc.shape);
  dst.set(src.subarray(p.e0, p.e1));
  dst.set(src.subarray(n + (4 * p.e0) / gs, n + (4 * p.e1) / gs), p.scaleOffset);
}

/** Row boundaries shared by several whole-row tensors: chunks whose rows each lie in one part of every tensor. */
export interface RowChunk {
  r0: number;
  /** End of the rows to process now (at most `rowEnd`). */
  r1: number;
  /** End of the rows these parts hold in common (independent of `rowEnd`: safe in cached params). */
  end: number;
  /** For each tensor, the part holding these rows. */
  parts: Part[];
}

export function rowChunks(op: string, tensors: GpuTensor[], rowEnd: number): RowChunk[] {
  for (const t of tensors) {
    if (!t.parts.every((p) => p.wholeRows)) {
      throw new BackendError(
        `${op}: ${t.label} has rows of ${4 * t.cols} bytes, more than one buffer binding may hold; ${op} needs whole rows in one binding`,
      );
    }
  }
  const out: RowChunk[] = [];
  const idx = tensors.map(() => 0);
  let r = 0;
  while (r < rowEnd) {
    let end = Infinity;
    const parts: Part[] = [];
    tensors.forEach((t, i) => {
      while (idx[i] < t.parts.length - 1 && t.parts[idx[i]].r1 <= r) idx[i]++;
      const p = t.parts[idx[i]];
      if (p.r1 <= r) throw new BackendError(`${op}: row ${r} is past the ${t.rows} rows of ${t.label}`);
      parts.push(p);
      end = Math.min(end, p.r1);
    });
    const r1 = Math.min(end, rowEnd);
    out.push({ r0: r, r1, end, parts });
    r = r1;
  }
  return out;
}

/** Element-range chunks over several tensors of the same flat size: each lies in one part of every tensor. */
export interface ElemChunk {
  e0: number;
  e1: number;
  parts: Part[];
}

export function elemChunks(tensors: { parts: Part[] }[], e0: number, e1: number, shifts?: number[]): ElemChunk[] {
  const out: ElemChunk[] = [];
  const idx = tensors.map(() => 0);
  let e = e0;
  while (e < e1) {
    let end = e1;
    const parts: Part[] = [];
    tensors.forEach((t, i) => {
      const s = shifts?.[i] ?? 0;
      while (idx[i] < t.parts.length - 1 && t.parts[idx[i]].e1 <= e + s) idx[i]++;
      const p = t.parts[idx[i]];
      parts.push(p);
      end = Math.min(end, p.e1 - s);
    });
    out.push({ e0: e, e1: end, parts });
    e = end;
  }
  return out;
}
