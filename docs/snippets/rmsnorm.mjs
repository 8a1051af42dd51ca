// RMSNorm with our reference kernel: whatever the size of x, the output has root mean square ~1 (before the gain).
import { CpuBackend } from '@rama/tensor-cpu';

export async function tryIt() {
  const n = 64;
  const be = await CpuBackend.create({ kernels: 'scalar' });
  try {
    const ones = await be.upload({ shape: [n], dtype: 'f32', label: 'g' }, new Float32Array(n).fill(1));
    const rms = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length);
    const rows = [];
    for (const size of [0.001, 1, 1000]) {
      const x = Float32Array.from({ length: n }, (_, i) => size * Math.sin(3 * i + 1));
      const xt = await be.upload({ shape: [1, n], dtype: 'f32', label: 'x' }, x);
      const out = be.alloc({ shape: [1, n], dtype: 'f32', label: 'out' });
      const step = be.begin({ positions: [0] });
      step.rmsnorm(out, xt, ones, 1e-5);
      const y = await step.read(out);
      rows.push({ x: Array.from(x), y: Array.from(y) });
      console.log(`rms(x) = ${rms(x).toExponential(2)}  ->  rms(y) = ${rms(y).toFixed(4)}`);
      be.free(xt);
      be.free(out);
    }
    return rows;
  } finally {
    be.dispose();
  }
}
