import { STEP_WGSL, Params, expect, expectDtype, type KernelDef, type Recorder } from './common.js';
import { elemChunks, type GpuTensor } from '../tensor.js';

// out[0] = index of the largest of logits[0]; the lowest index wins a tie;
// -1 when a logit is NaN or infinite (tested on the exponent bits: WGSL lets
// an implementation assume floats are finite, so v != v may be optimized away).
// One workgroup scans a part; when the row spans several buffers, each part's
// dispatch merges with the (value, index) the previous one left in a small state.
const WG = 256;

export const argmaxKernels: KernelDef[] = [
  {
    name: 'argmax',
    storage: ['rw', 'read', 'rw'],
    wgsl: /* wgsl */ `${STEP_WGSL}
struct P { lo: u32, hi: u32, e0: u32, outE0: u32, first: u32, last: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;
@group(0) @binding(3) var<storage, read> logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<u32>;
const NONE = 0xffffffffu;
var<workgroup> bv: array<f32, ${WG}>;
var<workgroup> bi: array<u32, ${WG}>;
var<workgroup> bbad: array<u32, ${WG}>;
@compute @workgroup_size(${WG}) fn main(@builtin(local_invocation_index) li: u32) {
  var best = 0.0;
  var idx = NONE;
  var bad = 0u;
  for (var e = p.lo + li; e < p.hi; e += ${WG}u) {
    let v = logits[e - p.e0];
    if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { bad = 1u; }
    if (idx == NONE || v > best) { best = v; idx = e; }
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
  if (p.first == 0u) {
    // Earlier parts hold lower indices: they keep a tie.
    let pv = bitcast<f32>(state[0]);
    let pi = state[1];
    bad = bad | state[2];
    if (pi != NONE && (idx == NONE || pv >= best)) { best = pv; idx = pi; }
  }
  if (p.last != 0u) {
    out[0u - p.outE0] = select(i32(idx), -1, bad != 0u);
  } else {
    state[0] = bitcast<u32>(best);
    state[1] = idx;
    state[2] = bad;
  }
}`,
  },
];

export function argmax(rec: Recorder, out: GpuTensor, logits: GpuTensor): void {
  expectDtype('argmax', out, 'i32');
  expectDtype('argmax', logits, 'f32');
  expect(logits.cols > 0, 'argmax', `${logits.label} is empty`);
  const outPart = out.parts[0];
  const state = rec.scratch('argmax', 16);
  const chunks = elemChunks([logits], 0, logits.cols);
  chunks.forEach((ch, i) => {
    const lp = ch.parts[0];
    const first = i === 0 ? 1 : 0;
    const last = i === chunks.length - 1 ? 1 : 0;
    rec.dispatch(
      'argmax',
      `argmax|${out.id}|${logits.id}|${ch.e0}`,
      [out, logits],
      () => ({
        params: new Params().u(ch.e0).u(ch.e1).u(lp.e0).u(outPart.e0).u(first).u(last),
        buffers: [outPart.buffer, lp.buffer, state],
      }),
      1,
    );
  });
}
