import { checkRowsInCache, kvGeometry } from '@rama/backend';
import { DIV_RN_WGSL, F16_WGSL, STEP_WGSL, Params, expect, expectDtype, type KernelDef, type Recorder, type RowFlow } from './common.js';
import { rowChunks, type GpuTensor, type Part } from '../tensor.js';

// Attention (docs/guide/attention.md, docs/guide/gqa.md, docs/guide/webgpu.md).
// Causal GQA attention, fused: one workgroup per (query row, head) streams
// positions 0..positions[r] of its row's slot of the layer's keys and values
// (cache rows (layer * slots + slots[r]) * seqLen + t) in tiles of 32 with an
// online softmax (running max m, running sum l, unnormalised output acc), so
// nothing sized by seqLen is ever stored. When the layer's cache spans several
// buffers, one dispatch per buffer continues the same online softmax from a
// small state ([m, l, acc] per row and head) left by the previous dispatch
// (a row whose positions lie in other buffers passes it on unchanged); the
// last one normalises into `out`. Row r's position and slot come from the step
// buffer, so the bind groups do not depend on them.
//
// Each score is computed as the CPU reference does: a sequential f32 sum over
// the head dimension of separately rounded products (score = score + q_i * k_i,
// no fma), then one correctly rounded division by f32(sqrt(headSize)). The
// softmax itself differs (online rescaling, WGSL's exp): see the README.
//
// The KV cache is f32, or f16 (attention_f16): two f16s per u32 word, in the
// standard layout, each widened exactly (f16v) where an f32 cache's value is
// read, so the result is that of an f32 cache holding the same values.
const TILE = 32;
const MAX_HEAD = 256; // 8 accumulators per thread

/** Reads element e (counted from the binding's start) of the keys (kc) and values (vc) as f32. */
const KV_F32_WGSL = /* wgsl */ `
@group(0) @binding(4) var<storage, read> kc: array<f32>;
@group(0) @binding(5) var<storage, read> vc: array<f32>;
fn key(e: u32) -> f32 { return kc[e]; }
fn value(e: u32) -> f32 { return vc[e]; }
`;
const KV_F16_WGSL = /* wgsl */ `${F16_WGSL}
@group(0) @binding(4) var<storage, read> kc: array<u32>;
@group(0) @binding(5) var<storage, read> vc: array<u32>;
fn key(e: u32) -> f32 { return f16v((kc[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu); }
fn value(e: u32) -> f32 { return f16v((vc[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu); }
`;

export const attentionKernels: KernelDef[] = (['f32', 'f16'] as const).map((kv) => ({
  name: kv === 'f32' ? 'attention' : 'attention_f16',
  storage: ['rw', 'read', 'read', 'read', 'rw'],
  wgsl: /* wgsl */ `${STEP_WGSL}${DIV_RN_WGSL}${kv === 'f32' ? KV_F32_WGSL : KV_F16_WGSL}
// a / b correctly rounded, for b > 0 (scores may be negative).
fn div_rn_signed(a: f32, b: f32) -> f32 {
  let r = div_rn(abs(a), b);
  return select(r, -r, a < 0.0);
}
// c0, c1: the cache rows this dispatch's buffers hold; layerSlot0 = layer * slots.
struct P { qCols: u32, hs: u32, kvDim: u32, kvMul: u32, layerSlot0: u32, seqLen: u32, kRow0: u32, vRow0: u32, c0: u32,
  c1: u32, rStart: u32, rowsWord: u32, qRow0: u32, outRow0: u32, first: u32, last: u32, sqrtHs: f32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> q: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<f32>;
var<workgroup> qs: array<f32, ${MAX_HEAD}>;
var<workgroup> sc: array<f32, ${TILE}>;
@compute @workgroup_size(${TILE}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wg.x;
  let r = p.rStart + wg.y;
  if (r >= rowCount(p.rowsWord)) { return; }
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
  // This row's cache rows [base, base + position] that lie in this dispatch's buffers.
  let base = (p.layerSlot0 + rowSlot(r)) * p.seqLen;
  let lo = max(p.c0, base);
  let hi = min(p.c1, base + rowPos(r) + 1u);
  for (var t0 = lo; t0 < hi; t0 += ${TILE}u) {
    let n = min(${TILE}u, hi - t0);
    if (li < n) {
      let ko = (t0 + li - p.kRow0) * p.kvDim + kvh * hs;
      var s = 0.0;
      for (var d = 0u; d < hs; d++) {
        let prod = qs[d] * key(ko + d);
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
      let vo = (t0 + j - p.vRow0) * p.kvDim + kvh * hs + li;
      for (var i = 0u; i * ${TILE}u + li < hs; i++) { acc[i] += pj * value(vo + i * ${TILE}u); }
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
}));

/** Ranges [c0, c1) of cache rows within [row0, row1) (one layer, all slots) that lie in one part of both caches. */
function kvChunks(keys: GpuTensor, values: GpuTensor, row0: number, row1: number): { c0: number; c1: number; kp: Part; vp: Part }[] {
  const res: { c0: number; c1: number; kp: Part; vp: Part }[] = [];
  for (let c = row0; c < row1; ) {
    const kp = keys.parts.find((p) => p.r0 <= c && c < p.r1)!;
    const vp = values.parts.find((p) => p.r0 <= c && c < p.r1)!;
    const c1 = Math.min(kp.r1, vp.r1, row1);
    res.push({ c0: c, c1, kp, vp });
    c = c1;
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
  rows: RowFlow,
): void {
  for (const t of [out, q]) expectDtype('attention', t, 'f32');
  expectDtype('attention', keys, 'f32', 'f16');
  expect(values.dtype === keys.dtype, 'attention', `${keys.label} is ${keys.dtype} but ${values.label} is ${values.dtype}`);
  const kernel = keys.dtype === 'f16' ? 'attention_f16' : 'attention';
  const g = kvGeometry(keys, 'attention');
  expect(values.shape.join() === keys.shape.join(), 'attention', `${keys.label} and ${values.label} must have the same shape`);
  checkRowsInCache(keys, layer, rec.layout, 'attention');
  const { kvDim, seqLen } = g;
  expect(headSize > 0 && headSize <= MAX_HEAD && q.cols % headSize === 0 && kvDim % headSize === 0, 'attention', `head size ${headSize} must divide ${q.cols} and ${kvDim} and be at most ${MAX_HEAD}`);
  expect(out.cols === q.cols, 'attention', `${out.label} has ${out.cols} columns, ${q.label} has ${q.cols}`);
  const nHeads = q.cols / headSize;
  const nKv = kvDim / headSize;
  expect(nHeads % nKv === 0, 'attention', `${nHeads} query heads are not a multiple of ${nKv} KV heads`);
  for (const c of [keys, values]) {
    if (!c.parts.every((p) => p.wholeRows)) rowChunks('attention', [c], 0); // throws the "whole rows" error
  }
  const layerSlot0 = layer * g.slots;
  const kv = kvChunks(keys, values, layerSlot0 * seqLen, (layerSlot0 + g.slots) * seqLen);
  const sqrtHs = Math.fround(Math.sqrt(headSize));
  // Cache row of row r's position 0, and of its own position.
  const start = (r: number): number => (layerSlot0 + rec.slots[r]) * seqLen;
  const own = (r: number): number => start(r) + rec.positions[r];
  for (const ch of rowChunks('attention', [out, q], rows.count)) {
    const [op, qp] = ch.parts;
    const state = rec.scratch('attention', 4 * (ch.end - ch.r0) * nHeads * (headSize + 2));
    // Only the buffers these rows read: from the chunk holding the lowest row any of them starts at
    // to the one holding the highest row any of them reads (all of them for a single sequence's rows).
    let lo = Infinity;
    let hi = -1;
    for (let r = ch.r0; r < ch.r1; r++) {
      lo = Math.min(lo, start(r));
      hi = Math.max(hi, own(r));
    }
    const iLo = kv.findIndex((c) => c.c1 > lo);
    const iHi = kv.findIndex((c) => c.c1 > hi);
    for (let i = iLo; i <= iHi; i++) {
      const c = kv[i];
      const isFirst = i === iLo ? 1 : 0;
      const isLast = i === iHi ? 1 : 0;
      rec.dispatch(
        kernel,
        `attn|${out.id}|${q.id}|${keys.id}|${values.id}|${layer}|${headSize}|${ch.r0}|${c.c0}|${isFirst}|${isLast}|${rows.word}`,
        [out, q, keys, values],
        () => ({
          params: new Params()
            .u(q.cols).u(headSize).u(kvDim).u(nHeads / nKv).u(layerSlot0).u(seqLen).u(c.kp.r0).u(c.vp.r0).u(c.c0)
            .u(c.c1).u(ch.r0).u(rows.word).u(qp.r0).u(op.r0).u(isFirst).u(isLast).f(sqrtHs),
          buffers: [op.buffer, qp.buffer, c.kp.buffer, c.vp.buffer, state],
        }),
        nHeads,
        ch.r1 - ch.r0,
      );
    }
  }
}
