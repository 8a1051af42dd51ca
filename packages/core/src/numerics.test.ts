import { describe, expect, it } from 'vitest';
import { softmax } from './index.js';

const bits = (x: Float32Array): string[] => Array.from(new Uint32Array(x.buffer), (v) => `0x${v.toString(16).padStart(8, '0')}`);

describe('softmax (llama2.c, f32 at every step)', () => {
  it('gives the same bits as before it moved here from @rama/sampler', () => {
    // Recorded from @rama/sampler's softmax before the move; the goldens depend on these bits.
    const x = new Float32Array([1.5, -2.25, 0.1, 3.75, 3.75, -88.5, 10.125, 0.3333333]);
    softmax(x, 7);
    expect(bits(x)).toEqual(['0x393b99bd', '0x368d2ea0', '0x38390c06', '0x3ade7cf1', '0x3ade7cf1', '0x00000069', '0x3f7f129f', '0x3eaaaaaa']);
  });

  it('works in place over the first n values only and sums to one', () => {
    const x = new Float32Array([0, 0, 0, 0, 42]);
    softmax(x, 4);
    expect(Array.from(x)).toEqual([0.25, 0.25, 0.25, 0.25, 42]);
  });

  it('is shift invariant (subtracts the max first: no overflow)', () => {
    const a = new Float32Array([1000, 999, 998]);
    const b = new Float32Array([2, 1, 0]);
    softmax(a);
    softmax(b);
    expect(bits(a)).toEqual(bits(b));
  });
});
