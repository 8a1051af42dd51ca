// The embedding lookup from a packed table (op EMBED_PACKED, kernels.ts):
// out[r] = the values of row tokens[r] of the table, widened to f32.
//
// A model's token table is looked up one row per token, never multiplied as
// a whole (unless it doubles as the classifier, whose matmul reads it packed
// anyway), so it stays in its packed type in memory and only the rows looked
// up are decoded: a Q4_K table of 32000 x 4096 is 74 MB instead of 524 MB of
// f32. Nothing here is performance critical (dim values per token), so it is
// plain scalar code.
//
// Every value is rounded exactly as the reference decoders in
// @rama/backend's elements.ts (ggml's dequantize_row_*) round it, so a row
// is bit-identical to the same row of the table converted to f32 at load:
//   f16, bf16: widened exactly
//   q8_0 (llama2.c):  f32(q * s_g)
//   q4_0:             f32((nibble - 8) * d)
//   q4_k, q5_k:       f32(f32(f32(d * sc_j) * q) - f32(dmin * m_j))
//   q6_k:             f32(f32(d * sc_s) * q)

/** Table types, as the op's `kind` argument (the JS side uses the same numbers). */
export const EMBED_F16: i32 = 1;
export const EMBED_BF16: i32 = 2;
export const EMBED_Q40: i32 = 3;
export const EMBED_Q4K: i32 = 4;
export const EMBED_Q5K: i32 = 5;
export const EMBED_Q6K: i32 = 6;
export const EMBED_Q80: i32 = 7;

/** An IEEE binary16 (low 16 bits of h) as the f32 of the same value (exact). */
@inline function halfToF32(h: u32): f32 {
  const sign = (h & 0x8000) << 16;
  const e = (h >> 10) & 31, f = h & 0x3ff;
  if (e == 0) {
    // zero or subnormal: f * 2^-24, exact in f32
    const v = <f32>f * reinterpret<f32>(<u32>0x33800000);
    return reinterpret<f32>(reinterpret<u32>(v) | sign);
  }
  if (e == 31) return reinterpret<f32>(sign | 0x7f800000 | (f << 13)); // inf, NaN
  return reinterpret<f32>(sign | ((e + 112) << 23) | (f << 13)); // rebias 15 -> 127
}

/** The f16 at byte address p (little endian, any alignment) as f32. */
@inline function f16At(p: usize): f32 {
  return halfToF32(<u32>load<u16>(p));
}

/** One row of a Q4_K / Q5_K table (`blocks` super-blocks from `src`) into out[0..256*blocks). */
function rowAffineK(out: usize, src: usize, blocks: i32, q5: bool): void {
  const size: usize = q5 ? 176 : 144;
  for (let b = 0; b < blocks; b++, src += size) {
    const d = f16At(src), dmin = f16At(src + 2);
    const s = src + 4; // 12 bytes: eight 6-bit (sc, m) pairs
    const qs = src + (q5 ? 48 : 16), qh = src + 16;
    for (let j = 0; j < 8; j++) {
      let sc: u32, m: u32;
      if (j < 4) {
        sc = <u32>load<u8>(s + j) & 63;
        m = <u32>load<u8>(s + j + 4) & 63;
      } else {
        sc = (<u32>load<u8>(s + j + 4) & 15) | ((<u32>load<u8>(s + j - 4) >> 6) << 4);
        m = (<u32>load<u8>(s + j + 4) >> 4) | ((<u32>load<u8>(s + j) >> 6) << 4);
      }
      const dj: f32 = d * <f32>sc, mj: f32 = dmin * <f32>m;
      // sub-block j: chunk k = j >> 1 of 64 elements, low nibbles (j even) or high (j odd)
      const k = j >> 1, high = (j & 1) != 0;
      const o = out + (<usize>(b * 256 + 32 * j) << 2);
      for (let l = 0; l < 32; l++) {
        const byte = <u32>load<u8>(qs + <usize>(32 * k + l));
        let q = high ? byte >> 4 : byte & 15;
        if (q5) q |= ((<u32>load<u8>(qh + <usize>l) >> <u32>j) & 1) << 4;
        store<f32>(o + (<usize>l << 2), dj * <f32>q - mj);
      }
    }
  }
}

/** One row of a Q6_K table (`blocks` super-blocks from `src`) into out[0..256*blocks). */
function rowQ6K(out: usize, src: usize, blocks: i32): void {
  for (let b = 0; b < blocks; b++, src += 210) {
    const d = f16At(src + 208);
    for (let i = 0; i < 256; i++) {
      // half h, position l in it, quarter t: low 4 bits from ql, high 2 from qh
      const h = i >> 7, l = i & 31, t = (i >> 5) & 3;
      const lo = <u32>load<u8>(src + <usize>(64 * h + l + 32 * (t & 1)));
      const hi = (<u32>load<u8>(src + <usize>(128 + 32 * h + l)) >> <u32>(2 * t)) & 3;
      const q = <i32>((t < 2 ? lo & 15 : lo >> 4) | (hi << 4)) - 32;
      const ds: f32 = d * <f32>load<i8>(src + <usize>(192 + (i >> 4)));
      store<f32>(out + (<usize>(b * 256 + i) << 2), ds * <f32>q);
    }
  }
}

/**
 * Row `id` of the table into `out` (dim f32s). `scales`, `gs`, `vocab` and
 * `blocked` are for q8_0 only: its f32 scales (one per gs values), the
 * table's row count, and whether its first vocab & ~3 rows are interleaved
 * in blocks of four (kernels.ts's interleaveQ80: group g of row r of a block
 * at 4*gs*g + gs*r, its scale at 4*g + r of the block's scales).
 */
export function embedRow(out: usize, table: usize, scales: usize, id: i32, dim: i32, kind: i32, gs: i32, vocab: i32, blocked: bool): void {
  const row = <usize>id;
  switch (kind) {
    case EMBED_F16:
    case EMBED_BF16: {
      const src = table + row * (<usize>dim << 1);
      for (let c = 0; c < dim; c++) {
        const h = <u32>load<u16>(src + (<usize>c << 1));
        store<f32>(out + (<usize>c << 2), kind == EMBED_F16 ? halfToF32(h) : reinterpret<f32>(h << 16));
      }
      break;
    }
    case EMBED_Q40: {
      // blocks of 32: f16 d, then 16 bytes; element j is the low nibble of byte j (j < 16) or the high one of j - 16
      let src = table + row * <usize>(dim / 32 * 18);
      for (let b = 0; b < dim / 32; b++, src += 18) {
        const d = f16At(src);
        for (let j = 0; j < 32; j++) {
          const byte = <u32>load<u8>(src + 2 + <usize>(j & 15));
          const q = <i32>(j < 16 ? byte & 15 : byte >> 4) - 8;
          store<f32>(out + (<usize>(b * 32 + j) << 2), <f32>q * d);
        }
      }
      break;
    }
    case EMBED_Q4K:
    case EMBED_Q5K: {
      const size = kind == EMBED_Q5K ? 176 : 144;
      rowAffineK(out, table + row * <usize>(dim / 256 * size), dim / 256, kind == EMBED_Q5K);
      break;
    }
    case EMBED_Q6K:
      rowQ6K(out, table + row * <usize>(dim / 256 * 210), dim / 256);
      break;
    case EMBED_Q80: {
      const groups = dim / gs;
      if (blocked && id < (vocab & ~3)) {
        const first = id & ~3, r = id & 3;
        const base = table + <usize>first * <usize>dim;
        const sp = scales + (<usize>(first * groups) << 2);
        for (let g = 0; g < groups; g++) {
          const s = load<f32>(sp + (<usize>(4 * g + r) << 2));
          const wp = base + <usize>((4 * g + r) * gs);
          for (let k = 0; k < gs; k++) store<f32>(out + (<usize>(g * gs + k) << 2), <f32>load<i8>(wp + <usize>k) * s);
        }
      } else {
        const wp = table + row * <usize>dim;
        const sp = scales + (<usize>(id * groups) << 2);
        for (let c = 0; c < dim; c++) store<f32>(out + (<usize>c << 2), <f32>load<i8>(wp + <usize>c) * load<f32>(sp + (<usize>(c / gs) << 2)));
      }
      break;
    }
    default:
      unreachable();
  }
}
