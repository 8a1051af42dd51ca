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

const f32Buf = new Float32Array(1);
const f32Bits = new Uint32Array(f32Buf.buffer);
/**
 * A number, first rounded to f32, to the bits of the nearest IEEE binary16
 * (round half to even, as IEEE's default rounding does): values from 65520
 * up (halfway past the largest f16, 65504) become infinity, values below
 * 2^-14 become subnormals (multiples of 2^-24) or zero, the sign kept; NaN
 * becomes a quiet NaN. Integer arithmetic only, so every backend can compute
 * the same bits (an f16 KV cache stores each key and value so).
 */
export function f32ToF16(x: number): number {
  f32Buf[0] = x;
  const bits = f32Bits[0];
  const sign = (bits >>> 16) & 0x8000;
  const a = bits & 0x7fffffff; // |x| as bits: its order is the order of the values
  if (a > 0x7f800000) return sign | 0x7e00; // NaN
  if (a >= 0x47800000) return sign | 0x7c00; // |x| >= 2^16 (or inf): past every f16
  if (a >= 0x38800000) {
    // A normal f16: rebias the exponent (127 - 15 = 112), keep the top 10 of
    // 23 fraction bits, and round on the 13 dropped: add just under half
    // (0xfff), plus one when the kept part is odd, so an exact half goes to
    // even. A carry moves into the exponent, as it should (up to 0x7c00, inf).
    const kept = (a - 0x38000000) >>> 13;
    return sign | ((a - 0x38000000 + 0xfff + (kept & 1)) >>> 13);
  }
  // Subnormal f16 (or zero): the value in units of 2^-24, rounded half to
  // even. mant * 2^(e - 150) = (mant >> shift) units with shift = 126 - e.
  const e = a >>> 23;
  if (e < 102) return sign; // below 2^-25: rounds to zero (2^-25 itself is a tie to 0)
  const mant = (a & 0x7fffff) | 0x800000;
  const shift = 126 - e;
  const q = mant >>> shift;
  const rem = mant & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return sign | (rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q);
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

/*
 * GGUF's k-quants (Q4_K, Q5_K, Q6_K): super-blocks of 256 elements with
 * scales per sub-block. The functions below read one super-block at byte
 * `at`; the layouts are those of the registered dtypes q4_k, q5_k and q6_k
 * (see their `layout` text in tensor.ts).
 */

/** Elements per k-quant super-block (ggml's QK_K). */
export const QK_K = 256;
/** Bytes per Q4_K super-block: d, dmin (f16), 12 bytes of scales and mins, 128 bytes of nibbles. */
export const Q4_K_BYTES = 144;
/** Bytes per Q5_K super-block: as Q4_K plus 32 bytes of fifth bits (before the nibbles). */
export const Q5_K_BYTES = 176;
/** Bytes per Q6_K super-block: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales, f16 d. */
export const Q6_K_BYTES = 210;

/**
 * The 6-bit scale sc_j (j = 0..7) of a Q4_K or Q5_K super-block (the same
 * 12 bytes at offset 4 in both; ggml's get_scale_min_k4): j < 4 is the low
 * 6 bits of byte j; j >= 4 is the low nibble of byte j + 4 with the top two
 * bits of byte j - 4 above it.
 */
export function kScale(bytes: Uint8Array, at: number, j: number): number {
  const s = at + 4;
  return j < 4 ? bytes[s + j] & 63 : (bytes[s + j + 4] & 15) | ((bytes[s + j - 4] >> 6) << 4);
}

/**
 * The 6-bit min m_j (j = 0..7) of a Q4_K or Q5_K super-block: j < 4 is the
 * low 6 bits of byte j + 4; j >= 4 is the high nibble of byte j + 4 with the
 * top two bits of byte j above it.
 */
export function kMin(bytes: Uint8Array, at: number, j: number): number {
  const s = at + 4;
  return j < 4 ? bytes[s + j + 4] & 63 : (bytes[s + j + 4] >> 4) | ((bytes[s + j] >> 6) << 4);
}

/** The f16 super-block scale d of a Q4_K or Q5_K block (bytes 0-1). */
export function kD(bytes: Uint8Array, at: number): number {
  return f16Table()[bytes[at] | (bytes[at + 1] << 8)];
}

/** The f16 super-block min scale dmin of a Q4_K or Q5_K block (bytes 2-3). */
export function kDmin(bytes: Uint8Array, at: number): number {
  return f16Table()[bytes[at + 2] | (bytes[at + 3] << 8)];
}

/**
 * Element i (0..255) of the Q4_K block at `at` as its integer q (0..15), in
 * sub-block j = i >> 5. Chunk k = i >> 6 of 64: its first 32 elements are the
 * low nibbles of qs[32k..32k+31], the next 32 their high nibbles.
 */
export function q4_kInt(bytes: Uint8Array, at: number, i: number): number {
  const b = bytes[at + 16 + 32 * (i >> 6) + (i & 31)];
  return i & 32 ? b >> 4 : b & 15;
}

/**
 * Element i (0..255) of the Q5_K block at `at` as its integer q (0..31), in
 * sub-block j = i >> 5: Q4_K's nibble (from qs at byte 48) plus 16 when bit j
 * of qh[i & 31] (byte 16 on) is set.
 */
export function q5_kInt(bytes: Uint8Array, at: number, i: number): number {
  const b = bytes[at + 48 + 32 * (i >> 6) + (i & 31)];
  const hi = (bytes[at + 16 + (i & 31)] >> (i >> 5)) & 1;
  return (i & 32 ? b >> 4 : b & 15) | (hi << 4);
}

/**
 * Element i (0..255) of the Q6_K block at `at` as its integer q (-32..31), in
 * sub-block s = i >> 4. Half h = i >> 7, l = i & 31, quarter t = (i >> 5) & 3:
 * low 4 bits from ql[64h + l + 32 (t & 1)] (low nibble for t < 2, high for
 * t >= 2), high 2 bits from bits 2t..2t+1 of qh[32h + l], minus 32.
 */
export function q6_kInt(bytes: Uint8Array, at: number, i: number): number {
  const h = i >> 7, l = i & 31, t = (i >> 5) & 3;
  const lo = bytes[at + 64 * h + l + 32 * (t & 1)];
  const hi = (bytes[at + 128 + 32 * h + l] >> (2 * t)) & 3;
  return ((t < 2 ? lo & 15 : lo >> 4) | (hi << 4)) - 32;
}

/** The int8 scale of sub-block s (0..15, 16 elements each) of the Q6_K block at `at`. */
export function q6_kScale(bytes: Uint8Array, at: number, s: number): number {
  return (bytes[at + 192 + s] << 24) >> 24;
}

/** The f16 super-block scale d of the Q6_K block at `at` (bytes 208-209). */
export function q6_kD(bytes: Uint8Array, at: number): number {
  return f16Table()[bytes[at + 208] | (bytes[at + 209] << 8)];
}

/**
 * The 256 integers q of the k-quant block at `at` into out[o..o+255], in
 * element order (what q4_kInt, q5_kInt or q6_kInt give one at a time, for
 * all of them at once).
 */
export function kquantInts(dtype: 'q4_k' | 'q5_k' | 'q6_k', bytes: Uint8Array, at: number, out: Int8Array | Int16Array | Int32Array, o = 0): void {
  if (dtype === 'q6_k') {
    for (let h = 0; h < 2; h++) {
      const ql = at + 64 * h, qh = at + 128 + 32 * h, y = o + 128 * h;
      for (let l = 0; l < 32; l++) {
        const hb = bytes[qh + l], a = bytes[ql + l], c = bytes[ql + l + 32];
        out[y + l] = ((a & 15) | ((hb & 3) << 4)) - 32;
        out[y + l + 32] = ((c & 15) | (((hb >> 2) & 3) << 4)) - 32;
        out[y + l + 64] = ((a >> 4) | (((hb >> 4) & 3) << 4)) - 32;
        out[y + l + 96] = ((c >> 4) | (((hb >> 6) & 3) << 4)) - 32;
      }
    }
    return;
  }
  const q5 = dtype === 'q5_k';
  const qs = at + (q5 ? 48 : 16);
  for (let k = 0; k < 4; k++) {
    for (let l = 0; l < 32; l++) {
      const b = bytes[qs + 32 * k + l];
      const hb = q5 ? bytes[at + 16 + l] : 0;
      out[o + 64 * k + l] = (b & 15) | (((hb >> (2 * k)) & 1) << 4);
      out[o + 64 * k + 32 + l] = (b >> 4) | (((hb >> (2 * k + 1)) & 1) << 4);
    }
  }
}

const kInts = new Int32Array(QK_K);

/**
 * The values of `count` elements (a multiple of 256) of Q4_K or Q5_K bytes,
 * rounded to f32 as ggml's dequantize_row_q4_K / _q5_K compute them:
 * f32(f32(f32(d*sc_j) * q) - f32(dmin*m_j)).
 */
function dequantizeAffineK(dtype: 'q4_k' | 'q5_k', bytes: Uint8Array, count: number, out: Float32Array): Float32Array {
  const f = Math.fround;
  const size = dtype === 'q5_k' ? Q5_K_BYTES : Q4_K_BYTES;
  for (let b = 0; b < count / QK_K; b++) {
    const at = b * size;
    const d = kD(bytes, at), dmin = kDmin(bytes, at);
    kquantInts(dtype, bytes, at, kInts);
    for (let j = 0; j < 8; j++) {
      const dj = f(d * kScale(bytes, at, j)), mj = f(dmin * kMin(bytes, at, j));
      for (let i = 32 * j; i < 32 * j + 32; i++) out[b * QK_K + i] = f(f(dj * kInts[i]) - mj);
    }
  }
  return out;
}

/** The values of `count` elements (a multiple of 256) of Q4_K bytes, as ggml's dequantize_row_q4_K computes them in f32. */
export function dequantizeQ4_K(bytes: Uint8Array, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  return dequantizeAffineK('q4_k', bytes, count, out);
}

/** The values of `count` elements (a multiple of 256) of Q5_K bytes, as ggml's dequantize_row_q5_K computes them in f32. */
export function dequantizeQ5_K(bytes: Uint8Array, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  return dequantizeAffineK('q5_k', bytes, count, out);
}

/** The values of `count` elements (a multiple of 256) of Q6_K bytes: f32(d*sc_s) * q, as ggml's dequantize_row_q6_K. */
export function dequantizeQ6_K(bytes: Uint8Array, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  for (let b = 0; b < count / QK_K; b++) {
    const at = b * Q6_K_BYTES;
    const d = q6_kD(bytes, at);
    kquantInts('q6_k', bytes, at, kInts);
    for (let s = 0; s < 16; s++) {
      const ds = Math.fround(d * q6_kScale(bytes, at, s));
      for (let i = 16 * s; i < 16 * s + 16; i++) out[b * QK_K + i] = Math.fround(ds * kInts[i]);
    }
  }
  return out;
}
