// RoPE with our reference kernel: a query and a key at positions (m, n) score
// the same as at (m + 100, n + 100): the dot product sees only m - n.
import { CpuBackend } from '@rama/tensor-cpu';

export async function tryIt() {
  const headSize = 8;
  const be = await CpuBackend.create({ kernels: 'scalar' });
  try {
    const q0 = Float32Array.from({ length: headSize }, (_, i) => Math.sin(i + 1));
    const k0 = Float32Array.from({ length: headSize }, (_, i) => Math.cos(2 * i + 1));
    // rotate one row of headSize values as if it sat at position `pos`
    const rotate = async (v, pos) => {
      const t = await be.upload({ shape: [1, headSize], dtype: 'f32', label: 'x' }, v);
      const step = be.begin({ positions: [pos] });
      step.rope(t, headSize, 10000);
      const out = await step.read(t);
      be.free(t);
      return out;
    };
    const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
    const rows = [];
    for (const [m, n] of [[5, 3], [105, 103], [5, 4]]) {
      const score = dot(await rotate(q0, m), await rotate(k0, n));
      rows.push({ m, n, score });
      console.log(`q at ${m}, k at ${n}: q·k = ${score.toFixed(6)}`);
    }
    return rows;
  } finally {
    be.dispose();
  }
}
