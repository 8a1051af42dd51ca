import { describe, expect, it } from 'vitest';
import { f16Table, f16ToF32, f32ToF16 } from './index.js';

const buf = new Float32Array(1);
const bits = new Uint32Array(buf.buffer);
const fromBits = (b: number): number => ((bits[0] = b >>> 0), buf[0]);
const toBits = (x: number): number => ((buf[0] = x), bits[0]);

/**
 * The nearest f16 found by search, independently of f32ToF16's bit tricks:
 * the positive finite f16s (bits 0..0x7bff) increase with their bits, so a
 * binary search finds the two that bracket |x|; the nearer wins, a tie the
 * one with an even last bit. Past 65504 the next "f16" is 2^16 = infinity
 * (IEEE rounds as if the exponent range went on).
 */
function nearestBySearch(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const value = (h: number): number => (h === 0x7c00 ? 65536 : f16Table()[h]);
  let lo = 0;
  let hi = 0x7c00;
  if (a >= 65536) return sign | 0x7c00;
  // invariant: value(lo) <= a < value(hi)
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (value(mid) <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - value(lo);
  const dHi = value(hi) - a;
  const h = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return sign | h;
}

describe('f32ToF16: round to nearest f16, ties to even', () => {
  it('every f16 value comes back as its own bits', () => {
    for (let h = 0; h < 0x10000; h++) {
      const e = (h >> 10) & 31;
      if (e === 31 && (h & 0x3ff) !== 0) continue; // NaN: checked below
      expect(f32ToF16(f16ToF32(h))).toBe(h);
    }
  });

  it('halfway points between neighbours go to the even one; a hair off them, to the nearer', () => {
    const table = f16Table();
    let checked = 0;
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (table[h] + table[h + 1]) / 2; // exact in f32: 12 significant bits
      expect(Math.fround(mid)).toBe(mid);
      const even = h % 2 === 0 ? h : h + 1;
      expect(f32ToF16(mid)).toBe(even);
      expect(f32ToF16(-mid)).toBe(0x8000 | even);
      if (mid > 0) {
        expect(f32ToF16(fromBits(toBits(mid) - 1))).toBe(h);
        expect(f32ToF16(fromBits(toBits(mid) + 1))).toBe(h + 1);
      }
      checked++;
    }
    expect(checked).toBe(0x7bff);
  });

  it('overflow, infinities, NaN, signed zero, f32 subnormals', () => {
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(Math.fround(65519.99))).toBe(0x7bff);
    expect(f32ToF16(65520)).toBe(0x7c00); // halfway to 2^16, and 65504's last bit is odd
    expect(f32ToF16(1e6)).toBe(0x7c00);
    expect(f32ToF16(-1e30)).toBe(0xfc00);
    expect(f32ToF16(Infinity)).toBe(0x7c00);
    expect(f32ToF16(-Infinity)).toBe(0xfc00);
    expect(f32ToF16(NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(NaN) & 0x3ff).not.toBe(0);
    expect(f32ToF16(0)).toBe(0);
    expect(f32ToF16(-0)).toBe(0x8000);
    expect(f32ToF16(2 ** -24)).toBe(1);
    expect(f32ToF16(2 ** -25)).toBe(0); // a tie between 0 and 2^-24: to 0, which is even
    expect(f32ToF16(Math.fround(2 ** -25 * 1.0000001))).toBe(1);
    expect(f32ToF16(1.5 * 2 ** -24)).toBe(2); // tie between 1 and 2 units: to 2
    expect(f32ToF16(fromBits(1))).toBe(0); // the smallest f32 subnormal
    expect(f32ToF16(-fromBits(0x7fffff))).toBe(0x8000);
  });

  it('agrees with the search on 200,000 random f32 bit patterns and on random values near 1', () => {
    let s = 12345;
    const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
    for (let i = 0; i < 200_000; i++) {
      const b = next();
      const x = fromBits(b);
      if (Number.isNaN(x)) expect(Number.isNaN(f16ToF32(f32ToF16(x))), `bits ${b.toString(16)}`).toBe(true);
      else expect(f32ToF16(x), `bits ${b.toString(16)}`).toBe(nearestBySearch(x));
    }
    for (let i = 0; i < 50_000; i++) {
      const x = Math.fround((next() / 2 ** 32 - 0.5) * 8);
      expect(f32ToF16(x)).toBe(nearestBySearch(x));
    }
  });
});
