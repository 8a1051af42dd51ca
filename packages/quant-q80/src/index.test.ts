import { describe, expect, it } from 'vitest';
import {
  chooseGroupSize, dequantize, matmulQ80, quantizeActivations, quantizeWeights, roundHalfAway, viewQ80, writeQ80, q80ByteLength,
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
