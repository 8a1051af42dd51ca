import { DIV_RN_WGSL, STEP_WGSL, Params, expect, expectDtype, singlePart, type KernelDef, type Recorder, type RowFlow } from './common.js';
import { rowChunks, type GpuTensor } from '../tensor.js';

// RMSNorm (docs/guide/rmsnorm.md). llama2.c: ss = sum(x^2) (in order),
// ss = ss / n + eps, ss = 1 / sqrt(ss), out = w * (ss * x).
// One workgroup of 64 per row. Invocation 0 sums, as llama2.c does, so the sum
// is the same sequence of f32 additions; a tree reduction would differ in
// rounding. The cost is small: dim values per row, twice per layer, against
// the matmuls' dim x dim. Then all 64 lanes scale the row, strided by 64.
function rmsnormWgsl(inPlace: boolean): string {
  const X = inPlace ? 'out' : 'xin';
  return /* wgsl */ `${STEP_WGSL}${DIV_RN_WGSL}
struct P { n: u32, rStart: u32, rowsWord: u32, outRow0: u32, xRow0: u32, eps: f32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
${inPlace ? '' : '@group(0) @binding(4) var<storage, read> xin: array<f32>;'}
var<workgroup> inv: f32;
@compute @workgroup_size(64) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = p.rStart + wg.x;
  if (r >= rowCount(p.rowsWord)) { return; }
  let xo = (r - p.xRow0) * p.n;
  let oo = (r - p.outRow0) * p.n;
  if (li == 0u) {
    var ss = 0.0;
    for (var j = 0u; j < p.n; j++) { let v = ${X}[xo + j]; ss += v * v; }
    ss = div_rn(ss, f32(p.n));
    ss += p.eps;
    inv = div_rn(1.0, sqrt(ss));
  }
  workgroupBarrier();
  let s = inv;
  for (var j = li; j < p.n; j += 64u) { out[oo + j] = w[j] * (s * ${X}[xo + j]); }
}`;
}

export const rmsnormKernels: KernelDef[] = [
  { name: 'rmsnorm', storage: ['rw', 'read', 'read'], wgsl: rmsnormWgsl(false) },
  { name: 'rmsnorm_inplace', storage: ['rw', 'read'], wgsl: rmsnormWgsl(true) },
];

export function rmsnorm(rec: Recorder, out: GpuTensor, x: GpuTensor, weight: GpuTensor, eps: number, rows: RowFlow): void {
  for (const t of [out, x, weight]) expectDtype('rmsnorm', t, 'f32');
  expect(x.cols === out.cols && weight.size === out.cols, 'rmsnorm', `${out.label}, ${x.label} and ${weight.label} must have ${out.cols} columns`);
  const w = singlePart('rmsnorm', weight);
  for (const ch of rowChunks('rmsnorm', [out, x], rows.count)) {
    const [op, xp] = ch.parts;
    const inPlace = op.buffer === xp.buffer;
    rec.dispatch(
      inPlace ? 'rmsnorm_inplace' : 'rmsnorm',
      `rmsnorm|${out.id}|${x.id}|${weight.id}|${ch.r0}|${eps}|${rows.word}`,
      [out, x, weight],
      () => ({
        params: new Params().u(out.cols).u(ch.r0).u(rows.word).u(op.r0).u(xp.r0).f(eps),
        buffers: inPlace ? [op.buffer, w] : [op.buffer, w, xp.buffer],
      }),
      ch.r1 - ch.r0,
    );
  }
}
