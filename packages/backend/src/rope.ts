/**
 * RoPE's per-pair frequencies, shared by every backend so they turn pairs by
 * the same f32 angles: pair i of a head (elements 2i, 2i+1) turns at
 *   freq_i = 1 / theta^(2i / headSize)            (llama2.c, step by step in f32)
 * divided by freqFactors[i] where the model has them (Llama 3.1's rope
 * scaling, GGUF's rope_freqs tensor: llama.cpp divides the angle by the
 * factor). The angle at position p is f32(p * freq_i). (docs/guide/rope.md)
 */
import { ArgumentError } from '@rama/core';

const f32 = Math.fround;

/** freq_i for i in [0, headSize / 2). */
export function ropeFrequencies(headSize: number, theta: number, freqFactors?: ArrayLike<number>): Float32Array {
  const half = headSize / 2;
  if (freqFactors !== undefined && freqFactors.length !== half) {
    throw new ArgumentError(`rope: ${freqFactors.length} frequency factors for a head of ${headSize} (${half} pairs)`);
  }
  const freq = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const base = f32(1 / f32(Math.pow(theta, f32((2 * i) / headSize))));
    freq[i] = freqFactors === undefined ? base : f32(base / freqFactors[i]);
  }
  return freq;
}

const keys = new WeakMap<ArrayLike<number>, string>();

/** A short string naming a frequency-factor array, for caches of rotation tables (computed once per array). */
export function freqFactorsKey(freqFactors: ArrayLike<number> | undefined): string {
  if (freqFactors === undefined) return '';
  let k = keys.get(freqFactors);
  if (k === undefined) {
    k = Array.from(freqFactors, (v) => f32(v).toString(36)).join(',');
    keys.set(freqFactors, k);
  }
  return k;
}
