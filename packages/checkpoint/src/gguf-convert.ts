/**
 * ggml tensor blocks to the element types Rama's backends run, exactly:
 * every value after conversion equals the value llama.cpp dequantizes
 * (ggml's dequantize_row_* in f32).
 *
 * - F16, BF16, F32 to f32 (F16 and BF16 widen exactly; @rama/backend's
 *   f16Table, the values its f16 kernels compute). A backend that supports
 *   f16, bf16, q4_0 (or q4_k, q5_k, q6_k) takes F16, BF16, Q4_0 (Q4_K, Q5_K,
 *   Q6_K) bytes as they are instead.
 * - Q8_0, Q4_0, Q5_0 to llama2.c's q8_0 layout with groups of 32: ggml's
 *   value is d*q with an f16 scale d and a small integer q, and q8_0's value
 *   is scale*q with an f32 scale, so the f16 scale widened and q as int8
 *   (Q4_0: nibble-8; Q5_0: 5-bit value-16) give the same f32 products.
 * - Q6_K to q8_0 with groups of 16: each 16-value sub-block's value is
 *   (d*sc)*q, computed by ggml in f32 left to right; scale = f32(d*sc) and
 *   q in -32..31 give the same products.
 */
import { dequantizeQ4_K, dequantizeQ5_K, f16Table, kquantInts, q6_kD, q6_kScale, QK_K, Q6_K_BYTES } from '@rama/backend';
import { FormatError } from '@rama/core';
import type { GGMLType } from './gguf.js';

/** Value of the f16 at bytes[i], bytes[i+1] (little-endian). */
export function f16At(bytes: Uint8Array, i: number): number {
  return f16Table()[bytes[i] | (bytes[i + 1] << 8)];
}

/** The group size a ggml type converts to q8_0 with, or undefined when it does not convert exactly. */
export function q80GroupSizeOf(type: GGMLType): number | undefined {
  switch (type.name) {
    case 'Q8_0':
    case 'Q4_0':
    case 'Q5_0':
      return 32;
    case 'Q6_K':
      return 16;
    default:
      return undefined;
  }
}

/** Block types that convert to f32 only (their values are d*q + m, not a scale times an int8). */
const F32_ONLY = ['Q4_1', 'Q5_1', 'Q4_K', 'Q5_K'];

/** Whether `ggmlToF32` converts this type. */
export function convertsToF32(type: GGMLType): boolean {
  return ['F32', 'F16', 'BF16', ...F32_ONLY].includes(type.name) || q80GroupSizeOf(type) !== undefined;
}

/** Converts `elements` values of ggml `type` in `src` to f32 in `dst`. */
export function ggmlToF32(type: GGMLType, src: Uint8Array, dst: Float32Array, elements: number, what: string): void {
  switch (type.name) {
    case 'F32':
      new Uint8Array(dst.buffer, dst.byteOffset, 4 * elements).set(src.subarray(0, 4 * elements));
      return;
    case 'F16': {
      const t = f16Table();
      for (let i = 0; i < elements; i++) dst[i] = t[src[2 * i] | (src[2 * i + 1] << 8)];
      return;
    }
    case 'BF16': {
      const u = new Uint32Array(dst.buffer, dst.byteOffset, elements);
      for (let i = 0; i < elements; i++) u[i] = ((src[2 * i] | (src[2 * i + 1] << 8)) << 16) >>> 0;
      return;
    }
  }
  if (F32_ONLY.includes(type.name)) return affineToF32(type, src, dst, elements);
  const gs = q80GroupSizeOf(type);
  if (gs === undefined) {
    throw new FormatError(`${what}: ggml type ${type.name} is not supported yet (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q6_K, Q4_1, Q5_1, Q4_K and Q5_K are)`);
  }
  const q = new Int8Array(elements);
  const scales = new Float32Array(elements / gs);
  ggmlToQ80(type, src, q, scales, elements, what);
  for (let i = 0; i < elements; i++) dst[i] = scales[(i / gs) | 0] * q[i];
}

/**
 * Converts `elements` values of a ggml block type to q8_0 (int8 values and
 * one f32 scale per group of q80GroupSizeOf(type)).
 */
export function ggmlToQ80(type: GGMLType, src: Uint8Array, q: Int8Array, scales: Float32Array, elements: number, what: string): void {
  const blocks = elements / type.blockSize;
  const t = f16Table();
  const d16 = (i: number) => t[src[i] | (src[i + 1] << 8)];
  switch (type.name) {
    case 'Q8_0':
      // d (f16), then 32 int8
      for (let b = 0; b < blocks; b++) {
        const o = b * 34;
        scales[b] = d16(o);
        q.set(new Int8Array(src.buffer, src.byteOffset + o + 2, 32), b * 32);
      }
      return;
    case 'Q4_0':
      // d (f16), then 16 bytes: element j is byte j's low nibble, element j+16 its high nibble, each minus 8
      for (let b = 0; b < blocks; b++) {
        const o = b * 18;
        const y = b * 32;
        scales[b] = d16(o);
        for (let j = 0; j < 16; j++) {
          const x = src[o + 2 + j];
          q[y + j] = (x & 0x0f) - 8;
          q[y + j + 16] = (x >> 4) - 8;
        }
      }
      return;
    case 'Q5_0':
      // d (f16), qh (u32: the fifth bit of each element), 16 bytes of nibbles as in Q4_0; value minus 16
      for (let b = 0; b < blocks; b++) {
        const o = b * 22;
        const y = b * 32;
        scales[b] = d16(o);
        const qh = (src[o + 2] | (src[o + 3] << 8) | (src[o + 4] << 16) | (src[o + 5] << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const x = src[o + 6 + j];
          q[y + j] = ((x & 0x0f) | (((qh >>> j) & 1) << 4)) - 16;
          q[y + j + 16] = ((x >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16;
        }
      }
      return;
    case 'Q6_K': {
      // Each 16-value sub-block s: scale f32(d * sc_s), q in -32..31 (@rama/backend reads the layout).
      for (let b = 0; b < blocks; b++) {
        const o = b * Q6_K_BYTES;
        const d = q6_kD(src, o);
        for (let s = 0; s < 16; s++) scales[b * 16 + s] = Math.fround(d * q6_kScale(src, o, s));
        kquantInts('q6_k', src, o, q, b * QK_K);
      }
      return;
    }
    default:
      throw new FormatError(`${what}: ggml type ${type.name} cannot be converted to Q8_0 exactly (Q8_0, Q4_0, Q5_0 and Q6_K can)`);
  }
}

/**
 * Q4_1, Q5_1, Q4_K, Q5_K: value = scale * q - offset (Q4_1/Q5_1: d * q + m),
 * each product and difference rounded to f32 as ggml's dequantize_row_*
 * writes them (the k-quants' layouts are read by @rama/backend's decoders).
 */
function affineToF32(type: GGMLType, src: Uint8Array, y: Float32Array, elements: number): void {
  const t = f16Table();
  const h = (i: number) => t[src[i] | (src[i + 1] << 8)];
  const f = Math.fround;
  const blocks = elements / type.blockSize;
  switch (type.name) {
    case 'Q4_1':
      // d, m (f16), 16 bytes of nibbles (element j low, j+16 high)
      for (let b = 0; b < blocks; b++) {
        const o = b * 20, d = h(o), m = h(o + 2), at = b * 32;
        for (let j = 0; j < 16; j++) {
          y[at + j] = f(f((src[o + 4 + j] & 15) * d) + m);
          y[at + j + 16] = f(f((src[o + 4 + j] >> 4) * d) + m);
        }
      }
      return;
    case 'Q5_1':
      // d, m (f16), qh (u32 fifth bits), 16 bytes of nibbles
      for (let b = 0; b < blocks; b++) {
        const o = b * 24, d = h(o), m = h(o + 2), at = b * 32;
        const qh = (src[o + 4] | (src[o + 5] << 8) | (src[o + 6] << 16) | (src[o + 7] << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const x0 = (src[o + 8 + j] & 15) | (((qh >>> j) & 1) << 4);
          const x1 = (src[o + 8 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          y[at + j] = f(f(x0 * d) + m);
          y[at + j + 16] = f(f(x1 * d) + m);
        }
      }
      return;
    case 'Q4_K':
      dequantizeQ4_K(src, elements, y);
      return;
    case 'Q5_K':
      dequantizeQ5_K(src, elements, y);
      return;
  }
}
