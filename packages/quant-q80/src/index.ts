/**
 * Q8_0 as llama2.c's runq.c and export.py define it: values in groups of
 * `groupSize` consecutive elements along a row, each group stored as int8 with
 * one f32 scale = max|x| / 127.
 *
 * Two roundings exist on purpose: export.py rounds weights with torch.round
 * (half to even), runq.c rounds activations with C's round() (half away from
 * zero). Matching both is what makes our outputs equal llama2.c's.
 */
import { ArgumentError } from '@rama/core';

/** The largest int8 magnitude used: scale = max|x| / Q_MAX. */
export const Q_MAX = 127;

/** A Q8_0 tensor in host memory. */
export interface Q80Tensor {
  /** Values, row-major. */
  q: Int8Array;
  /** One scale per group. */
  scales: Float32Array;
  /** Consecutive elements per group. */
  groupSize: number;
}

/**
 * The group size to quantize a model with: the largest power of two not above
 * `preferred` that divides every matmul input dimension. (llama2.c's export
 * only checks `dim`, which breaks models whose hidden_dim is not a multiple.)
 */
export function chooseGroupSize(inputDims: readonly number[], preferred = 64): number {
  let gs = preferred;
  while (gs > 1 && inputDims.some((d) => d % gs !== 0)) gs /= 2;
  return gs;
}

function checkGroups(n: number, groupSize: number, what: string): void {
  if (!Number.isInteger(groupSize) || groupSize <= 0 || n % groupSize !== 0) {
    throw new ArgumentError(`${what}: group size ${groupSize} does not divide ${n} elements`);
  }
}

/** Round half to even (torch.round), used by llama2.c's export for weights. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Round half away from zero (C's round), used by runq.c for activations. */
export function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

// #region quantize
/**
 * Quantizes weights as llama2.c's export.py does (version 2 checkpoints):
 * per group, scale = max|w| / 127 and q = round(w / scale), so w ~ q * scale
 * within scale / 2. 1 byte per weight plus 4 per group instead of 4 per
 * weight (~3.8x smaller at 32 per group), and decoding reads that much less.
 * (docs/guide/quantization.md)
 */
export function quantizeWeights(w: Float32Array, groupSize: number): Q80Tensor {
  checkGroups(w.length, groupSize, 'quantizeWeights');
  const q = new Int8Array(w.length);
  const scales = new Float32Array(w.length / groupSize);
  for (let g = 0; g < scales.length; g++) {
    const start = g * groupSize;
    let wmax = 0;
    for (let i = start; i < start + groupSize; i++) wmax = Math.max(wmax, Math.abs(w[i]));
    const scale = Math.fround(wmax / Q_MAX);
    scales[g] = scale;
    for (let i = start; i < start + groupSize; i++) q[i] = roundHalfEven(Math.fround(w[i] / scale));
  }
  return { q, scales, groupSize };
}
// #endregion quantize

/**
 * Quantizes `n` activations of x starting at `xOffset` into q/scales, as runq.c's
 * quantize(): f32 scale = max|x| / 127, q = round(x / scale).
 */
export function quantizeActivations(
  x: Float32Array, xOffset: number, n: number, groupSize: number,
  q: Int8Array, scales: Float32Array,
): void {
  for (let g = 0; g < n / groupSize; g++) {
    const start = xOffset + g * groupSize;
    let wmax = 0;
    for (let i = start; i < start + groupSize; i++) {
      const v = Math.abs(x[i]);
      if (v > wmax) wmax = v;
    }
    const scale = Math.fround(wmax / Q_MAX);
    scales[g] = scale;
    // An all-zero group divides 0 by 0; the NaN stores as 0, as on x86 C.
    for (let i = 0; i < groupSize; i++) q[g * groupSize + i] = roundHalfAway(Math.fround(x[start + i] / scale));
  }
}

/** out = q * scale per group. */
export function dequantize(t: Q80Tensor, out: Float32Array = new Float32Array(t.q.length)): Float32Array {
  const { q, scales, groupSize } = t;
  for (let i = 0; i < q.length; i++) out[i] = q[i] * scales[Math.floor(i / groupSize)];
  return out;
}

// #region matmul
/**
 * runq.c's matmul for one input vector: out[i] = sum over groups of
 * f32(int32 dot(xq, wq row i, group)) * wScale * xScale, accumulated in f32.
 * `w*` hold a [d, n] matrix; xq/xs the quantized input of length n.
 * The activations are quantized too (quantizeActivations), so each group's
 * dot product is exact integer arithmetic and the two scales are applied once
 * per group, not per weight.
 */
export function matmulQ80(
  out: Float32Array, outOffset: number,
  xq: Int8Array, xs: Float32Array,
  wq: Int8Array, ws: Float32Array,
  n: number, d: number, groupSize: number,
): void {
  const groups = n / groupSize;
  for (let i = 0; i < d; i++) {
    const row = i * n;
    let val = 0;
    for (let g = 0; g < groups; g++) {
      const base = g * groupSize;
      let ival = 0;
      for (let k = 0; k < groupSize; k++) ival += xq[base + k] * wq[row + base + k];
      // C evaluates (f32(ival) * wScale) * xScale, each rounded to f32, then adds in f32.
      val = Math.fround(val + Math.fround(Math.fround(ival * ws[row / groupSize + g]) * xs[g]));
    }
    out[outOffset + i] = val;
  }
}
// #endregion matmul

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/**
 * The largest group size that keeps every group of a flat Q8_0 tensor inside
 * one row of `cols` elements and inside one of its stored groups of
 * `groupSize`: gcd(groupSize, cols). Equals `groupSize` when it divides `cols`.
 *
 * llama2.c's export.py groups each tensor as one flat array and picks the
 * group size from `dim` alone, so a row of w2 ([dim, hidden_dim]) straddles
 * groups when hidden_dim is not a multiple of it (stories42M: 1376 columns,
 * groups of 64). Row r starts at r * cols and groups at multiples of
 * groupSize; both are multiples of the gcd.
 */
export function rowAlignedGroupSize(cols: number, groupSize: number): number {
  if (!Number.isSafeInteger(cols) || cols <= 0 || !Number.isSafeInteger(groupSize) || groupSize <= 0) {
    throw new ArgumentError(`rowAlignedGroupSize: cols ${cols} and group size ${groupSize} must be positive integers`);
  }
  return gcd(groupSize, cols);
}

/**
 * The same tensor with groups of `groupSize` (which must divide t.groupSize):
 * each stored group splits into t.groupSize / groupSize groups that keep its
 * scale, so every dequantized value is bit-identical. The int8 values are
 * shared, not copied; only the scales grow.
 */
export function regroupQ80(t: Q80Tensor, groupSize: number): Q80Tensor {
  const from = t.groupSize;
  checkGroups(t.q.length, from, 'regroupQ80 (source)');
  if (!Number.isInteger(groupSize) || groupSize <= 0 || from % groupSize !== 0) {
    throw new ArgumentError(`regroupQ80: group size ${groupSize} does not divide the tensor's group size ${from}`);
  }
  if (groupSize === from) return t;
  const split = from / groupSize;
  const scales = new Float32Array(t.q.length / groupSize);
  for (let g = 0; g < t.scales.length; g++) scales.fill(t.scales[g], g * split, (g + 1) * split);
  return { q: t.q, scales, groupSize };
}

/** Bytes of a Q8_0 tensor in the standard layout: all int8 values, then all f32 scales. */
export function q80ByteLength(elements: number, groupSize: number): number {
  checkGroups(elements, groupSize, 'q80ByteLength');
  return elements + 4 * (elements / groupSize);
}

/** Writes a Q8_0 tensor into `dst` in the standard layout. */
export function writeQ80(dst: Uint8Array, t: Q80Tensor): void {
  dst.set(new Uint8Array(t.q.buffer, t.q.byteOffset, t.q.byteLength), 0);
  dst.set(new Uint8Array(t.scales.buffer, t.scales.byteOffset, t.scales.byteLength), t.q.length);
}

/** Views a standard-layout Q8_0 byte range as values and scales (copies when the scales are unaligned). */
export function viewQ80(bytes: Uint8Array, elements: number, groupSize: number): Q80Tensor {
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, elements);
  const at = bytes.byteOffset + elements;
  const nScales = elements / groupSize;
  const scales = at % 4 === 0
    ? new Float32Array(bytes.buffer, at, nScales)
    : new Float32Array(bytes.slice(elements, elements + 4 * nScales).buffer);
  return { q, scales, groupSize };
}
