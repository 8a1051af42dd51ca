// GGUF's k-quant matmuls (Q4_K, Q5_K, Q6_K) for the CPU backend, in
// AssemblyScript with 128-bit SIMD; kernels.ts dispatches them (ops
// QUANTIZE_K, MATMUL_Q4K, MATMUL_Q5K, MATMUL_Q6K) and splits the outputs
// over the thread pool.
//
// Weights stay in the file's layout (super-blocks of 256 elements, a row's
// blocks one after another): the bytes go from the file straight into memory.
// A repacked layout would not pay: the nibbles of 16 bytes unpack in two ops
// (and, shift) into two i8x16 runs of consecutive elements, exactly the order
// of the activations, and Q4_K / Q5_K blocks (144 and 176 bytes) keep their
// quants 16-byte aligned as they are.
//
// Activations come from QUANTIZE_K: QUANTIZE's quantization with groups of
// 256 (one f32 scale xs_b per super-block, int8 values stored as i16 xq).
// Per super-block b the dot product is two exact integer sums and a fixed
// sequence of f32 steps (the spec the scalar reference src/kernels/scalar.ts
// and the WebGPU kernel follow too, so all give the same bits):
//   Q4_K / Q5_K: isum = sum_j sc_j * (sum over sub-block j of q_i * xq_i)
//                msum = sum_j m_j  * (sum over sub-block j of xq_i)
//                val  = val + ((f32(isum) * d) - (f32(msum) * dmin)) * xs_b
//   Q6_K:        isum = sum_s sc_s * (sum over sub-block s of q_i * xq_i)
//                val  = val + (f32(isum) * d) * xs_b
// The sums over sub-blocks of xq (msum's) do not depend on the weights:
// QUANTIZE_K computes them once per input row (i16, 8 per super-block, see
// kSums) as it quantizes, instead of once per output.
//
// Lanes: the products q_i * xq_i are i16 x i16 pairs summed into i32 lanes by
// i32x4.dot_i16x8_s (as the Q4_0 kernel does); lanes are added at the end of
// a super-block. Integer sums are exact in any order, so the SIMD order gives
// the scalar reference's isum and msum exactly. Batched prompts take four
// input rows per pass (then two, then one), sharing each block's unpacking,
// as the Q4_0 kernel's dotQ40x2 does for two.

/** Bytes per super-block of Q4_K, Q5_K, Q6_K (256 elements each). */
const Q4K_BYTES: i32 = 144;
const Q5K_BYTES: i32 = 176;
const Q6K_BYTES: i32 = 210;

/** Sum of the four i32 lanes (exact). */
@inline function hsum32(v: v128): i32 {
  const s = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
}

/** An f16's value as f32, exactly (the block scales d and dmin): subnormals, infinities and NaN included. */
@inline function halfToF32(h: u32): f32 {
  const bits = (h & 0x7fff) << 13;
  // shifted into an f32's place the exponent keeps f16's bias; 2^112 corrects it (subnormals too)
  let f = reinterpret<f32>(bits) * reinterpret<f32>(0x77800000);
  if ((h & 0x7c00) == 0x7c00) f = reinterpret<f32>(bits | 0x7f800000);
  return h & 0x8000 ? -f : f;
}

/** i32 dot product of 32 i16 weights (four i16x8) with 32 i16 activations at xp, as i32x4 partial sums. */
@inline function dot32(a0: v128, a1: v128, a2: v128, a3: v128, xp: usize): v128 {
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(a0, v128.load(xp)), i32x4.dot_i16x8_s(a1, v128.load(xp, 16))),
    i32x4.add(i32x4.dot_i16x8_s(a2, v128.load(xp, 32)), i32x4.dot_i16x8_s(a3, v128.load(xp, 48))));
}

/** i32 dot product of 16 i16 weights (two i16x8) with 16 i16 activations at xp, as i32x4 partial sums. */
@inline function dotI16(lo: v128, hi: v128, xp: usize): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(xp)), i32x4.dot_i16x8_s(hi, v128.load(xp, 16)));
}

// ---------------------------------------------------------------------------
// Sums of 32 consecutive quantized activations (for QUANTIZE_K).

/**
 * sums[g] = sum of xq[32g .. 32g + 31] for groups [g0, g1) (i16 in, i16 out:
 * |sum| <= 32 * 127 fits). For Q4_K / Q5_K's msum: group g is sub-block
 * g % 8 of super-block g / 8 of its row.
 */
export function kSums(xq: usize, sums: usize, g0: i32, g1: i32): void {
  const ones = i16x8.splat(1);
  for (let g = g0; g < g1; g++) {
    const p = xq + (<usize>g << 6);
    const s = i16x8.add(i16x8.add(v128.load(p), v128.load(p, 16)), i16x8.add(v128.load(p, 32), v128.load(p, 48)));
    store<i16>(sums + (<usize>g << 1), <i16>hsum32(i32x4.dot_i16x8_s(s, ones)));
  }
}

// ---------------------------------------------------------------------------
// Q4_K and Q5_K: d (f16) @0, dmin (f16) @2, scales[12] @4, [Q5_K: qh[32] @16],
// qs[128] @16 (Q5_K: @48). Chunk k = 0..3 of 64 elements: element 64k + l
// (l < 32) is the low nibble of qs[32k + l] (sub-block 2k), element 64k + 32 + l
// its high nibble (sub-block 2k + 1); Q5_K adds 16 when bit 2k (low) or 2k + 1
// (high) of qh[l] is set. value = d * sc_j * q - dmin * m_j.

/**
 * The eight 6-bit (sc, m) pairs of a Q4_K / Q5_K block as one u8x16: sc_0..7
 * in bytes 0..7, m_0..7 in bytes 8..15. With the 12 bytes at wp + 4 read as
 * u32 a, b, c: sc_0..3 = a & 63 bytewise, m_0..3 = b & 63, and for j = 4..7
 * the low nibbles of c (sc) resp. its high nibbles (m), each with the top
 * two bits of a (sc) resp. b (m) above them.
 */
@inline function scalesMins(wp: usize): v128 {
  const v = v128.load(wp + 4); // u32 lanes a, b, c (and 4 bytes of what follows, unused)
  const ab = i32x4.shuffle(v, v, 0, 0, 1, 1); // a a b b
  const c = i32x4.shuffle(v, i32x4.shr_u(v, 4), 2, 2, 2, 6); // lane 1: c, lane 3: c >> 4
  const low6 = v128.and(ab, i32x4(0x3f3f3f3f, 0, 0x3f3f3f3f, 0));
  const top2 = v128.and(i32x4.shr_u(ab, 2), i32x4(0, 0x30303030, 0, 0x30303030)); // bits 6-7 of each byte to 4-5
  const nib = v128.and(c, i32x4(0, 0x0f0f0f0f, 0, 0x0f0f0f0f));
  return v128.or(low6, v128.or(top2, nib));
}

/**
 * Q4_K / Q5_K dot products of the weight row at w with one (two false) or
 * two input rows: x (i16 activations), xs (f32 scale per super-block), xsum
 * (i16 sub-block sums from QUANTIZE_K), and y, ys, ysum for the second row.
 * Stores the results at out and out + outStride.
 */
@inline function dotQ45(w: usize, x: usize, xs: usize, xsum: usize, y: usize, ys: usize, ysum: usize,
  blocks: i32, out: usize, outStride: usize, q5: bool, two: bool): void {
  const size: usize = q5 ? Q5K_BYTES : Q4K_BYTES;
  const qsAt: usize = q5 ? 48 : 16;
  const lowMask = i8x16.splat(0x0f);
  const bit4 = i8x16.splat(0x10);
  let vx: f32 = 0, vy: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const wp = w + <usize>b * size;
    const sm = scalesMins(wp);
    const sc16 = i16x8.extend_low_i8x16_u(sm), m16 = i16x8.extend_high_i8x16_u(sm);
    const sc03 = i32x4.extend_low_i16x8_u(sc16), sc47 = i32x4.extend_high_i16x8_u(sc16);
    const xb = x + (<usize>b << 9), yb = y + (<usize>b << 9); // 256 i16 activations per super-block
    let ax = i32x4.splat(0), ay = i32x4.splat(0);
    let h0 = i32x4.splat(0), h1 = i32x4.splat(0);
    if (q5) {
      h0 = v128.load(wp + 16);
      h1 = v128.load(wp + 32);
    }
    for (let k = 0; k < 4; k++) {
      const qp = wp + qsAt + (<usize>k << 5);
      const v0 = v128.load(qp), v1 = v128.load(qp, 16);
      // elements 64k + 0..15, 16..31 (sub-block 2k) and 64k + 32..47, 48..63 (sub-block 2k + 1)
      let l0 = v128.and(v0, lowMask), l1 = v128.and(v1, lowMask);
      let u0 = v128.and(i16x8.shr_u(v0, 4), lowMask), u1 = v128.and(i16x8.shr_u(v1, 4), lowMask);
      if (q5) {
        // bits 2k and 2k + 1 of each qh byte to bit 4 (16-bit shifts: the masked bit never crosses its byte)
        const g0 = i16x8.shr_u(h0, <i32>(2 * k)), g1 = i16x8.shr_u(h1, <i32>(2 * k));
        l0 = v128.or(l0, v128.and(i16x8.shl(g0, 4), bit4));
        l1 = v128.or(l1, v128.and(i16x8.shl(g1, 4), bit4));
        u0 = v128.or(u0, v128.and(i16x8.shl(g0, 3), bit4));
        u1 = v128.or(u1, v128.and(i16x8.shl(g1, 3), bit4));
      }
      const o = <usize>k << 7; // 64 i16 per chunk
      // sc_2k and sc_2k+1: lanes 0 and 1 of sc03 / sc47, or of them moved down by two lanes
      const half = select<v128>(sc03, sc47, k < 2);
      const pair = select<v128>(i32x4.shuffle(half, half, 2, 3, 2, 3), half, (k & 1) != 0);
      const s0 = i32x4.shuffle(pair, pair, 0, 0, 0, 0), s1 = i32x4.shuffle(pair, pair, 1, 1, 1, 1);
      // the 64 values as i16, shared by both rows
      const e0 = i16x8.extend_low_i8x16_u(l0), e1 = i16x8.extend_high_i8x16_u(l0);
      const e2 = i16x8.extend_low_i8x16_u(l1), e3 = i16x8.extend_high_i8x16_u(l1);
      const f0 = i16x8.extend_low_i8x16_u(u0), f1 = i16x8.extend_high_i8x16_u(u0);
      const f2 = i16x8.extend_low_i8x16_u(u1), f3 = i16x8.extend_high_i8x16_u(u1);
      ax = i32x4.add(ax, i32x4.add(i32x4.mul(dot32(e0, e1, e2, e3, xb + o), s0), i32x4.mul(dot32(f0, f1, f2, f3, xb + o + 64), s1)));
      if (two) ay = i32x4.add(ay, i32x4.add(i32x4.mul(dot32(e0, e1, e2, e3, yb + o), s0), i32x4.mul(dot32(f0, f1, f2, f3, yb + o + 64), s1)));
    }
    const d = halfToF32(<u32>load<u16>(wp)), dmin = halfToF32(<u32>load<u16>(wp, 2));
    const mx = hsum32(i32x4.dot_i16x8_s(m16, v128.load(xsum + (<usize>b << 4))));
    vx = vx + ((<f32>hsum32(ax) * d) - (<f32>mx * dmin)) * load<f32>(xs + (<usize>b << 2));
    if (two) {
      const my = hsum32(i32x4.dot_i16x8_s(m16, v128.load(ysum + (<usize>b << 4))));
      vy = vy + ((<f32>hsum32(ay) * d) - (<f32>my * dmin)) * load<f32>(ys + (<usize>b << 2));
    }
  }
  store<f32>(out, vx);
  if (two) store<f32>(out + outStride, vy);
}

function dotQ4Kx1(w: usize, x: usize, xs: usize, xsum: usize, blocks: i32, out: usize): void {
  dotQ45(w, x, xs, xsum, 0, 0, 0, blocks, out, 0, false, false);
}
function dotQ4Kx2(w: usize, x: usize, xs: usize, xsum: usize, y: usize, ys: usize, ysum: usize, blocks: i32, out: usize, outStride: usize): void {
  dotQ45(w, x, xs, xsum, y, ys, ysum, blocks, out, outStride, false, true);
}
function dotQ5Kx1(w: usize, x: usize, xs: usize, xsum: usize, blocks: i32, out: usize): void {
  dotQ45(w, x, xs, xsum, 0, 0, 0, blocks, out, 0, true, false);
}
function dotQ5Kx2(w: usize, x: usize, xs: usize, xsum: usize, y: usize, ys: usize, ysum: usize, blocks: i32, out: usize, outStride: usize): void {
  dotQ45(w, x, xs, xsum, y, ys, ysum, blocks, out, outStride, true, true);
}

/**
 * dotQ45 for four input rows at once (x, x + xStride, ...; their scales and
 * sums fStride and sStride apart): each block is unpacked once for all four
 * (batched prompts), one sub-block at a time to stay within the registers,
 * its values multiplied by their scale in i16 once for the four rows (so the
 * products sum straight into each row's vector); each row's isum, msum and
 * result are exactly dotQ45's.
 */
@inline function dotQ45x4(w: usize, x: usize, xs: usize, xsum: usize, xStride: usize, fStride: usize, sStride: usize,
  blocks: i32, out: usize, outStride: usize, q5: bool): void {
  const size: usize = q5 ? Q5K_BYTES : Q4K_BYTES;
  const qsAt: usize = q5 ? 48 : 16;
  const lowMask = i8x16.splat(0x0f);
  const bit4 = i8x16.splat(0x10);
  let v0: f32 = 0, v1: f32 = 0, v2: f32 = 0, v3: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const wp = w + <usize>b * size;
    const sm = scalesMins(wp);
    const sc16 = i16x8.extend_low_i8x16_u(sm);
    const x0 = x + (<usize>b << 9);
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
    let h0 = i32x4.splat(0), h1 = i32x4.splat(0);
    if (q5) {
      h0 = v128.load(wp + 16);
      h1 = v128.load(wp + 32);
    }
    for (let k = 0; k < 4; k++) {
      const qp = wp + qsAt + (<usize>k << 5);
      const v0q = v128.load(qp), v1q = v128.load(qp, 16);
      let l0 = v128.and(v0q, lowMask), l1 = v128.and(v1q, lowMask);
      let u0 = v128.and(i16x8.shr_u(v0q, 4), lowMask), u1 = v128.and(i16x8.shr_u(v1q, 4), lowMask);
      if (q5) {
        const g0 = i16x8.shr_u(h0, <i32>(2 * k)), g1 = i16x8.shr_u(h1, <i32>(2 * k));
        l0 = v128.or(l0, v128.and(i16x8.shl(g0, 4), bit4));
        l1 = v128.or(l1, v128.and(i16x8.shl(g1, 4), bit4));
        u0 = v128.or(u0, v128.and(i16x8.shl(g0, 3), bit4));
        u1 = v128.or(u1, v128.and(i16x8.shl(g1, 3), bit4));
      }
      // sc_2k and sc_2k+1 as i16: lanes 0 and 1 of sc16, or of it moved down by 2, 4 or 6 lanes
      const half = select<v128>(sc16, i8x16.shuffle(sc16, sc16, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15), k < 2);
      const pair = select<v128>(i8x16.shuffle(half, half, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7), half, (k & 1) != 0);
      const xp = x0 + (<usize>k << 7);
      // sub-block 2k: the low nibbles, times sc_2k in i16 (|q * sc| <= 31 * 63), shared by the four rows
      let s = i8x16.shuffle(pair, pair, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
      let e0 = i16x8.mul(i16x8.extend_low_i8x16_u(l0), s), e1 = i16x8.mul(i16x8.extend_high_i8x16_u(l0), s);
      let e2 = i16x8.mul(i16x8.extend_low_i8x16_u(l1), s), e3 = i16x8.mul(i16x8.extend_high_i8x16_u(l1), s);
      a0 = i32x4.add(a0, dot32(e0, e1, e2, e3, xp));
      a1 = i32x4.add(a1, dot32(e0, e1, e2, e3, xp + xStride));
      a2 = i32x4.add(a2, dot32(e0, e1, e2, e3, xp + 2 * xStride));
      a3 = i32x4.add(a3, dot32(e0, e1, e2, e3, xp + 3 * xStride));
      // sub-block 2k + 1: the high nibbles, times sc_2k+1
      s = i8x16.shuffle(pair, pair, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
      e0 = i16x8.mul(i16x8.extend_low_i8x16_u(u0), s); e1 = i16x8.mul(i16x8.extend_high_i8x16_u(u0), s);
      e2 = i16x8.mul(i16x8.extend_low_i8x16_u(u1), s); e3 = i16x8.mul(i16x8.extend_high_i8x16_u(u1), s);
      a0 = i32x4.add(a0, dot32(e0, e1, e2, e3, xp + 64));
      a1 = i32x4.add(a1, dot32(e0, e1, e2, e3, xp + xStride + 64));
      a2 = i32x4.add(a2, dot32(e0, e1, e2, e3, xp + 2 * xStride + 64));
      a3 = i32x4.add(a3, dot32(e0, e1, e2, e3, xp + 3 * xStride + 64));
    }
    const d = halfToF32(<u32>load<u16>(wp)), dmin = halfToF32(<u32>load<u16>(wp, 2));
    const m16 = i16x8.extend_high_i8x16_u(sm);
    const mp = xsum + (<usize>b << 4), fp = xs + (<usize>b << 2);
    v0 = v0 + ((<f32>hsum32(a0) * d) - (<f32>hsum32(i32x4.dot_i16x8_s(m16, v128.load(mp))) * dmin)) * load<f32>(fp);
    v1 = v1 + ((<f32>hsum32(a1) * d) - (<f32>hsum32(i32x4.dot_i16x8_s(m16, v128.load(mp + sStride))) * dmin)) * load<f32>(fp + fStride);
    v2 = v2 + ((<f32>hsum32(a2) * d) - (<f32>hsum32(i32x4.dot_i16x8_s(m16, v128.load(mp + 2 * sStride))) * dmin)) * load<f32>(fp + 2 * fStride);
    v3 = v3 + ((<f32>hsum32(a3) * d) - (<f32>hsum32(i32x4.dot_i16x8_s(m16, v128.load(mp + 3 * sStride))) * dmin)) * load<f32>(fp + 3 * fStride);
  }
  store<f32>(out, v0);
  store<f32>(out + outStride, v1);
  store<f32>(out + 2 * outStride, v2);
  store<f32>(out + 3 * outStride, v3);
}

function dotQ4Kx4(w: usize, x: usize, xs: usize, xsum: usize, xStride: usize, fStride: usize, sStride: usize, blocks: i32, out: usize, outStride: usize): void {
  dotQ45x4(w, x, xs, xsum, xStride, fStride, sStride, blocks, out, outStride, false);
}
function dotQ5Kx4(w: usize, x: usize, xs: usize, xsum: usize, xStride: usize, fStride: usize, sStride: usize, blocks: i32, out: usize, outStride: usize): void {
  dotQ45x4(w, x, xs, xsum, xStride, fStride, sStride, blocks, out, outStride, true);
}

/**
 * The Q4_K (q5 false) or Q5_K matmul for outputs [i0, i1) of every input
 * row: out[r, i] = dot(w row i, x row r). xq: i16, xs: f32 per 256 values
 * (QUANTIZE_K with its sums: i16 per 32 values).
 */
export function matmulQ45K(out: usize, xq: usize, xs: usize, sums: usize, w: usize, cols: i32, d: i32, rows: i32, i0: i32, i1: i32, q5: bool): void {
  const blocks = cols / 256;
  const rowBytes = <usize>blocks * <usize>(q5 ? Q5K_BYTES : Q4K_BYTES);
  const xStride = <usize>cols << 1, sStride = <usize>blocks << 4, fStride = <usize>blocks << 2;
  const outStride = <usize>d << 2;
  for (let i = i0; i < i1; i++) {
    const wi = w + <usize>i * rowBytes;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      const x = xq + <usize>r * xStride, s = xs + <usize>r * fStride, m = sums + <usize>r * sStride;
      const o = out + ((<usize>(r * d + i)) << 2);
      if (q5) dotQ5Kx4(wi, x, s, m, xStride, fStride, sStride, blocks, o, outStride);
      else dotQ4Kx4(wi, x, s, m, xStride, fStride, sStride, blocks, o, outStride);
    }
    for (; r + 2 <= rows; r += 2) {
      const x = xq + <usize>r * xStride, s = xs + <usize>r * fStride, m = sums + <usize>r * sStride;
      const o = out + ((<usize>(r * d + i)) << 2);
      if (q5) dotQ5Kx2(wi, x, s, m, x + xStride, s + fStride, m + sStride, blocks, o, outStride);
      else dotQ4Kx2(wi, x, s, m, x + xStride, s + fStride, m + sStride, blocks, o, outStride);
    }
    if (r < rows) {
      const o = out + ((<usize>(r * d + i)) << 2);
      if (q5) dotQ5Kx1(wi, xq + <usize>r * xStride, xs + <usize>r * fStride, sums + <usize>r * sStride, blocks, o);
      else dotQ4Kx1(wi, xq + <usize>r * xStride, xs + <usize>r * fStride, sums + <usize>r * sStride, blocks, o);
    }
  }
}

// ---------------------------------------------------------------------------
// Q6_K: ql[128] @0, qh[64] @128, scales int8[16] @192, d (f16) @208. Half
// h = 0, 1 of 128 elements, l < 32: elements l, l + 32, l + 64, l + 96 take
// the low nibble of ql[64h + l], the low nibble of ql[64h + l + 32], the high
// nibble of ql[64h + l], the high nibble of ql[64h + l + 32], with bits 0-1,
// 2-3, 4-5, 6-7 of qh[32h + l] above them; q = that - 32 (-32..31).
// value = d * sc_s * q, sub-block s = element / 16.
//
// Each run of 16 elements (one sub-block) is multiplied by its scale in i16
// before the dot product (|q * sc| <= 32 * 128 fits, and is shared by both
// input rows), so a block's products sum straight into one i32x4.

/**
 * Q6_K dot products of the weight row at w with one (two false) or two input
 * rows (x, xs and y, ys, as for Q4_K); results at out and out + outStride.
 */
@inline function dotQ6(w: usize, x: usize, xs: usize, y: usize, ys: usize, blocks: i32, out: usize, outStride: usize, two: bool): void {
  const lowMask = i8x16.splat(0x0f);
  const highMask = i8x16.splat(0x30);
  const bias = i8x16.splat(32);
  let vx: f32 = 0, vy: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const wp = w + <usize>b * <usize>Q6K_BYTES;
    const sc = v128.load(wp + 192);
    const scLo = i16x8.extend_low_i8x16_s(sc), scHi = i16x8.extend_high_i8x16_s(sc);
    const xb = x + (<usize>b << 9), yb = y + (<usize>b << 9);
    let ax = i32x4.splat(0), ay = i32x4.splat(0);
    for (let h = 0; h < 2; h++) {
      for (let g = 0; g < 2; g++) {
        // l = 16g .. 16g + 15 of half h
        const ql = wp + <usize>(64 * h + 16 * g);
        const a = v128.load(ql), c = v128.load(ql, 32);
        const hb = v128.load(wp + <usize>(128 + 32 * h + 16 * g));
        // bit pairs of qh to bits 4-5 (16-bit shifts: the mask keeps each byte's own bits)
        const q0 = i8x16.sub(v128.or(v128.and(a, lowMask), v128.and(i16x8.shl(hb, 4), highMask)), bias);
        const q1 = i8x16.sub(v128.or(v128.and(c, lowMask), v128.and(i16x8.shl(hb, 2), highMask)), bias);
        const q2 = i8x16.sub(v128.or(v128.and(i16x8.shr_u(a, 4), lowMask), v128.and(hb, highMask)), bias);
        const q3 = i8x16.sub(v128.or(v128.and(i16x8.shr_u(c, 4), lowMask), v128.and(i16x8.shr_u(hb, 2), highMask)), bias);
        // elements 128h + 16g + 32t + 0..15 are sub-block s = 8h + g + 2t: lane g + 2t of scLo (h = 0) or scHi
        const sh = select<v128>(scLo, scHi, h == 0);
        const sg = select<v128>(i8x16.shuffle(sh, sh, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1), sh, g != 0);
        const s0 = i8x16.shuffle(sg, sg, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
        const s1 = i8x16.shuffle(sg, sg, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5);
        const s2 = i8x16.shuffle(sg, sg, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9);
        const s3 = i8x16.shuffle(sg, sg, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13);
        const w0l = i16x8.mul(i16x8.extend_low_i8x16_s(q0), s0), w0h = i16x8.mul(i16x8.extend_high_i8x16_s(q0), s0);
        const w1l = i16x8.mul(i16x8.extend_low_i8x16_s(q1), s1), w1h = i16x8.mul(i16x8.extend_high_i8x16_s(q1), s1);
        const w2l = i16x8.mul(i16x8.extend_low_i8x16_s(q2), s2), w2h = i16x8.mul(i16x8.extend_high_i8x16_s(q2), s2);
        const w3l = i16x8.mul(i16x8.extend_low_i8x16_s(q3), s3), w3h = i16x8.mul(i16x8.extend_high_i8x16_s(q3), s3);
        const o = <usize>(128 * h + 16 * g) << 1;
        ax = i32x4.add(ax, i32x4.add(i32x4.add(dotI16(w0l, w0h, xb + o), dotI16(w1l, w1h, xb + o + 64)),
          i32x4.add(dotI16(w2l, w2h, xb + o + 128), dotI16(w3l, w3h, xb + o + 192))));
        if (two) {
          ay = i32x4.add(ay, i32x4.add(i32x4.add(dotI16(w0l, w0h, yb + o), dotI16(w1l, w1h, yb + o + 64)),
            i32x4.add(dotI16(w2l, w2h, yb + o + 128), dotI16(w3l, w3h, yb + o + 192))));
        }
      }
    }
    const d = halfToF32(<u32>load<u16>(wp, 208));
    vx = vx + (<f32>hsum32(ax) * d) * load<f32>(xs + (<usize>b << 2));
    if (two) vy = vy + (<f32>hsum32(ay) * d) * load<f32>(ys + (<usize>b << 2));
  }
  store<f32>(out, vx);
  if (two) store<f32>(out + outStride, vy);
}

function dotQ6Kx1(w: usize, x: usize, xs: usize, blocks: i32, out: usize): void {
  dotQ6(w, x, xs, 0, 0, blocks, out, 0, false);
}
function dotQ6Kx2(w: usize, x: usize, xs: usize, y: usize, ys: usize, blocks: i32, out: usize, outStride: usize): void {
  dotQ6(w, x, xs, y, ys, blocks, out, outStride, true);
}

/**
 * dotQ6 for four input rows at once (x, x + xStride, ...; their scales
 * fStride apart): each block is unpacked once for all four, one run of 16
 * values at a time; each row's result is exactly dotQ6's.
 */
function dotQ6Kx4(w: usize, x: usize, xs: usize, xStride: usize, fStride: usize, blocks: i32, out: usize, outStride: usize): void {
  const lowMask = i8x16.splat(0x0f);
  const highMask = i8x16.splat(0x30);
  const bias = i8x16.splat(32);
  let v0: f32 = 0, v1: f32 = 0, v2: f32 = 0, v3: f32 = 0;
  for (let b = 0; b < blocks; b++) {
    const wp = w + <usize>b * <usize>Q6K_BYTES;
    const sc = v128.load(wp + 192);
    const scLo = i16x8.extend_low_i8x16_s(sc), scHi = i16x8.extend_high_i8x16_s(sc);
    const x0 = x + (<usize>b << 9);
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
    for (let h = 0; h < 2; h++) {
      for (let g = 0; g < 2; g++) {
        const ql = wp + <usize>(64 * h + 16 * g);
        const a = v128.load(ql), c = v128.load(ql, 32);
        const hb = v128.load(wp + <usize>(128 + 32 * h + 16 * g));
        const sh = select<v128>(scLo, scHi, h == 0);
        const sg = select<v128>(i8x16.shuffle(sh, sh, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1), sh, g != 0);
        const xp = x0 + (<usize>(128 * h + 16 * g) << 1);
        // quarter t = 0..3: elements 128h + 32t + 16g + 0..15, sub-block 8h + 2t + g (as in dotQ6)
        let q = i8x16.sub(v128.or(v128.and(a, lowMask), v128.and(i16x8.shl(hb, 4), highMask)), bias);
        let st = i8x16.shuffle(sg, sg, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1);
        let wl = i16x8.mul(i16x8.extend_low_i8x16_s(q), st);
        let wh = i16x8.mul(i16x8.extend_high_i8x16_s(q), st);
        a0 = i32x4.add(a0, dotI16(wl, wh, xp));
        a1 = i32x4.add(a1, dotI16(wl, wh, xp + xStride));
        a2 = i32x4.add(a2, dotI16(wl, wh, xp + 2 * xStride));
        a3 = i32x4.add(a3, dotI16(wl, wh, xp + 3 * xStride));
        q = i8x16.sub(v128.or(v128.and(c, lowMask), v128.and(i16x8.shl(hb, 2), highMask)), bias);
        st = i8x16.shuffle(sg, sg, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5);
        wl = i16x8.mul(i16x8.extend_low_i8x16_s(q), st);
        wh = i16x8.mul(i16x8.extend_high_i8x16_s(q), st);
        a0 = i32x4.add(a0, dotI16(wl, wh, xp + 64));
        a1 = i32x4.add(a1, dotI16(wl, wh, xp + xStride + 64));
        a2 = i32x4.add(a2, dotI16(wl, wh, xp + 2 * xStride + 64));
        a3 = i32x4.add(a3, dotI16(wl, wh, xp + 3 * xStride + 64));
        q = i8x16.sub(v128.or(v128.and(i16x8.shr_u(a, 4), lowMask), v128.and(hb, highMask)), bias);
        st = i8x16.shuffle(sg, sg, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9);
        wl = i16x8.mul(i16x8.extend_low_i8x16_s(q), st);
        wh = i16x8.mul(i16x8.extend_high_i8x16_s(q), st);
        a0 = i32x4.add(a0, dotI16(wl, wh, xp + 128));
        a1 = i32x4.add(a1, dotI16(wl, wh, xp + xStride + 128));
        a2 = i32x4.add(a2, dotI16(wl, wh, xp + 2 * xStride + 128));
        a3 = i32x4.add(a3, dotI16(wl, wh, xp + 3 * xStride + 128));
        q = i8x16.sub(v128.or(v128.and(i16x8.shr_u(c, 4), lowMask), v128.and(i16x8.shr_u(hb, 2), highMask)), bias);
        st = i8x16.shuffle(sg, sg, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13);
        wl = i16x8.mul(i16x8.extend_low_i8x16_s(q), st);
        wh = i16x8.mul(i16x8.extend_high_i8x16_s(q), st);
        a0 = i32x4.add(a0, dotI16(wl, wh, xp + 192));
        a1 = i32x4.add(a1, dotI16(wl, wh, xp + xStride + 192));
        a2 = i32x4.add(a2, dotI16(wl, wh, xp + 2 * xStride + 192));
        a3 = i32x4.add(a3, dotI16(wl, wh, xp + 3 * xStride + 192));
      }
    }
    const d = halfToF32(<u32>load<u16>(wp, 208));
    const fp = xs + (<usize>b << 2);
    v0 = v0 + (<f32>hsum32(a0) * d) * load<f32>(fp);
    v1 = v1 + (<f32>hsum32(a1) * d) * load<f32>(fp + fStride);
    v2 = v2 + (<f32>hsum32(a2) * d) * load<f32>(fp + 2 * fStride);
    v3 = v3 + (<f32>hsum32(a3) * d) * load<f32>(fp + 3 * fStride);
  }
  store<f32>(out, v0);
  store<f32>(out + outStride, v1);
  store<f32>(out + 2 * outStride, v2);
  store<f32>(out + 3 * outStride, v3);
}

/** The Q6_K matmul for outputs [i0, i1) of every input row (xq: i16, xs: f32 per 256 values, from QUANTIZE_K). */
export function matmulQ6K(out: usize, xq: usize, xs: usize, w: usize, cols: i32, d: i32, rows: i32, i0: i32, i1: i32): void {
  const blocks = cols / 256;
  const rowBytes = <usize>blocks * <usize>Q6K_BYTES;
  const xStride = <usize>cols << 1, fStride = <usize>blocks << 2;
  const outStride = <usize>d << 2;
  for (let i = i0; i < i1; i++) {
    const wi = w + <usize>i * rowBytes;
    let r = 0;
    for (; r + 4 <= rows; r += 4) {
      dotQ6Kx4(wi, xq + <usize>r * xStride, xs + <usize>r * fStride, xStride, fStride, blocks, out + ((<usize>(r * d + i)) << 2), outStride);
    }
    for (; r + 2 <= rows; r += 2) {
      const x = xq + <usize>r * xStride, s = xs + <usize>r * fStride;
      dotQ6Kx2(wi, x, s, x + xStride, s + fStride, blocks, out + ((<usize>(r * d + i)) << 2), outStride);
    }
    if (r < rows) dotQ6Kx1(wi, xq + <usize>r * xStride, xs + <usize>r * fStride, blocks, out + ((<usize>(r * d + i)) << 2));
  }
}
