import { describe, expect, it } from 'vitest';
import { bf16ToF32, dequantizeQ4_0, f16Table, f16ToF32, q4_0Int, q4_0Scale } from './index.js';

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
});
