import { DIV_RN_WGSL, expect, expectDtype, type Recorder, type RowFlow } from './common.js';
import type { GpuTensor } from '../tensor.js';
import { elementwise, elementwiseKernels } from './elementwise.js';

// SwiGLU's gate (docs/guide/swiglu.md), one invocation per element (elementwise.ts).
// llama2.c: val = gate * (1 / (1 + expf(-gate))) * up. The reciprocal is
// correctly rounded (div_rn); WGSL's exp is not (3 + 2|x| ulp allowed), so a
// value may differ from the CPU's in the last bits.
export const swigluKernels = elementwiseKernels('swiglu', 'silu(a) * b').map((k) => ({
  ...k,
  wgsl: `${k.wgsl}\n${DIV_RN_WGSL}\nfn silu(g: f32) -> f32 { return g * div_rn(1.0, 1.0 + exp(-g)); }`,
}));

export function swiglu(rec: Recorder, out: GpuTensor, gate: GpuTensor, up: GpuTensor, rows: RowFlow): void {
  for (const t of [out, gate, up]) expectDtype('swiglu', t, 'f32');
  expect(gate.size === out.size && up.size === out.size, 'swiglu', `${out.label}, ${gate.label} and ${up.label} must have the same shape`);
  elementwise(rec, 'swiglu', out, gate, up, rows);
}
