/**
 * The kernels' exp must return Math.exp's bits (softmax and SiLU then match
 * the scalar kernels exactly). In V8 it must do so on its own: the backend's
 * fallback to the host's Math.exp (for other engines) would hide a wrong
 * kernelExp here, so this checks the kernel directly, over every range of the
 * argument reduction and the special values.
 */
import { describe, expect, it } from 'vitest';
import { createMemory, instantiate, kernelsModule } from './wasm/runtime.js';

describe('the WASM kernels\' exp', () => {
  it('returns Math.exp\'s bits for special values and 2M arguments across every range', async () => {
    const k = instantiate(await kernelsModule(false), createMemory(false, 2).memory);
    const specials = [0, -0, 1, -1, NaN, Infinity, -Infinity, 709.78, 709.79, -745.13, -745.14, -708.5, -720, 2 ** -29, -(2 ** -29),
      2 ** -28, 0.34657, 0.34658, 1.0397, 1.0398, Number.MIN_VALUE, Number.MAX_VALUE, -Number.MAX_VALUE, 88.72283935546875];
    for (const x of specials) expect(Object.is(k.wasmExp(x), Math.exp(x)), `exp(${x})`).toBe(true);

    let s = 0x9e3779b9;
    const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const ranges: [number, number][] = [[-750, 750], [-1.1, 1.1], [-0.35, 0.35], [-1e-8, 1e-8], [-104, 89], [-1030 * Math.LN2, -1015 * Math.LN2]];
    let mismatches = 0;
    let first = '';
    for (const [lo, hi] of ranges) {
      for (let i = 0; i < 2_000_000 / ranges.length; i++) {
        const x = lo + (hi - lo) * next();
        if (!Object.is(k.wasmExp(x), Math.exp(x))) {
          if (!mismatches) first = `exp(${x}): ${k.wasmExp(x)} vs Math.exp ${Math.exp(x)}`;
          mismatches++;
        }
      }
    }
    expect(first).toBe('');
    expect(mismatches).toBe(0);
  });
});
