import { describe, expect, it } from 'vitest';
import { Rng, Sampler, argmax, checkFinite, checkSamplerOptions, softmax } from './index.js';

describe('Rng', () => {
  it('reproduces llama2.c xorshift* for seed 42', () => {
    // Computed independently with 64-bit unsigned arithmetic in Python.
    const r = new Rng(42);
    const first = [r.nextU32(), r.nextU32(), r.nextU32()];
    const ref = (() => {
      let s = 42n;
      const M = (1n << 64n) - 1n;
      const out: number[] = [];
      for (let i = 0; i < 3; i++) {
        s ^= s >> 12n; s = (s ^ (s << 25n)) & M; s ^= s >> 27n;
        out.push(Number(((s * 0x2545f4914f6cdd1dn) & M) >> 32n));
      }
      return out;
    })();
    expect(first).toEqual(ref);
    expect(first.every((v) => v >= 0 && v < 2 ** 32)).toBe(true);
  });
  it('gives floats in [0, 1)', () => {
    const r = new Rng(7);
    for (let i = 0; i < 1000; i++) {
      const f = r.nextF32();
      expect(f).toBeGreaterThanOrEqual(0);
      expect(f).toBeLessThan(1);
    }
  });
});

describe('Sampler', () => {
  const logits = () => new Float32Array([1, 3, 3, 0.5, -2]);
  it('argmax picks the lowest index on a tie', () => {
    expect(argmax(logits())).toBe(1);
    expect(new Sampler(5, { temperature: 0 }).sample(logits())).toBe(1);
  });
  it('softmax sums to one', () => {
    const p = logits();
    softmax(p);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
  });
  it('is reproducible for a seed and samples by probability', () => {
    const counts = new Array(5).fill(0);
    const s = new Sampler(5, { temperature: 1, topp: 0, seed: 3 });
    for (let i = 0; i < 4000; i++) counts[s.sample(logits())]++;
    const p = logits();
    softmax(p);
    for (let i = 0; i < 5; i++) expect(Math.abs(counts[i] / 4000 - p[i])).toBeLessThan(0.03);
    const a = new Sampler(5, { seed: 9 }), b = new Sampler(5, { seed: 9 });
    for (let i = 0; i < 50; i++) expect(a.sample(logits())).toBe(b.sample(logits()));
  });
  it('top-p keeps only the nucleus', () => {
    const s = new Sampler(5, { temperature: 1, topp: 0.5, seed: 1 });
    for (let i = 0; i < 200; i++) expect([1, 2]).toContain(s.sample(logits()));
  });
  it('top-k and min-p filter candidates', () => {
    const k = new Sampler(5, { temperature: 1, topk: 1, seed: 1 });
    for (let i = 0; i < 50; i++) expect(k.sample(logits())).toBe(1);
    const m = new Sampler(5, { temperature: 1, minp: 0.5, topp: 0, seed: 1 });
    for (let i = 0; i < 100; i++) expect([1, 2]).toContain(m.sample(logits()));
  });
  it('repetition penalty lowers recent tokens', () => {
    const s = new Sampler(5, { temperature: 0, repetitionPenalty: 10 });
    expect(s.isGreedy).toBe(false);
    expect(s.sample(logits(), [1, 2])).toBe(0);
  });
  it('rejects bad options', () => {
    expect(() => new Sampler(5, { temperature: -1 })).toThrow(/temperature/);
    expect(() => new Sampler(5, { topk: 1.5 })).toThrow(/topk/);
  });
});

describe('Sampler edge cases', () => {
  const logits = () => new Float32Array([1, 3, 2.5, 0.5, -2]);
  it('a temperature whose scaled logits overflow f32 samples greedily (its limit), never NaN', () => {
    for (const temperature of [1e-45, 1e-38, 1e-30]) {
      for (let seed = 1; seed < 20; seed++) expect(new Sampler(5, { temperature, seed }).sample(logits())).toBe(1);
    }
    expect(new Sampler(5, { temperature: 1e-46 }).isGreedy).toBe(true); // rounds to 0 as f32
  });
  it('a tiny repetition penalty boosts to the largest finite logit, not to infinity', () => {
    const l = logits();
    const s = new Sampler(5, { temperature: 1, repetitionPenalty: 1e-308, seed: 3 });
    const id = s.sample(l, [3]);
    expect(id).toBe(3);
    expect(l.every((v) => !Number.isNaN(v))).toBe(true);
  });
  it('non-finite logits are a NumericError naming the value and token', async () => {
    const { NumericError } = await import('@rama/core');
    for (const bad of [NaN, Infinity, -Infinity]) {
      const l = logits();
      l[2] = bad;
      expect(() => new Sampler(5, { temperature: 0.8, seed: 1 }).sample(l)).toThrow(NumericError);
      expect(() => checkFinite(l)).toThrow(new RegExp(`${bad} \\(token 2\\)`));
    }
  });
  it('rejects seeds that are not integers or that leave xorshift at 0', () => {
    for (const seed of [NaN, 1.5, Infinity, 'abc', 1e300, 0, 2 ** 64, 2n ** 64n]) {
      expect(() => new Sampler(5, { seed: seed as never })).toThrow(/seed must be/);
    }
    expect(() => checkSamplerOptions({ repetitionWindow: -5 })).toThrow(/repetitionWindow/);
    expect(() => checkSamplerOptions({ repetitionWindow: NaN })).toThrow(/repetitionWindow/);
    expect(() => checkSamplerOptions({ temperature: '1' as never })).toThrow(/temperature/);
    // a negative seed is taken modulo 2^64, as C converts it to unsigned
    expect(new Sampler(5, { seed: -1, temperature: 1 }).sample(logits())).toBeGreaterThanOrEqual(0);
  });
});
