/**
 * The values of the packed element types, as plain functions: what every
 * backend's kernels must compute from a tensor's standard-layout bytes
 * (the scalar reference backend calls these; conformance cases build their
 * expected bounds from them).
 */

/** IEEE binary16 bits to their value (exact: every f16 is an f32). */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

let table: Float32Array | undefined;
/** All 65536 f16 values, indexed by their bits (built once, 256 KiB). */
export function f16Table(): Float32Array {
  if (table) return table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = f16ToF32(h);
  return (table = t);
}

const bfBuf = new Uint32Array(1);
const bfF32 = new Float32Array(bfBuf.buffer);
/** bfloat16 bits to their value: the high half of a binary32 (exact). */
export function bf16ToF32(bits: number): number {
  bfBuf[0] = (bits & 0xffff) << 16;
  return bfF32[0];
}

/** Elements per Q4_0 block and its bytes: an f16 scale, then 16 bytes of nibbles. */
export const Q4_0_BLOCK = 32;
/** Bytes per Q4_0 block. */
export const Q4_0_BYTES = 18;

/**
 * Element j (0..31) of the Q4_0 block at byte `at` as the integer nibble - 8
 * (-8..7); its value is that times the block's scale (q4_0Scale).
 * Elements 0..15 are the low nibbles of bytes 0..15, 16..31 the high ones.
 */
export function q4_0Int(bytes: Uint8Array, at: number, j: number): number {
  const b = bytes[at + 2 + (j & 15)];
  return (j < 16 ? b & 0x0f : b >> 4) - 8;
}

/** The f16 scale d of the Q4_0 block at byte `at`. */
export function q4_0Scale(bytes: Uint8Array, at: number): number {
  return f16Table()[bytes[at] | (bytes[at + 1] << 8)];
}

/** The values of `count` elements (a multiple of 32) of Q4_0 bytes: (nibble - 8) * d, in f32. */
export function dequantizeQ4_0(bytes: Uint8Array, count: number, out = new Float32Array(count)): Float32Array {
  for (let b = 0; b < count / Q4_0_BLOCK; b++) {
    const at = b * Q4_0_BYTES;
    const d = q4_0Scale(bytes, at);
    for (let j = 0; j < Q4_0_BLOCK; j++) out[b * Q4_0_BLOCK + j] = q4_0Int(bytes, at, j) * d;
  }
  return out;
}
