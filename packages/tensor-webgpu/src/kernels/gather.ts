import { copyElems, expect, expectDtype, runs, type Recorder } from './common.js';
import type { GpuTensor } from '../tensor.js';

// out[i] = x[rows[i]]: the rows whose logits are wanted (each sequence's last
// row). The host knows the rows when recording, so this is buffer copies (one
// per run of consecutive source rows, and per pair of parts a run crosses)
// rather than a kernel. When out and x are one tensor, the rows go through a
// scratch buffer first: a copy may not read and write one buffer, and a later
// row may read what an earlier one would overwrite.
export function gather(rec: Recorder, out: GpuTensor, x: GpuTensor, rows: number[]): void {
  expectDtype('gather', out, 'f32', 'i32');
  expect(x.dtype === out.dtype, 'gather', `${out.label} is ${out.dtype} but ${x.label} is ${x.dtype}`);
  expect(x.cols === out.cols, 'gather', `${out.label} has ${out.cols} columns, ${x.label} has ${x.cols}`);
  const n = x.cols;
  const k = rows.length;
  let dst: { parts: GpuTensor['parts'] } = out;
  if (out === x) {
    const buffer = rec.scratch('gather', 4 * k * n);
    dst = { parts: [{ buffer, e0: 0, e1: k * n, r0: 0, r1: k, wholeRows: true, scaleOffset: 0, bytes: 4 * k * n }] };
  }
  for (const [i0, i1] of runs(k, (i) => rows[i] === rows[i - 1] + 1)) {
    copyElems(rec, x, rows[i0] * n, dst, i0 * n, (i1 - i0) * n);
  }
  if (dst !== out) copyElems(rec, dst, 0, out, 0, k * n);
}
