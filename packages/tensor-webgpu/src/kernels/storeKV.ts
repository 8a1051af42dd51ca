import { checkRowsInCache, kvOffset } from '@rama/backend';
import { copyElems, expect, expectDtype, runs, type Recorder } from './common.js';
import type { GpuTensor } from '../tensor.js';

// cache[layer, slots[r], positions[r]] = src[r] for each of the step's rows.
// The host knows every row's destination when recording, so this is buffer
// copies rather than a kernel: one per run of rows that are consecutive
// positions of one slot (contiguous in both tensors: a prompt's rows are one
// run, each decoding row its own), and per pair of buffer parts a run crosses.
// Copies are ordered with the step's dispatches, so attention later in the
// step sees them.
export function storeKV(rec: Recorder, cache: GpuTensor, layer: number, src: GpuTensor): void {
  expectDtype('storeKV', cache, 'f32');
  expectDtype('storeKV', src, 'f32');
  const g = checkRowsInCache(cache, layer, rec.layout, 'storeKV');
  expect(src.cols === g.kvDim, 'storeKV', `${src.label} has ${src.cols} columns, ${cache.label} has kvDim ${g.kvDim}`);
  expect(src.rows >= rec.rows, 'storeKV', `${src.label} has ${src.rows} rows, the step has ${rec.rows}`);
  const { positions, slots } = rec;
  const contiguous = (r: number): boolean => slots[r] === slots[r - 1] && positions[r] === positions[r - 1] + 1;
  for (const [r0, r1] of runs(rec.rows, contiguous)) {
    const dst0 = kvOffset(g, layer, slots[r0]) + positions[r0] * g.kvDim;
    copyElems(rec, src, r0 * g.kvDim, cache, dst0, (r1 - r0) * g.kvDim);
  }
}
