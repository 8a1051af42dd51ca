import { DIV_RN_WGSL, STEP_WGSL, Params, expect, expectDtype, rowLimit, rowsFor, type KernelDef, type Recorder } from './common.js';
import { rowChunks, type GpuTensor, type Part } from '../tensor.js';

// Causal GQA attention, fused: one workgroup per (query row, head) streams the
// layer's keys and values in tiles of 32 positions with an online softmax
// (running max m, running sum l, unnormalised output acc), so nothing sized by
// seqLen is ever stored. When the layer's cache spans several buffers, one
// dispatch per buffer continues the same online softmax from a small state
// ([m, l, acc] per row and head) left by the previous dispatch; the last one
// normalises into `out`.
//
// Each score is computed as the CPU reference does: a sequential f32 sum over
// the head dimension of separately rounded products (score = score + q_i * k_i,
// no fma), then one correctly rounded division by f32(sqrt(headSize)). The
// softmax itself differs (online rescaling, WGSL's exp): see the README.
const TILE = 32;
const MAX_HEAD = 256; // 8 accumulators per thread

export const attentionKernels: KernelDef[] = [
  {
    name: 'attention',
    storage: ['rw', 'read', 'read', 'read', 'rw'],
    wgsl: /* wgsl */ `${STEP_WGSL}${DIV_RN_WGSL}
// a / b correctly rounded, for b > 0 (scores may be negative).
fn div_rn_signed(a: f32, b: f32) -> f32 {
  let r = div_rn(abs(a), b);
  return select(r, -r, a < 0.0);
}
struct P { qCols: u32, hs: u32, kvDim: u32, kvMul: u32, layerRow0: u32, kRow0: u32, vRow0: u32, t0: u32,
  t1: u32, rStart: u32, rowLimit: u32, qRow0: u32, outRow0: u32, first: u32, last: u32, sqrtHs: f32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> kc: array<f32>;
@group(0) @binding(5) var<storage, read> vc: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<f32>;
var<workgroup> qs: array<f32, ${MAX_HEAD}>;
var<workgroup> sc: array<f32, ${TILE}>;
@compute @workgroup_size(${TILE}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wg.x;
  let r = p.rStart + wg.y;
  if (r >= min(step.rows, p.rowLimit)) { return; }
  let hs = p.hs;
  let qo = (r - p.qRow0) * p.qCols + h * hs;
  let kvh = h / p.kvMul;
  let so = (wg.y * (p.qCols / hs) + h) * (hs + 2u);
  for (var d = li; d < hs; d += ${TILE}u) { qs[d] = q[qo + d]; }
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, ${MAX_HEAD / TILE}>;
  if (p.first == 0u) {
    m = state[so];
    l = state[so + 1u];
    for (var i = 0u; i * ${TILE}u + li < hs; i++) { acc[i] = state[so + 2u + i * ${TILE}u + li]; }
  }
  workgroupBarrier();
  let hi = min(p.t1, step.pos + r + 1u);
  for (var t0 = p.t0; t0 < hi; t0 += ${TILE}u) {
    let n = min(${TILE}u, hi - t0);
    if (li < n) {
      let ko = (p.layerRow0 + t0 + li - p.kRow0) * p.kvDim + kvh * hs;
      var s = 0.0;
      for (var d = 0u; d < hs; d++) {
        let prod = qs[d] * kc[ko + d];
        s = s + prod;
      }
      sc[li] = div_rn_signed(s, p.sqrtHs);
    }
    workgroupBarrier();
    var mt = m;
    for (var j = 0u; j < n; j++) { mt = max(mt, sc[j]); }
    let corr = exp(m - mt);
    l = l * corr;
    for (var i = 0u; i * ${TILE}u + li < hs; i++) { acc[i] = acc[i] * corr; }
    for (var j = 0u; j < n; j++) {
      let pj = exp(sc[j] - mt);
      l += pj;
      let vo = (p.layerRow0 + t0 + j - p.vRow0) * p.kvDim + kvh * hs + li;
      for (var i = 0u; i * ${TILE}u + li < hs; i++) { acc[i] += pj * vc[vo + i * ${TILE}u]; }
    }
    m = mt;
    workgroupBarrier();
  }
  if (p.last != 0u) {
    let oo = (r - p.outRow0) * p.qCols + h * hs;
    for (var i = 0u; i * ${TILE}u + li < hs; i++) { out[oo + i * ${TILE}u + li] = acc[i] / l; }
  } else {
    if (li == 0u) { state[so] = m; state[so + 1u] = l; }
    for (var i = 0u; i * ${TILE}u + li < hs; i++) { state[so + 2u + i * ${TILE}u + li] = acc[i]; }
  }
}`,
  },
];

/** Position ranges [t0, t1) of one layer that lie in one part of both caches. */
function kvChunks(keys: GpuTensor, values: GpuTensor, layerRow0: number, positions: number): { t0: number; t1: number; kp: Part; vp: Part }[] {
  const res: { t0: number; t1: number; kp: Part; vp: Part }[] = [];
  let t = 0;
  while (t < positions) {
    const row = layerRow0 + t;
    const kp = keys.parts.find((p) => p.r0 <= row && row < p.r1)!;
    const vp = values.parts.find((p) => p.r0 <= row && row < p.r1)!;
    const t1 = Math.min(kp.r1, vp.r1) - layerRow0;
    res.push({ t0: t, t1, kp, vp });
    t = t1;
  }
  return res;
}

export function attention(
  rec: Recorder,
  out: GpuTensor,
  q: GpuTensor,
  keys: GpuTensor,
  values: GpuTensor,
  layer: number,
  headSize: number,
): void {
  for (const t of [out, q, keys, values]) expectDtype('attention', t, 'f32');
  expect(keys.shape.length === 3 && values.shape.join() === keys.shape.join(), 'attention', `${keys.label} and ${values.label} must both be [layers, seqLen, kvDim]`);
  const [layers, seqLen, kvDim] = keys.shape;
  expect(Number.isInteger(layer) && layer >= 0 && layer < layers, 'attention', `layer ${layer} is outside 0..${layers - 1}`);
  expect(headSize > 0 && headSize <= MAX_HEAD && q.cols % headSize === 0 && kvDim % headSize === 0, 'attention', `head size ${headSize} must divide ${q.cols} and ${kvDim} and be at most ${MAX_HEAD}`);
  expect(out.cols === q.cols, 'attention', `${out.label} has ${out.cols} columns, ${q.label} has ${q.cols}`);
  const nHeads = q.cols / headSize;
  const nKv = kvDim / headSize;
  expect(nHeads % nKv === 0, 'attention', `${nHeads} query heads are not a multiple of ${nKv} KV heads`);
  for (const c of [keys, values]) {
    if (!c.parts.every((p) => p.wholeRows)) rowChunks('attention', [c], 0); // throws the "whole rows" error
  }
  const rows = rowsFor(rec, out);
  const lim = rowLimit(out);
  expect(rec.pos + rows <= seqLen, 'attention', `positions up to ${rec.pos + rows - 1} exceed seqLen ${seqLen}`);
  const layerRow0 = layer * seqLen;
  const kv = kvChunks(keys, values, layerRow0, rec.pos + rows);
  const sqrtHs = Math.fround(Math.sqrt(headSize));
  for (const ch of rowChunks('attention', [out, q], rows)) {
    const [op, qp] = ch.parts;
    const state = rec.scratch('attention', 4 * (ch.end - ch.r0) * nHeads * (headSize + 2));
    kv.forEach((c, i) => {
      const first = i === 0 ? 1 : 0;
      const last = i === kv.length - 1 ? 1 : 0;
      rec.dispatch(
        'attention',
        `attn|${out.id}|${q.id}|${keys.id}|${values.id}|${layer}|${headSize}|${ch.r0}|${c.t0}|${last}|${lim}`,
        [out, q, keys, values],
        () => ({
          params: new Params()
            .u(q.cols).u(headSize).u(kvDim).u(nHeads / nKv).u(layerRow0).u(c.kp.r0).u(c.vp.r0).u(c.t0)
            .u(c.t1).u(ch.r0).u(lim).u(qp.r0).u(op.r0).u(first).u(last).f(sqrtHs),
          buffers: [op.buffer, qp.buffer, c.kp.buffer, c.vp.buffer, state],
        }),
        nHeads,
        ch.r1 - ch.r0,
      );
    });
  }
}
