/// <reference types="@webgpu/types" />
import { F16_WGSL, STEP_WGSL, Params, grid2, type Access, type KernelDef, type Recorder } from './common.js';
import type { GpuTensor, Part } from '../tensor.js';
import type { MatmulBlock } from './matmul.js';
import { SBYTE_WGSL, dot4Wgsl, quantizeX } from './matmulQ8.js';

// GGUF's k-quants (Q4_K, Q5_K, Q6_K): super-blocks of 256 weights of a row.
// x is quantized by the q8_0 passes (matmulQ8.ts) in groups of 256: one f32
// scale xs_b per super-block b and int8 values, four to a u32 word. Then per
// output (weight row j, x row r), block after block from val = 0 (the numerics
// the CPU kernels share: see @rama/tensor-cpu's README):
//   Q4_K, Q5_K: isum = sum_j sc_j * (sum_{i in sub-block j} q_i * xq_i)   (j = 0..7, 32 values each)
//               msum = sum_j m_j  * (sum_{i in sub-block j} xq_i)
//               val  = val + ((f32(isum) * d) - (f32(msum) * dmin)) * xs_b
//   Q6_K:       isum = sum_s sc_s * (sum_{i in sub-block s} q_i * xq_i)   (s = 0..15, 16 values each, q in -32..31)
//               val  = val + (f32(isum) * d) * xs_b
// The integer sums are exact in i32 (|isum| < 2^28), so their order is free;
// the f32 steps are written in exactly this order, each rounded to f32.
//
// Weights on the device, per part (whole rows, see tensor.ts planParts):
// - Q4_K: the file's blocks as they are, 36 u32 words each: word 0 = d (low
//   half) and dmin (high half) as f16; words 1..3 the 12 scale bytes; words
//   4..35 qs (word 4 + 8k + u holds qs[32k + 4u .. 32k + 4u + 3]).
// - Q5_K: the file's blocks as they are, 44 words: word 0 d, dmin; 1..3
//   scales; 4..11 qh; 12..43 qs.
// - Q6_K: 210-byte blocks are not word-aligned, so the upload repacks a part
//   into its blocks' first 208 bytes (52 words: ql in words 0..31, qh 32..47,
//   int8 scales 48..51), then every block's f16 d, two per word (the q4_0
//   layout's idea): 210 bytes a block, as in the file.
//
// Each kernel splits a block into eight 32-value pieces t = 0..7 (values
// 32t..32t+31, eight x words): kpart(block, x words, t, sums) returns that
// piece's (sc * dot, m * sum of x) for Q4_K/Q5_K, (sc_2t * dot + sc_2t+1 * dot,
// 0) for Q6_K; the rows kernel sums the eight in one thread, the workgroup
// kernel gives each piece its own thread. The sums of x over each piece (msum's
// factors) do not depend on the weights: a small pass (k_xsums) computes them
// once per x row, after x is quantized, for Q4_K and Q5_K.

/** What Q4_K and Q5_K share: the (scale, min) pair of sub-block j, and a block's f32 term. */
const SCALE_MIN_WGSL = /* wgsl */ `
fn ubyte(v: u32, b: u32) -> u32 { return (v >> (8u * b)) & 0xffu; }
// ggml's get_scale_min_k4 on the 12 scale bytes (words 1..3 of a Q4_K/Q5_K block):
// j < 4: sc = s[j] & 63, m = s[j + 4] & 63;
// j >= 4: sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4).
fn scaleMin(bw: u32, j: u32) -> vec2<i32> {
  let b = j & 3u;
  let lo = ubyte(w[bw + 1u], b);
  let mid = ubyte(w[bw + 2u], b);
  if (j < 4u) { return vec2<i32>(i32(lo & 63u), i32(mid & 63u)); }
  let hi = ubyte(w[bw + 3u], b);
  return vec2<i32>(i32((hi & 15u) | ((lo >> 6u) << 4u)), i32((hi >> 4u) | ((mid >> 6u) << 4u)));
}
// Q4_K/Q5_K: d and dmin are the block's first word (two f16, widened exactly).
fn kterm(blk: u32, s: vec2<i32>, xs: f32) -> f32 {
  let dm = w[blk * BW];
  return ((f32(s.x) * f16v(dm & 0xffffu)) - (f32(s.y) * f16v(dm >> 16u))) * xs;
}
`;

/** The per-type WGSL: BW (words a block), kpart and kterm (see above). */
const TYPES: Record<'q4_k' | 'q5_k' | 'q6_k', string> = {
  // Piece t = 2k + h: the low (h = 0) or high (h = 1) nibbles of qs words 8k..8k+7, sub-block j = t.
  q4_k: /* wgsl */ `
const BW = 36u;
${SCALE_MIN_WGSL}
fn kpart(bw: u32, xo: u32, t: u32, so: u32) -> vec2<i32> {
  let q0 = bw + 4u + 8u * (t >> 1u);
  let sh = 4u * (t & 1u);
  var dq = 0i;
  for (var u = 0u; u < 8u; u++) { dq += dot4((w[q0 + u] >> sh) & 0x0f0f0f0fu, xq[xo + 8u * t + u]); }
  let sm = scaleMin(bw, t);
  return vec2<i32>(sm.x * dq, sm.y * xsum[so + t]);
}
`,
  // As Q4_K, plus 16 where bit t of the value's qh byte (qh words 0..7: qh[4u..4u+3]) is set.
  q5_k: /* wgsl */ `
const BW = 44u;
${SCALE_MIN_WGSL}
fn kpart(bw: u32, xo: u32, t: u32, so: u32) -> vec2<i32> {
  let q0 = bw + 12u + 8u * (t >> 1u);
  let sh = 4u * (t & 1u);
  var dq = 0i;
  for (var u = 0u; u < 8u; u++) {
    let q = ((w[q0 + u] >> sh) & 0x0f0f0f0fu) | (((w[bw + 4u + u] >> t) & 0x01010101u) << 4u);
    dq += dot4(q, xq[xo + 8u * t + u]);
  }
  let sm = scaleMin(bw, t);
  return vec2<i32>(sm.x * dq, sm.y * xsum[so + t]);
}
`,
  // Piece t = 4h + g: values 128h + 32g + l (l < 32) take the low (g = 0, 1) or high (g = 2, 3)
  // nibbles of ql words 16h + 8(g & 1) + u and bits 2g, 2g + 1 of qh words 32 + 8h + u;
  // q - 32 per byte makes them signed. Sub-blocks 2t (u < 4) and 2t + 1 (u >= 4).
  q6_k: /* wgsl */ `
const BW = 52u;
// Four 6-bit values (one per byte, 0..63) to four signed bytes value - 32: with the top bit
// set no byte borrows from its neighbour, and flipping it back gives the two's complement.
fn q6s(v: u32) -> u32 { return ((v | 0x80808080u) - 0x20202020u) ^ 0x80808080u; }
fn kpart(bw: u32, xo: u32, t: u32, so: u32) -> vec2<i32> {
  let h = t >> 2u;
  let g = t & 3u;
  let l0 = bw + 16u * h + 8u * (g & 1u);
  let ls = 4u * (g >> 1u);
  let h0 = bw + 32u + 8u * h;
  let hs = 2u * g;
  var d0 = 0i;
  var d1 = 0i;
  for (var u = 0u; u < 4u; u++) {
    let q = ((w[l0 + u] >> ls) & 0x0f0f0f0fu) | (((w[h0 + u] >> hs) & 0x03030303u) << 4u);
    d0 += dot4(q6s(q), xq[xo + 8u * t + u]);
  }
  for (var u = 4u; u < 8u; u++) {
    let q = ((w[l0 + u] >> ls) & 0x0f0f0f0fu) | (((w[h0 + u] >> hs) & 0x03030303u) << 4u);
    d1 += dot4(q6s(q), xq[xo + 8u * t + u]);
  }
  let sw = w[bw + 48u + (t >> 1u)];
  let b = 2u * (t & 1u);
  return vec2<i32>(sbyte(sw, b) * d0 + sbyte(sw, b + 1u) * d1, 0i);
}
// d: the part's f16 scales, two per word, from word p.wsOff.
fn kterm(blk: u32, s: vec2<i32>, xs: f32) -> f32 {
  let d = f16v((w[p.wsOff + (blk >> 1u)] >> (16u * (blk & 1u))) & 0xffffu);
  return (f32(s.x) * d) * xs;
}
`,
};

/** The k-quant weight types these kernels take. */
export type KQuant = keyof typeof TYPES;

/** Whether a type's kernels read the sums of x over each 32-value piece (binding 5, from k_xsums). */
const usesSums = (type: KQuant): boolean => type !== 'q6_k';

function header(type: KQuant, packedDot: boolean): string {
  return /* wgsl */ `${STEP_WGSL}${SBYTE_WGSL}${F16_WGSL}
${dot4Wgsl(packedDot)}
struct P { n: u32, d: u32, nb: u32, nw: u32, j0: u32, j1: u32, rStart: u32, rEnd: u32, rowsWord: u32,
  xChunk0: u32, sOff: u32, wRow0: u32, wsOff: u32, outE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read> w: array<u32>;
${usesSums(type) ? '@group(0) @binding(5) var<storage, read> xsum: array<i32>;  // x row xl, piece 8g + t: xsum[8 * nb * xl + 8g + t]\n' : ''}${TYPES[type]}`;
}

// The sums of quantized x over each 32-value piece (8 words): xsum[row * ns + s]
// = sum of xq[32s .. 32s + 31] (exact i32), one thread each, rows [rStart, rEnd) of the xq scratch.
const xsumsWgsl = (packedDot: boolean): string => /* wgsl */ `${STEP_WGSL}${SBYTE_WGSL}
${dot4Wgsl(packedDot)}
struct P { nw: u32, ns: u32, rStart: u32, rEnd: u32, rowsWord: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> xsum: array<i32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let s = gid.x;
  let r = p.rStart + gid.y;
  if (s >= p.ns || r >= min(p.rEnd, rowCount(p.rowsWord))) { return; }
  let rl = r - p.rStart;
  var a = 0i;
  for (var u = 0u; u < 8u; u++) { a += dot4(0x01010101u, xq[rl * p.nw + 8u * s + u]); }
  xsum[rl * p.ns + s] = a;
}`;

// The rows variant: one thread per output column j and up to 4 rows of a
// batch (the weight row stays in cache between them), blocks in order.
function rowsWgsl(type: KQuant, packedDot: boolean): string {
  return /* wgsl */ `${header(type, packedDot)}
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = p.j0 + gid.x;
  let ra = p.rStart + gid.y * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let jl = j - p.wRow0;
  for (var i = 0u; i < nr; i++) {
    let xl = ra + i - p.xChunk0;
    var acc = 0.0;
    for (var g = 0u; g < p.nb; g++) {
      let blk = jl * p.nb + g;
      let xo = xl * p.nw + 64u * g;
      var s = vec2<i32>(0i, 0i);
      for (var t = 0u; t < 8u; t++) { s += kpart(blk * BW, xo, t, 8u * (xl * p.nb + g)); }
      acc = acc + kterm(blk, s, bitcast<f32>(xq[p.sOff + xl * p.nb + g]));
    }
    out[(ra + i) * p.d + j - p.outE0] = acc;
  }
}`;
}

/** Blocks of a weight row one workgroup-variant tile holds: 8 blocks x 8 pieces = 64 threads. */
const K_TILE = 8;

// The workgroup variant, for GPUs: one workgroup of 64 threads per output
// column j (and up to 4 batch rows). The row is walked in tiles of 8 blocks;
// thread 8b + t computes piece t of block b for every row (adjacent threads
// read adjacent words of the same block) into workgroup memory. Then one
// thread per (row, block) adds its block's 8 pieces (exact, in i32) and
// computes the block's f32 term, and one thread per row adds the tile's terms
// in block order: the rows kernel's f32 chain, bit for bit (the terms pass
// through workgroup memory, so the final additions cannot be fused with them).
function wgWgsl(type: KQuant, packedDot: boolean): string {
  const T = K_TILE;
  return /* wgsl */ `${header(type, packedDot)}
var<workgroup> pieces: array<vec2<i32>, ${4 * 8 * T}>;
var<workgroup> terms: array<f32, ${4 * T}>;
@compute @workgroup_size(${8 * T}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = p.j0 + wg.y * 65535u + wg.x;
  let ra = p.rStart + wg.z * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let jl = j - p.wRow0;
  let xl0 = ra - p.xChunk0;
  let t = lid & 7u;
  let bl = lid >> 3u;
  var acc = 0.0;  // thread i < nr: row ra + i
  for (var g0 = 0u; g0 < p.nb; g0 += ${T}u) {
    let gn = min(${T}u, p.nb - g0);
    if (bl < gn) {
      let bw = (jl * p.nb + g0 + bl) * BW;
      for (var i = 0u; i < nr; i++) {
        pieces[i * ${8 * T}u + lid] = kpart(bw, (xl0 + i) * p.nw + 64u * (g0 + bl), t, 8u * ((xl0 + i) * p.nb + g0 + bl));
      }
    }
    workgroupBarrier();
    if (lid < nr * gn) {
      let i = lid / gn;
      let b = lid % gn;
      var s = vec2<i32>(0i, 0i);
      for (var q = 0u; q < 8u; q++) { s += pieces[i * ${8 * T}u + 8u * b + q]; }
      terms[i * ${T}u + b] = kterm(jl * p.nb + g0 + b, s, bitcast<f32>(xq[p.sOff + (xl0 + i) * p.nb + g0 + b]));
    }
    workgroupBarrier();
    if (lid < nr) {
      for (var b = 0u; b < gn; b++) { acc = acc + terms[lid * ${T}u + b]; }
    }
  }
  if (lid < nr) { out[(ra + lid) * p.d + j - p.outE0] = acc; }
}`;
}

/** Whether `dtype` is one of GGUF's k-quants the matmul runs natively. */
export function isKQuant(dtype: string): dtype is KQuant {
  return dtype === 'q4_k' || dtype === 'q5_k' || dtype === 'q6_k';
}

export function matmulKKernels(packedDot: boolean): KernelDef[] {
  return [
    { name: 'k_xsums', storage: ['rw', 'read'], wgsl: xsumsWgsl(packedDot) },
    ...(Object.keys(TYPES) as KQuant[]).flatMap((type) => {
      const storage: Access[] = usesSums(type) ? ['rw', 'read', 'read', 'read'] : ['rw', 'read', 'read'];
      return [
        { name: `matmul_${type}`, storage, wgsl: rowsWgsl(type, packedDot) },
        { name: `matmul_${type}_wg`, storage, wgsl: wgWgsl(type, packedDot) },
      ];
    }),
  ];
}

/** Quantizes x rows [r0, end) in groups of 256, then runs each output block with k-quant weights. */
export function matmulKChunk(
  rec: Recorder, out: GpuTensor, x: GpuTensor, w: GpuTensor, xp: Part,
  r0: number, end: number, rows: number, rowsWord: number, bs: MatmulBlock[],
): void {
  const type = w.dtype as KQuant;
  const { xq, nw, ng, sOff } = quantizeX(rec, x, xp, 256, r0, end, rows, rowsWord);
  const extra: GPUBuffer[] = [];
  if (usesSums(type)) {
    const ns = 8 * ng;
    const xsum = rec.scratch('xksum', 4 * (end - r0) * ns);
    const params = (): Params => new Params().u(nw).u(ns).u(r0).u(end).u(rowsWord);
    rec.dispatch('k_xsums', `kxs|${x.id}|${r0}|${rowsWord}`, [x], () => ({ params: params(), buffers: [xsum, xq] }), Math.ceil(ns / 64), Math.min(end, rows) - r0);
    extra.push(xsum);
  }
  const wg = rec.matmulKernels === 'workgroups';
  for (const b of bs) {
    const rowGroups = Math.ceil((Math.min(b.rEnd, rows) - b.rStart) / 4);
    const make = () => ({
      params: new Params()
        .u(x.cols).u(out.cols).u(ng).u(nw).u(b.j0).u(b.j1).u(b.rStart).u(b.rEnd).u(rowsWord)
        .u(r0).u(sOff).u(b.wPart.r0).u(b.wPart.scaleOffset / 4).u(b.outPart.e0),
      buffers: [b.outPart.buffer, xq, b.wPart.buffer, ...extra],
    });
    const key = `${wg ? 'mmkw' : 'mmk'}|${out.id}|${x.id}|${w.id}|${b.key}|${rowsWord}`;
    if (wg) rec.dispatch(`matmul_${type}_wg`, key, [out, x, w], make, ...grid2(b.j1 - b.j0), rowGroups);
    else rec.dispatch(`matmul_${type}`, key, [out, x, w], make, Math.ceil((b.j1 - b.j0) / 64), rowGroups);
  }
}
