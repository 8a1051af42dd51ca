/**
 * RoPE with frequency factors (Llama 3.1's rope scaling): the scalar
 * reference kernel against the formula in float64, angle_i = pos *
 * theta^(-2i/headSize) / factor_i, and ropeFrequencies (what the WASM and
 * WebGPU backends' rotation tables use) against the kernel's own f32 steps.
 */
import { describe, expect, it } from 'vitest';
import { ArgumentError, ropeFrequencies } from '@rama/backend';
import { rope } from './kernels/scalar.js';

describe('RoPE frequency factors', () => {
  const hs = 16, theta = 500000, pos = 1234;
  const factors = Float32Array.from({ length: hs / 2 }, (_, i) => (i < 3 ? 1 : 1 + i * 0.75));
  const x = Float32Array.from({ length: 2 * hs }, (_, i) => Math.sin(i * 1.7) + 0.1 * i);

  it('turn each pair by pos * theta^(-2i/hs) / factor_i', () => {
    const got = x.slice();
    rope(got, 0, got.length, hs, pos, theta, factors);
    for (let e = 0; e < x.length; e += 2) {
      const i = (e % hs) / 2;
      const angle = (pos * Math.pow(theta, (-2 * i) / hs)) / factors[i];
      const want0 = x[e] * Math.cos(angle) - x[e + 1] * Math.sin(angle);
      const want1 = x[e] * Math.sin(angle) + x[e + 1] * Math.cos(angle);
      // f32 angles at pos ~1e3 carry ~1e-4 absolute error
      expect(Math.abs(got[e] - want0)).toBeLessThan(1e-3 * (Math.abs(x[e]) + Math.abs(x[e + 1])) + 1e-6);
      expect(Math.abs(got[e + 1] - want1)).toBeLessThan(1e-3 * (Math.abs(x[e]) + Math.abs(x[e + 1])) + 1e-6);
    }
    // factors of 1 change nothing
    const plain = x.slice(), ones = x.slice();
    rope(plain, 0, plain.length, hs, pos, theta);
    rope(ones, 0, ones.length, hs, pos, theta, new Float32Array(hs / 2).fill(1));
    expect(Array.from(ones)).toEqual(Array.from(plain));
    expect(Array.from(got)).not.toEqual(Array.from(plain));
  });

  it('ropeFrequencies gives the kernel\'s f32 frequencies, and refuses a wrong count', () => {
    const f32 = Math.fround;
    const freqs = ropeFrequencies(hs, theta, factors);
    for (let i = 0; i < hs / 2; i++) expect(freqs[i]).toBe(f32(f32(1 / f32(Math.pow(theta, f32((2 * i) / hs)))) / factors[i]));
    expect(() => ropeFrequencies(hs, theta, new Float32Array(3))).toThrow(ArgumentError);
  });
});
