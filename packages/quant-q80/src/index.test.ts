import { describe, expect, it } from 'vitest';
import { ArgumentError } from '@rama/core';
import {
  chooseGroupSize, dequantize, matmulQ80, quantizeActivations, quantizeWeights, regroupQ80, roundHalfAway, rowAlignedGroupSize, viewQ80, writeQ80,
  q80ByteLength,
} from './index.js';

describe('chooseGroupSize', () => {
  it('divides every input dimension, not just dim', () => {
    expect(chooseGroupSize([288, 768])).toBe(32);
    expect(chooseGroupSize([64, 172])).toBe(4); // llama2.c's export would pick 64, which does not divide 172
    expect(chooseGroupSize([4096, 11008])).toBe(64);
  });
});

describe('quantize', () => {
  it('round-trips within half a step per group', () => {
    const w = Float32Array.from({ length: 256 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
    const t = quantizeWeights(w, 64);
    const back = dequantize(t);
    for (let i = 0; i < w.length; i++) expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(t.scales[i >> 6] / 2 + 1e-7);
  });
  it('uses half-to-even for weights and half-away for activations', () => {
    expect(roundHalfAway(2.5)).toBe(3);
    expect(roundHalfAway(-2.5)).toBe(-3);
    // 127 * 2.5 / 127 -> exactly 2.5 steps: weights round to 2, activations to 3
    const x = new Float32Array([127, 2.5, 0, 0]);
    expect(quantizeWeights(x, 4).q[1]).toBe(2);
    const q = new Int8Array(4), s = new Float32Array(1);
    quantizeActivations(x, 0, 4, 4, q, s);
    expect(q[1]).toBe(3);
    expect(s[0]).toBe(1);
  });
  it('stores an all-zero group as zeros', () => {
    const q = new Int8Array(4).fill(5), s = new Float32Array(1);
    quantizeActivations(new Float32Array(4), 0, 4, 4, q, s);
    expect([...q]).toEqual([0, 0, 0, 0]);
  });
  it('writes and views the standard layout', () => {
    const t = quantizeWeights(Float32Array.from({ length: 64 }, (_, i) => i - 30), 32);
    const bytes = new Uint8Array(q80ByteLength(64, 32));
    writeQ80(bytes, t);
    const v = viewQ80(bytes, 64, 32);
    expect([...v.q]).toEqual([...t.q]);
    expect([...v.scales]).toEqual([...t.scales]);
  });
});

describe('matmulQ80', () => {
  it('approximates the fp32 product and accumulates per group', () => {
    const n = 128, d = 3, gs = 32;
    const w = Float32Array.from({ length: n * d }, (_, i) => Math.cos(i));
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
    const t = quantizeWeights(w, gs);
    const xq = new Int8Array(n), xs = new Float32Array(n / gs);
    quantizeActivations(x, 0, n, gs, xq, xs);
    const out = new Float32Array(d);
    matmulQ80(out, 0, xq, xs, t.q, t.scales, n, d, gs);
    for (let i = 0; i < d; i++) {
      let exact = 0;
      for (let j = 0; j < n; j++) exact += w[i * n + j] * x[j];
      expect(Math.abs(out[i] - exact)).toBeLessThan(0.05);
    }
  });
});

describe('rows that straddle groups (llama2.c export: groups run over the flat tensor)', () => {
  it('rowAlignedGroupSize is gcd(group size, cols)', () => {
    expect(rowAlignedGroupSize(1376, 64)).toBe(32); // stories42M's w2
    expect(rowAlignedGroupSize(172, 64)).toBe(4);
    expect(rowAlignedGroupSize(768, 32)).toBe(32);
    expect(rowAlignedGroupSize(7, 64)).toBe(1);
    expect(() => rowAlignedGroupSize(0, 64)).toThrow(ArgumentError);
  });

  it('regroupQ80 keeps every dequantized value bit for bit and shares the int8 values', () => {
    const w = Float32Array.from({ length: 4 * 96 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 7)));
    const t = quantizeWeights(w, 64);
    const r = regroupQ80(t, 32);
    expect(r.groupSize).toBe(32);
    expect(r.q).toBe(t.q);
    expect(r.scales.length).toBe(2 * t.scales.length);
    expect([...dequantize(r)]).toEqual([...dequantize(t)]);
    expect(regroupQ80(t, 64)).toBe(t);
    expect(() => regroupQ80(t, 48)).toThrow(/group size 48 does not divide the tensor's group size 64/);
  });

  it('a regrouped straddling matrix multiplies exactly: each weight with its own group\'s scale', () => {
    // [d, n] = [6, 96] stored with flat groups of 64: rows 1, 3, 5 start mid-group.
    const d = 6, n = 96, gs = 64;
    const w = Float32Array.from({ length: d * n }, (_, i) => Math.cos(i * 0.71) * (1 + ((i >> 6) % 4)));
    const t = quantizeWeights(w, gs);
    const deq = dequantize(t);
    const g = rowAlignedGroupSize(n, gs);
    const r = regroupQ80(t, g);
    const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.3));
    const xq = new Int8Array(n), xs = new Float32Array(n / g);
    quantizeActivations(x, 0, n, g, xq, xs);
    const out = new Float32Array(d);
    matmulQ80(out, 0, xq, xs, r.q, r.scales, n, d, g);
    for (let i = 0; i < d; i++) {
      // float64 product of the dequantized weights and the dequantized activations
      let exact = 0, mag = 0;
      for (let j = 0; j < n; j++) {
        const p = deq[i * n + j] * xq[j] * xs[Math.floor(j / g)];
        exact += p;
        mag += Math.abs(p);
      }
      expect(Math.abs(out[i] - exact)).toBeLessThanOrEqual(4 * Math.sqrt(n / g) * 2 ** -23 * mag);
    }
  });
});
