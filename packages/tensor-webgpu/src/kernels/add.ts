import { expect, expectDtype, type Recorder, type RowFlow } from './common.js';
import type { GpuTensor } from '../tensor.js';
import { elementwise, elementwiseKernels } from './elementwise.js';

// The residual connection (docs/guide/residual.md): out = a + b (out may alias a or b), one invocation per
// element (elementwise.ts); one correctly rounded f32 add, exact on every backend.
export const addKernels = elementwiseKernels('add', 'a + b');

export function add(rec: Recorder, out: GpuTensor, a: GpuTensor, b: GpuTensor, rows: RowFlow): void {
  for (const t of [out, a, b]) expectDtype('add', t, 'f32');
  expect(a.size === out.size && b.size === out.size, 'add', `${out.label}, ${a.label} and ${b.label} must have the same shape`);
  elementwise(rec, 'add', out, a, b, rows);
}
