import { describe, expect, it } from 'vitest';
import {
  bf16ToF32, dequantizeQ4_0, dequantizeQ4_K, dequantizeQ5_K, dequantizeQ6_K, f16Table, f16ToF32, kD, kDmin, kMin, kquantInts, kScale,
  q4_0Int, q4_0Scale, q4_kInt, q5_kInt, q6_kD, q6_kInt, q6_kScale, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES,
} from './index.js';

/** A small deterministic generator (the tests' blocks are the same every run). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/**
 * Packs a Q4_K (q5 false) or Q5_K block from its integers the way the layout
 * text describes, written in the packing direction (so the decoders are checked
 * against an independent reading of the layout).
 */
function packAffineK(q5: boolean, dBits: number, dminBits: number, sc: number[], m: number[], q: number[]): Uint8Array {
  const out = new Uint8Array(q5 ? Q5_K_BYTES : Q4_K_BYTES);
  out[0] = dBits & 255; out[1] = dBits >> 8; out[2] = dminBits & 255; out[3] = dminBits >> 8;
  const s = out.subarray(4, 16);
  for (let j = 0; j < 4; j++) {
    s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
    s[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
    s[j + 8] = (sc[j + 4] & 15) | ((m[j + 4] & 15) << 4);
  }
  const qs = out.subarray(q5 ? 48 : 16);
  for (let i = 0; i < 256; i++) {
    const k = i >> 6, l = i & 31, high = (i & 32) !== 0;
    qs[32 * k + l] |= high ? (q[i] & 15) << 4 : q[i] & 15;
    if (q5 && q[i] & 16) out[16 + l] |= 1 << (2 * k + (high ? 1 : 0));
  }
  return out;
}

/** Packs a Q6_K block from q (-32..31), 16 int8 scales and d's f16 bits. */
function packQ6K(dBits: number, sc: number[], q: number[]): Uint8Array {
  const out = new Uint8Array(Q6_K_BYTES);
  for (let i = 0; i < 256; i++) {
    const u = q[i] + 32, h = i >> 7, l = i & 31, t = (i >> 5) & 3;
    out[64 * h + l + 32 * (t & 1)] |= t < 2 ? u & 15 : (u & 15) << 4;
    out[128 + 32 * h + l] |= (u >> 4) << (2 * t);
  }
  for (let s = 0; s < 16; s++) out[192 + s] = sc[s] & 255;
  out[208] = dBits & 255; out[209] = dBits >> 8;
  return out;
}

describe('element values', () => {
  it('f16: normals, subnormals, zeros, infinities and NaN', () => {
    expect(f16ToF32(0x3c00)).toBe(1);
    expect(f16ToF32(0xc000)).toBe(-2);
    expect(f16ToF32(0x3555)).toBe(0.333251953125);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    expect(f16ToF32(0x7c00)).toBe(Infinity);
    expect(f16ToF32(0xfc00)).toBe(-Infinity);
    expect(f16ToF32(0x7e00)).toBeNaN();
    // the table holds the same values, as f32 (every f16 is one)
    const t = f16Table();
    for (let h = 0; h < 65536; h += 97) expect(Object.is(t[h], f16ToF32(h)) || (Number.isNaN(t[h]) && Number.isNaN(f16ToF32(h)))).toBe(true);
  });

  it('bf16: the high half of an f32', () => {
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc0a0)).toBe(-5);
    expect(bf16ToF32(0x3eab)).toBe(Math.fround(0.333984375));
    expect(bf16ToF32(0x0001)).toBe(2 ** -133);
    expect(bf16ToF32(0x7f80)).toBe(Infinity);
  });

  it('q4_0: (nibble - 8) * d, low nibbles first', () => {
    const block = new Uint8Array(18);
    block[0] = 0x00; // d = 0.5 (f16 0x3800)
    block[1] = 0x38;
    for (let j = 0; j < 16; j++) block[2 + j] = j | ((15 - j) << 4);
    expect(q4_0Scale(block, 0)).toBe(0.5);
    const v = dequantizeQ4_0(block, 32);
    for (let j = 0; j < 16; j++) {
      expect(q4_0Int(block, 0, j)).toBe(j - 8);
      expect(q4_0Int(block, 0, j + 16)).toBe(7 - j);
      expect(v[j]).toBe((j - 8) * 0.5);
      expect(v[j + 16]).toBe((7 - j) * 0.5);
    }
  });

  for (const q5 of [false, true]) {
    it(`${q5 ? 'q5_k' : 'q4_k'}: integers, 6-bit scales and mins, d and dmin, and values as ggml dequantizes them`, () => {
      const r = lcg(q5 ? 5 : 4);
      const sc = Array.from({ length: 8 }, () => Math.floor(r() * 64));
      const m = Array.from({ length: 8 }, () => Math.floor(r() * 64));
      sc[7] = 63; m[4] = 63; m[0] = 0;
      const q = Array.from({ length: 256 }, () => Math.floor(r() * (q5 ? 32 : 16)));
      const block = packAffineK(q5, 0x2e66 /* 0.1 */, 0x1a00 /* 2^-6 * 1.5 */, sc, m, q);
      const d = kD(block, 0), dmin = kDmin(block, 0);
      expect(d).toBe(f16ToF32(0x2e66));
      expect(dmin).toBe(f16ToF32(0x1a00));
      for (let j = 0; j < 8; j++) {
        expect(kScale(block, 0, j)).toBe(sc[j]);
        expect(kMin(block, 0, j)).toBe(m[j]);
      }
      const ints = new Int32Array(256);
      kquantInts(q5 ? 'q5_k' : 'q4_k', block, 0, ints);
      // two blocks back to back: the second one is read at its own offset
      const two = new Uint8Array(2 * block.length);
      two.set(block, block.length);
      const v = (q5 ? dequantizeQ5_K : dequantizeQ4_K)(two, 512);
      const f = Math.fround;
      for (let i = 0; i < 256; i++) {
        expect((q5 ? q5_kInt : q4_kInt)(block, 0, i)).toBe(q[i]);
        expect(ints[i]).toBe(q[i]);
        expect(v[i]).toBe(0);
        const j = i >> 5;
        expect(v[256 + i]).toBe(f(f(f(d * sc[j]) * q[i]) - f(dmin * m[j])));
      }
    });
  }

  it('q6_k: integers -32..31, int8 scales per 16, d, and values f32(d*sc)*q', () => {
    const r = lcg(6);
    const sc = Array.from({ length: 16 }, () => Math.floor(r() * 256) - 128);
    sc[0] = -128; sc[1] = 127;
    const q = Array.from({ length: 256 }, () => Math.floor(r() * 64) - 32);
    q[0] = -32; q[255] = 31;
    const block = packQ6K(0x3155 /* ~0.1666 */, sc, q);
    const d = q6_kD(block, 0);
    expect(d).toBe(f16ToF32(0x3155));
    for (let s = 0; s < 16; s++) expect(q6_kScale(block, 0, s)).toBe(sc[s]);
    const ints = new Int8Array(256);
    kquantInts('q6_k', block, 0, ints);
    const two = new Uint8Array(2 * Q6_K_BYTES);
    two.set(block, Q6_K_BYTES);
    const v = dequantizeQ6_K(two, 512);
    for (let i = 0; i < 256; i++) {
      expect(q6_kInt(block, 0, i)).toBe(q[i]);
      expect(ints[i]).toBe(q[i]);
      expect(v[256 + i]).toBe(Math.fround(Math.fround(d * sc[i >> 4]) * q[i]));
    }
  });
});
