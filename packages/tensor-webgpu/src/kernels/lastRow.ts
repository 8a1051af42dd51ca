import { expect, expectDtype, type Recorder } from './common.js';
import { elemChunks, type GpuTensor } from '../tensor.js';

// out[0] = x[rows - 1]: a contiguous range whose place the host knows, so a
// buffer copy (one per pair of parts it crosses) rather than a kernel.
export function lastRow(rec: Recorder, out: GpuTensor, x: GpuTensor): void {
  expectDtype('lastRow', out, 'f32', 'i32');
  expect(x.dtype === out.dtype, 'lastRow', `${out.label} is ${out.dtype} but ${x.label} is ${x.dtype}`);
  expect(x.cols === out.cols, 'lastRow', `${out.label} has ${out.cols} columns, ${x.label} has ${x.cols}`);
  const r = Math.min(rec.rows, x.rows) - 1;
  for (const ch of elemChunks([out, x], 0, x.cols, [0, r * x.cols])) {
    const [op, xp] = ch.parts;
    rec.copy(xp.buffer, 4 * (ch.e0 + r * x.cols - xp.e0), op.buffer, 4 * (ch.e0 - op.e0), 4 * (ch.e1 - ch.e0));
  }
}
