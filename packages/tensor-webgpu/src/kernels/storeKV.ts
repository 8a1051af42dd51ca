import { expect, expectDtype, rowsFor, type Recorder } from './common.js';
import { elemChunks, type GpuTensor } from '../tensor.js';

// cache[layer, pos + r] = src[r]. The rows are contiguous in both tensors and
// the host knows pos and rows when recording, so this is a buffer copy (one per
// pair of parts it crosses) rather than a kernel.
export function storeKV(rec: Recorder, cache: GpuTensor, layer: number, src: GpuTensor): void {
  expectDtype('storeKV', cache, 'f32');
  expectDtype('storeKV', src, 'f32');
  expect(cache.shape.length === 3, 'storeKV', `${cache.label} must be [layers, seqLen, kvDim], got [${cache.shape.join(', ')}]`);
  const [layers, seqLen, kvDim] = cache.shape;
  expect(src.cols === kvDim, 'storeKV', `${src.label} has ${src.cols} columns, ${cache.label} has kvDim ${kvDim}`);
  expect(Number.isInteger(layer) && layer >= 0 && layer < layers, 'storeKV', `layer ${layer} is outside 0..${layers - 1}`);
  const rows = rowsFor(rec, src);
  expect(rec.pos + rows <= seqLen, 'storeKV', `positions ${rec.pos}..${rec.pos + rows - 1} exceed seqLen ${seqLen}`);
  const dst0 = (layer * seqLen + rec.pos) * kvDim;
  for (const ch of elemChunks([src, cache], 0, rows * kvDim, [0, dst0])) {
    const [sp, cp] = ch.parts;
    rec.copy(sp.buffer, 4 * (ch.e0 - sp.e0), cp.buffer, 4 * (ch.e0 + dst0 - cp.e0), 4 * (ch.e1 - ch.e0));
  }
}
