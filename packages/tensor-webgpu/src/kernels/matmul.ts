import { F16_WGSL, STEP_WGSL, Params, expect, expectDtype, grid2, type Access, type KernelDef, type Recorder, type RowFlow } from './common.js';
import { rowChunks, type GpuTensor, type Part } from '../tensor.js';
import { matmulQ4Chunk, matmulQ8Chunk } from './matmulQ8.js';
import { isKQuant, matmulKChunk } from './matmulK.js';

// The matmul (docs/guide/webgpu.md): most of a token's time, and all of its weight reads.
// out[r, j] = sum_k w[j, k] * x[r, k], summed in k order as llama2.c does.
// One thread per output column j and up to 4 rows of a batch (the weight row
// stays in cache between them); vec4 loads when n % 4 == 0. Each sum is a
// compensated (Dot2) sum in k order: see matmulF32Header.
/**
 * What both f32 kernels share: their params and bindings, and the
 * Ogita-Rump-Oishi Dot2 step. The exact error of each product (fma) and of
 * each addition (TwoSum) is carried in sc.y, so sc.x + sc.y is the sum as if
 * accumulated in twice the precision and rounded once, as the reference
 * (f64 accumulator) does.
 */
function matmulF32Header(T: string, W: WeightKind): string {
  return /* wgsl */ `${STEP_WGSL}
struct P { n: u32, d: u32, j0: u32, j1: u32, rStart: u32, rEnd: u32, rowsWord: u32, xRow0: u32, wRow0: u32, outE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<${T}>;
@group(0) @binding(4) var<storage, read> w: array<${W === 'f32' ? T : 'u32'}>;
${weightLoads(W, T)}fn dot2(sc: vec2<f32>, a: f32, b: f32) -> vec2<f32> {
  let p = a * b;
  let pe = fma(a, b, -p);
  let t = sc.x + p;
  let z = t - sc.x;
  return vec2<f32>(t, sc.y + ((sc.x - (t - z)) + (p - z)) + pe);
}
`;
}

/**
 * How the f32 kernels read a weight: f32 as stored; f16 and bf16 packed two
 * to a u32 word (the tensor's own bytes: element e is half e & 1 of word
 * e >> 1, low half first) and widened to f32 exactly. wAt(e) reads element
 * e, wAt4(i) elements 4i..4i+3 (two words).
 */
export type WeightKind = 'f32' | 'f16' | 'bf16';


function weightLoads(W: WeightKind, T: string): string {
  if (W === 'f32') return T === 'f32' ? 'fn wAt(e: u32) -> f32 { return w[e]; }' : 'fn wAt4(i: u32) -> vec4<f32> { return w[i]; }';
  const lo = W === 'f16' ? 'f16v(v & 0xffffu)' : 'bitcast<f32>(v << 16u)';
  const hi = W === 'f16' ? 'f16v(v >> 16u)' : 'bitcast<f32>(v & 0xffff0000u)';
  return /* wgsl */ `${W === 'f16' ? F16_WGSL : ''}
fn wLo(v: u32) -> f32 { return ${lo}; }
fn wHi(v: u32) -> f32 { return ${hi}; }
fn wAt(e: u32) -> f32 { let v = w[e >> 1u]; return select(wLo(v), wHi(v), (e & 1u) == 1u); }
fn wAt4(i: u32) -> vec4<f32> { let a = w[2u * i]; let b = w[2u * i + 1u]; return vec4<f32>(wLo(a), wHi(a), wLo(b), wHi(b)); }
`;
}

function matmulWgsl(vec4: boolean, W: WeightKind = 'f32'): string {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const body = vec4
    ? `for (var k = 0u; k < p.n / 4u; k++) {
      let wv = wAt4(wo / 4u + k);
      let xv = x[xo / 4u + k];
      sc = dot2(sc, wv.x, xv.x);
      sc = dot2(sc, wv.y, xv.y);
      sc = dot2(sc, wv.z, xv.z);
      sc = dot2(sc, wv.w, xv.w);
    }`
    : 'for (var k = 0u; k < p.n; k++) { sc = dot2(sc, wAt(wo + k), x[xo + k]); }';
  return /* wgsl */ `${matmulF32Header(T, W)}
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = p.j0 + gid.x;
  let ra = p.rStart + gid.y * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let wo = (j - p.wRow0) * p.n;
  for (var i = 0u; i < nr; i++) {
    let xo = (ra + i - p.xRow0) * p.n;
    var sc = vec2<f32>(0.0, 0.0);
    ${body}
    out[(ra + i) * p.d + j - p.outE0] = sc.x + sc.y;
  }
}`;
}

/** Threads per workgroup of the workgroup matmul kernels (f32 and q8_0). */
export const MM_WG = 64;

// The workgroup variant, for GPUs: one workgroup of MM_WG threads per output
// column j (and up to 4 rows of a batch), its threads striding over k so that
// consecutive threads read consecutive vec4s (or f32s) of the weight row:
// coalesced loads. Each thread keeps its own Dot2 pair (s, c) per row; the
// pairs are combined in workgroup memory with TwoSum (s1 + s2 split exactly
// into sum and error, c = c1 + c2 + error), so s + c is still the sum as if
// accumulated in twice f32 precision and rounded once, whatever the order.
// The reduction is two levels (8 threads per row each combine 8 pairs, then
// one thread per row combines those 8): two barriers.
function matmulWgWgsl(vec4: boolean, W: WeightKind = 'f32'): string {
  const T = vec4 ? 'vec4<f32>' : 'f32';
  const load = vec4
    ? `let wv = wAt4(wo / 4u + k);
      for (var i = 0u; i < nr; i++) {
        let xv = x[(ra + i - p.xRow0) * (p.n / 4u) + k];
        var a = acc[i];
        a = dot2(a, wv.x, xv.x);
        a = dot2(a, wv.y, xv.y);
        a = dot2(a, wv.z, xv.z);
        a = dot2(a, wv.w, xv.w);
        acc[i] = a;
      }`
    : `let wv = wAt(wo + k);
      for (var i = 0u; i < nr; i++) { acc[i] = dot2(acc[i], wv, x[(ra + i - p.xRow0) * p.n + k]); }`;
  return /* wgsl */ `${matmulF32Header(T, W)}
// Combines two pairs: TwoSum of the sums, the error joins the compensations.
fn join(u: vec2<f32>, v: vec2<f32>) -> vec2<f32> {
  let t = u.x + v.x;
  let z = t - u.x;
  return vec2<f32>(t, (u.y + v.y) + ((u.x - (t - z)) + (v.x - z)));
}
var<workgroup> red: array<vec2<f32>, ${4 * MM_WG}>;
@compute @workgroup_size(${MM_WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = p.j0 + wg.y * 65535u + wg.x;
  let ra = p.rStart + wg.z * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let wo = (j - p.wRow0) * p.n;
  var acc: array<vec2<f32>, 4>;
  for (var k = lid; k < ${vec4 ? 'p.n / 4u' : 'p.n'}; k += ${MM_WG}u) {
    ${load}
  }
  for (var i = 0u; i < 4u; i++) { red[i * ${MM_WG}u + lid] = acc[i]; }
  workgroupBarrier();
  if (lid < 32u) {
    let b = (lid / 8u) * ${MM_WG}u + (lid % 8u) * 8u;
    var a = red[b];
    for (var q = 1u; q < 8u; q++) { a = join(a, red[b + q]); }
    red[b] = a;
  }
  workgroupBarrier();
  if (lid < nr) {
    var a = red[lid * ${MM_WG}u];
    for (var q = 1u; q < 8u; q++) { a = join(a, red[lid * ${MM_WG}u + q * 8u]); }
    out[(ra + lid) * p.d + j - p.outE0] = a.x + a.y;
  }
}`;
}

// The same four kernels for f32, f16 and bf16 weights: they differ only in how a weight is read (weightLoads).
export const matmulKernels: KernelDef[] = (['f32', 'f16', 'bf16'] as const).flatMap((W) => [
  { name: `matmul_${W}`, storage: ['rw', 'read', 'read'] as Access[], wgsl: matmulWgsl(false, W) },
  { name: `matmul_${W}_v4`, storage: ['rw', 'read', 'read'] as Access[], wgsl: matmulWgsl(true, W) },
  { name: `matmul_${W}_wg`, storage: ['rw', 'read', 'read'] as Access[], wgsl: matmulWgWgsl(false, W) },
  { name: `matmul_${W}_v4_wg`, storage: ['rw', 'read', 'read'] as Access[], wgsl: matmulWgWgsl(true, W) },
]);

/** A block of outputs one dispatch computes: rows [rStart, rEnd) by columns [j0, j1). */
export interface MatmulBlock {
  rStart: number;
  rEnd: number;
  j0: number;
  j1: number;
  outPart: Part;
  wPart: Part;
  key: string;
}

/** Blocks covering the outputs of rows [chunkR0, chunkEnd) (static bounds) that `rows` needs. */
function blocks(out: GpuTensor, w: GpuTensor, chunkR0: number, chunkEnd: number, rows: number): MatmulBlock[] {
  const res: MatmulBlock[] = [];
  const d = out.cols;
  for (const op of out.parts) {
    const rStart = Math.max(chunkR0, op.r0);
    const rEnd = Math.min(chunkEnd, op.r1);
    if (rStart >= rEnd || rStart >= rows) continue;
    const c0 = op.wholeRows ? 0 : op.e0 - op.r0 * d;
    const c1 = op.wholeRows ? d : op.e1 - op.r0 * d;
    for (const wp of w.parts) {
      const j0 = Math.max(c0, wp.r0);
      const j1 = Math.min(c1, wp.r1);
      if (j0 >= j1) continue;
      res.push({ rStart, rEnd, j0, j1, outPart: op, wPart: wp, key: `${rStart}|${j0}` });
    }
  }
  return res;
}

export function matmul(rec: Recorder, out: GpuTensor, x: GpuTensor, w: GpuTensor, flow: RowFlow): void {
  expectDtype('matmul', out, 'f32');
  expectDtype('matmul', x, 'f32');
  expectDtype('matmul', w, 'f32', 'q8_0', 'f16', 'bf16', 'q4_0', 'q4_k', 'q5_k', 'q6_k');
  expect(w.cols === x.cols, 'matmul', `${w.label} has ${w.cols} columns but ${x.label} has ${x.cols}`);
  expect(w.rows === out.cols, 'matmul', `${w.label} has ${w.rows} rows but ${out.label} has ${out.cols} columns`);
  const rows = flow.count;
  const rowsWord = flow.word; // the step-buffer word holding the row count (see RowFlow)
  for (const ch of rowChunks('matmul', [x], rows)) {
    const xp = ch.parts[0];
    const bs = blocks(out, w, ch.r0, ch.end, rows);
    if (w.dtype === 'q8_0') {
      matmulQ8Chunk(rec, out, x, w, xp, ch.r0, ch.end, rows, rowsWord, bs);
      continue;
    }
    if (w.dtype === 'q4_0') {
      matmulQ4Chunk(rec, out, x, w, xp, ch.r0, ch.end, rows, rowsWord, bs);
      continue;
    }
    if (isKQuant(w.dtype)) {
      matmulKChunk(rec, out, x, w, xp, ch.r0, ch.end, rows, rowsWord, bs);
      continue;
    }
    const wg = rec.matmulKernels === 'workgroups';
    // f16/bf16 rows hold n halves: with n % 4 == 0 every row starts on a word pair, so vec4 reads stay aligned.
    const kernel = `matmul_${w.dtype}` + (x.cols % 4 === 0 ? '_v4' : '') + (wg ? '_wg' : '');
    for (const b of bs) {
      const rowGroups = Math.ceil((Math.min(b.rEnd, rows) - b.rStart) / 4);
      const make = () => ({
        params: new Params()
          .u(x.cols).u(out.cols).u(b.j0).u(b.j1).u(b.rStart).u(b.rEnd).u(rowsWord).u(xp.r0).u(b.wPart.r0).u(b.outPart.e0),
        buffers: [b.outPart.buffer, xp.buffer, b.wPart.buffer],
      });
      const key = `${wg ? 'mmw' : 'mm'}|${out.id}|${x.id}|${w.id}|${b.key}|${rowsWord}`;
      if (wg) rec.dispatch(kernel, key, [out, x, w], make, ...grid2(b.j1 - b.j0), rowGroups);
      else rec.dispatch(kernel, key, [out, x, w], make, Math.ceil((b.j1 - b.j0) / 64), rowGroups);
    }
  }
}
