// SwiGLU's gate with our reference kernel: out = silu(gate) * up, silu(g) = g / (1 + e^-g).
import { CpuBackend } from '@rama/tensor-cpu';

export async function tryIt() {
  const gate = Float32Array.of(-4, -1, 0, 1, 4);
  const up = Float32Array.of(1, 1, 1, 1, 1); // up = 1: the output is silu(gate) itself
  const be = await CpuBackend.create({ kernels: 'scalar' });
  try {
    const desc = (label) => ({ shape: [1, gate.length], dtype: 'f32', label });
    const g = await be.upload(desc('gate'), gate);
    const u = await be.upload(desc('up'), up);
    const out = be.alloc(desc('out'));
    const step = be.begin({ positions: [0] });
    step.swiglu(out, g, u);
    const silu = Array.from(await step.read(out));
    console.log('gate       ', Array.from(gate).join('  '));
    console.log('silu(gate) ', silu.map((v) => v.toFixed(3)).join('  '));
    return { gate: Array.from(gate), silu };
  } finally {
    be.dispose();
  }
}
