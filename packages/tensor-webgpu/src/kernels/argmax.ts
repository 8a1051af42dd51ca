import { STEP_WGSL, Params, expectDtype, expect, type KernelDef, type Recorder, type RowFlow } from './common.js';
import type { GpuTensor } from '../tensor.js';

// out[r] = index of the largest of logits[r], for each row of logits the step
// holds; the lowest index wins a tie; -1 when a logit of that row is NaN or
// infinite (tested on the exponent bits: WGSL lets an implementation assume
// floats are finite, so v != v may be optimized away).
// One dispatch per buffer part of logits, one workgroup per row in that part
// scanning the row's elements there. A row split over several parts (wider
// than a binding) is continued by each part's dispatch from the (value,
// index, bad) the previous one left in a small per-row state; the part
// holding its end writes out[r].
const WG = 256;

export const argmaxKernels: KernelDef[] = [
  {
    name: 'argmax',
    storage: ['rw', 'read', 'rw'],
    wgsl: /* wgsl */ `${STEP_WGSL}
struct P { cols: u32, e0: u32, e1: u32, r0: u32, rowsWord: u32, outE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<u32>;
const NONE = 0xffffffffu;
var<workgroup> bv: array<f32, ${WG}>;
var<workgroup> bi: array<u32, ${WG}>;
var<workgroup> bbad: array<u32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = p.r0 + wg.x;
  if (r >= rowCount(p.rowsWord)) { return; }
  // The part of row r held here: elements [lo, hi) of the flat tensor.
  let rs = r * p.cols;
  let lo = max(rs, p.e0);
  let hi = min(rs + p.cols, p.e1);
  var best = 0.0;
  var idx = NONE;
  var bad = 0u;
  for (var e = lo + li; e < hi; e += ${WG}u) {
    let v = logits[e - p.e0];
    if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { bad = 1u; }
    if (idx == NONE || v > best) { best = v; idx = e - rs; }
  }
  bv[li] = best;
  bi[li] = idx;
  bbad[li] = bad;
  workgroupBarrier();
  if (li != 0u) { return; }
  for (var i = 0u; i < ${WG}u; i++) {
    let j = bi[i];
    bad = bad | bbad[i];
    if (j != NONE && (idx == NONE || bv[i] > best || (bv[i] == best && j < idx))) { best = bv[i]; idx = j; }
  }
  let so = 4u * r;
  if (rs < p.e0) {
    // The row began in an earlier part, which holds lower indices: it keeps a tie.
    let pv = bitcast<f32>(state[so]);
    let pi = state[so + 1u];
    bad = bad | state[so + 2u];
    if (pi != NONE && (idx == NONE || pv >= best)) { best = pv; idx = pi; }
  }
  if (rs + p.cols <= p.e1) {
    out[r - p.outE0] = select(i32(idx), -1, bad != 0u);
  } else {
    state[so] = bitcast<u32>(best);
    state[so + 1u] = idx;
    state[so + 2u] = bad;
  }
}`,
  },
];

export function argmax(rec: Recorder, out: GpuTensor, logits: GpuTensor, rows: RowFlow): void {
  expectDtype('argmax', out, 'i32');
  expectDtype('argmax', logits, 'f32');
  expect(logits.cols > 0, 'argmax', `${logits.label} is empty`);
  const outPart = out.parts[0];
  expect(outPart.e1 >= rows.count, 'argmax', `${out.label}'s first ${rows.count} ids must lie in one buffer`);
  const state = rec.scratch('argmax', 16 * logits.rows);
  logits.parts.forEach((lp, i) => {
    const n = Math.min(lp.r1, rows.count) - lp.r0;
    if (n <= 0) return;
    rec.dispatch(
      'argmax',
      `argmax|${out.id}|${logits.id}|${i}|${rows.word}`,
      [out, logits],
      () => ({
        params: new Params().u(logits.cols).u(lp.e0).u(lp.e1).u(lp.r0).u(rows.word).u(outPart.e0),
        buffers: [outPart.buffer, lp.buffer, state],
      }),
      n,
    );
  });
}
