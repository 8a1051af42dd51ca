/**
 * Numerics shared by the sampler and the CPU backends' reference kernels, with
 * every step rounded to f32 exactly where llama2.c's C rounds it: the goldens
 * (llama2.c's own outputs) depend on these bits.
 */

const f32 = Math.fround;

/** llama2.c's softmax over the first n values, in place, with every step rounded to f32 as C does. */
export function softmax(x: Float32Array, n = x.length): void {
  let max = x[0];
  for (let i = 1; i < n; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < n; i++) {
    x[i] = Math.exp(f32(x[i] - max));
    sum = f32(sum + x[i]);
  }
  for (let i = 0; i < n; i++) x[i] = x[i] / sum;
}
