import { DIV_RN_WGSL, F16_WGSL, STEP_WGSL, Params, grid2, type KernelDef, type Recorder } from './common.js';
import type { GpuTensor, Part } from '../tensor.js';
import type { MatmulBlock } from './matmul.js';

// llama2.c runq.c, exactly: x is quantized per group of G (scale = max|x| / 127,
// q = round-half-away(x / scale) with correctly rounded division), each group's
// dot product sums in i32, and val = val + (f32(ival) * w_scale) * x_scale with
// each of the three operations rounded to f32 (llama2.c built without FMA
// contraction; SwiftShader does not fuse these, checked with a probe shader).
//
// Scratch layout ("xq", per chunk of x rows): row-major int8 values, 4 per u32,
// each row padded to whole words (nw words), then the f32 scales (ng per row).

/** sbyte(word, b): byte b (0..3) of a u32 word, sign-extended (an int8 of packed q8_0 data). */
export const SBYTE_WGSL = /* wgsl */ `
fn sbyte(word: u32, b: u32) -> i32 { return bitcast<i32>(word << (24u - 8u * b)) >> 24u; }
`;

/**
 * dot4(a, b): the i32 dot product of two words of four int8 each, with WGSL's
 * dot4I8Packed where the device has it, else byte by byte (needs SBYTE_WGSL).
 */
export function dot4Wgsl(packedDot: boolean): string {
  return packedDot
    ? 'fn dot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }'
    : 'fn dot4(a: u32, b: u32) -> i32 { return sbyte(a, 0u) * sbyte(b, 0u) + sbyte(a, 1u) * sbyte(b, 1u) + sbyte(a, 2u) * sbyte(b, 2u) + sbyte(a, 3u) * sbyte(b, 3u); }';
}

// What the two passes that quantize x share: their params and bindings.
const QUANT_X_HEADER = /* wgsl */ `${STEP_WGSL}${DIV_RN_WGSL}
struct P { n: u32, G: u32, ng: u32, nw: u32, rStart: u32, rEnd: u32, rowsWord: u32, xRow0: u32, sOff: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> xq: array<u32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
`;

const scalesWgsl = /* wgsl */ `${QUANT_X_HEADER}@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let g = gid.x;
  let r = p.rStart + gid.y;
  if (g >= p.ng || r >= min(p.rEnd, rowCount(p.rowsWord))) { return; }
  let xo = (r - p.xRow0) * p.n + g * p.G;
  var wmax = 0.0;
  for (var i = 0u; i < p.G; i++) { let v = abs(x[xo + i]); if (v > wmax) { wmax = v; } }
  xq[p.sOff + (r - p.rStart) * p.ng + g] = bitcast<u32>(div_rn(wmax, 127.0));
}`;

const quantWgsl = /* wgsl */ `${QUANT_X_HEADER}@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let wi = gid.x;
  let r = p.rStart + gid.y;
  if (wi >= p.nw || r >= min(p.rEnd, rowCount(p.rowsWord))) { return; }
  let rl = r - p.rStart;
  let xo = (r - p.xRow0) * p.n;
  var packed = 0u;
  for (var k = 0u; k < 4u; k++) {
    let e = wi * 4u + k;
    if (e >= p.n) { break; }
    let s = bitcast<f32>(xq[p.sOff + rl * p.ng + e / p.G]);
    let v = x[xo + e];
    var q = 0i;
    // A zero scale (all-zero group) gives q = 0, as llama2.c's (int8_t)round(nan) does on x86.
    if (s > 0.0) {
      let a = div_rn(abs(v), s);
      var m = floor(a);
      // round half away from zero; floor(a + 0.5) would round 0.49999997 up.
      if (a - m >= 0.5) { m = m + 1.0; }
      q = i32(m);
      if (v < 0.0) { q = -q; }
    }
    packed = packed | ((u32(q) & 0xffu) << (8u * k));
  }
  xq[rl * p.nw + wi] = packed;
}`;

function matmulWgsl(words: boolean, packedDot: boolean): string {
  const dot = dot4Wgsl(packedDot);
  // words: G % 4 == 0, so every group starts on a u32 boundary in w and xq.
  const groupDot = words
    ? /* wgsl */ `
      let gw = p.G / 4u;
      for (var q = 0u; q < gw; q++) { iv += dot4(xq[xo + g * gw + q], w[(wb >> 2u) + g * gw + q]); }`
    : /* wgsl */ `
      for (var e = g * p.G; e < (g + 1u) * p.G; e++) {
        iv += sbyte(w[(wb + e) >> 2u], (wb + e) & 3u) * sbyte(xq[xo + (e >> 2u)], e & 3u);
      }`;
  return /* wgsl */ `${STEP_WGSL}${SBYTE_WGSL}
${dot}
struct P { n: u32, d: u32, G: u32, ng: u32, nw: u32, j0: u32, j1: u32, rStart: u32, rEnd: u32, rowsWord: u32,
  xChunk0: u32, sOff: u32, wRow0: u32, wsOff: u32, outE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read> w: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = p.j0 + gid.x;
  let ra = p.rStart + gid.y * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let jl = j - p.wRow0;
  let wb = jl * p.n;  // byte offset of the weight row's int8 values
  for (var i = 0u; i < nr; i++) {
    let xl = ra + i - p.xChunk0;
    let xo = xl * p.nw;
    var acc = 0.0;
    for (var g = 0u; g < p.ng; g++) {
      var iv = 0i;${groupDot}
      let xs = bitcast<f32>(xq[p.sOff + xl * p.ng + g]);
      // runq.c: val += ((float) ival) * w_scale * x_scale, three separately rounded f32 ops (no fma).
      let prod = (f32(iv) * bitcast<f32>(w[p.wsOff + jl * p.ng + g])) * xs;
      acc = acc + prod;
    }
    out[(ra + i) * p.d + j - p.outE0] = acc;
  }
}`;
}

/**
 * Words of int8 weights per row a workgroup-variant tile holds (whole groups: G <= 4 * Q8_TILE_WORDS).
 * 128 words keeps workgroup memory at 4 KiB (dots and terms for 4 rows); 256 words (8 KiB) ran
 * twice as slow on SwiftShader (measured; workgroup memory is zero-filled per workgroup).
 */
const Q8_TILE_WORDS = 128;
const Q8_WG = 64;

// The workgroup variant, for GPUs: one workgroup of 64 threads per output column
// j (and up to 4 rows of a batch). The row is walked in tiles of whole groups
// (up to 128 words: G <= 512; a bigger G uses the row kernel): the threads read
// consecutive u32 words (4 int8 each) of the weight row, coalesced, and store each word's i32 dot in workgroup memory;
// then one thread per (row, group) sums its group's words (exact in any order)
// and computes the group's term (f32(ival) * w_scale) * x_scale; then one
// thread per row adds the tile's terms to its running sum in group order. So
// val is the same f32 chain as runq.c's, bit for bit, and no fma can be formed
// across the three roundings (the terms pass through workgroup memory).
function matmulWgWgsl(packedDot: boolean): string {
  const dot = dot4Wgsl(packedDot);
  const T = Q8_TILE_WORDS;
  return /* wgsl */ `${STEP_WGSL}${SBYTE_WGSL}
${dot}
struct P { n: u32, d: u32, G: u32, ng: u32, nw: u32, j0: u32, j1: u32, rStart: u32, rEnd: u32, rowsWord: u32,
  xChunk0: u32, sOff: u32, wRow0: u32, wsOff: u32, outE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read> w: array<u32>;
var<workgroup> dots: array<i32, ${4 * T}>;
var<workgroup> terms: array<f32, ${4 * T}>;
@compute @workgroup_size(${Q8_WG}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = p.j0 + wg.y * 65535u + wg.x;
  let ra = p.rStart + wg.z * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let jl = j - p.wRow0;
  let xl0 = ra - p.xChunk0;
  let gw = p.G / 4u;
  let tg = ${T}u / gw;
  let ww = (jl * p.n) >> 2u;  // first word of the weight row's int8 values
  var acc = 0.0;  // thread i < nr: row ra + i
  for (var g0 = 0u; g0 < p.ng; g0 += tg) {
    let gn = min(tg, p.ng - g0);
    let w0 = g0 * gw;
    for (var q = lid; q < gn * gw; q += ${Q8_WG}u) {
      let wv = w[ww + w0 + q];
      for (var i = 0u; i < nr; i++) { dots[i * ${T}u + q] = dot4(xq[(xl0 + i) * p.nw + w0 + q], wv); }
    }
    workgroupBarrier();
    for (var e = lid; e < nr * gn; e += ${Q8_WG}u) {
      let i = e / gn;
      let g = e % gn;
      var iv = 0i;
      for (var q = 0u; q < gw; q++) { iv += dots[i * ${T}u + g * gw + q]; }
      let xs = bitcast<f32>(xq[p.sOff + (xl0 + i) * p.ng + g0 + g]);
      // runq.c: ((float) ival) * w_scale * x_scale, each product rounded to f32.
      terms[i * ${T}u + g] = (f32(iv) * bitcast<f32>(w[p.wsOff + jl * p.ng + g0 + g])) * xs;
    }
    workgroupBarrier();
    if (lid < nr) {
      for (var g = 0u; g < gn; g++) { acc = acc + terms[lid * ${T}u + g]; }
    }
  }
  if (lid < nr) { out[(ra + lid) * p.d + j - p.outE0] = acc; }
}`;
}

// GGUF Q4_0 weights, repacked at upload into a part's nibble words (each
// block's 16 bytes as 4 u32, in block order) then its f16 scales (two per
// u32): 18 bytes a block, as in the file, but word-aligned. x is quantized
// to q8_0 in blocks of 32 by the two passes above (f32 scales, as runq.c and
// the CPU backend), so word q of a block's nibbles meets xq words q (its low
// nibbles: elements 4q..4q+3) and q + 4 (its high nibbles: 16+4q..19+4q).
// Per block: ival exact in i32, then val += (f32(ival) * d) * xs in f32,
// block after block, as the CPU kernels do.
const NIBBLES_WGSL = /* wgsl */ `
// Four nibbles (one per byte, 0..15) to four signed bytes nibble - 8: with
// the top bit set no byte borrows from its neighbour, and flipping it back
// gives the two's complement of nibble - 8.
fn nib8(v: u32) -> u32 { return ((v | 0x80808080u) - 0x08080808u) ^ 0x80808080u; }
`;

function matmulQ4Wgsl(packedDot: boolean): string {
  const dot = dot4Wgsl(packedDot);
  return /* wgsl */ `${STEP_WGSL}${SBYTE_WGSL}${NIBBLES_WGSL}${F16_WGSL}
${dot}
struct P { n: u32, d: u32, ng: u32, nw: u32, j0: u32, j1: u32, rStart: u32, rEnd: u32, rowsWord: u32,
  xChunk0: u32, sOff: u32, wRow0: u32, wsOff: u32, outE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read> w: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = p.j0 + gid.x;
  let ra = p.rStart + gid.y * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let jl = j - p.wRow0;
  for (var i = 0u; i < nr; i++) {
    let xl = ra + i - p.xChunk0;
    let xo = xl * p.nw;
    var acc = 0.0;
    for (var g = 0u; g < p.ng; g++) {
      let blk = jl * p.ng + g;
      var iv = 0i;
      for (var q = 0u; q < 4u; q++) {
        let wv = w[blk * 4u + q];
        iv += dot4(nib8(wv & 0x0f0f0f0fu), xq[xo + g * 8u + q]);
        iv += dot4(nib8((wv >> 4u) & 0x0f0f0f0fu), xq[xo + g * 8u + 4u + q]);
      }
      let d = f16v((w[p.wsOff + (blk >> 1u)] >> (16u * (blk & 1u))) & 0xffffu);
      let xs = bitcast<f32>(xq[p.sOff + xl * p.ng + g]);
      acc = acc + (f32(iv) * d) * xs;
    }
    out[(ra + i) * p.d + j - p.outE0] = acc;
  }
}`;
}

/** Blocks of a weight row a workgroup-variant Q4_0 tile holds: one per thread. */
const Q4_TILE = 64;

// The workgroup variant, for GPUs: one workgroup per output column j (and up
// to 4 batch rows). The row is walked in tiles of 64 blocks, one per thread:
// adjacent threads read adjacent 16-byte blocks of nibbles (coalesced), and
// each computes its block's term (f32(ival) * d) * xs for every row into
// workgroup memory; then one thread per row adds the tile's terms in block
// order. So val is the row kernel's f32 chain, bit for bit.
function matmulQ4WgWgsl(packedDot: boolean): string {
  const dot = dot4Wgsl(packedDot);
  const T = Q4_TILE;
  return /* wgsl */ `${STEP_WGSL}${SBYTE_WGSL}${NIBBLES_WGSL}${F16_WGSL}
${dot}
struct P { n: u32, d: u32, ng: u32, nw: u32, j0: u32, j1: u32, rStart: u32, rEnd: u32, rowsWord: u32,
  xChunk0: u32, sOff: u32, wRow0: u32, wsOff: u32, outE0: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> xq: array<u32>;
@group(0) @binding(4) var<storage, read> w: array<u32>;
var<workgroup> terms: array<f32, ${4 * T}>;
@compute @workgroup_size(${T}) fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let j = p.j0 + wg.y * 65535u + wg.x;
  let ra = p.rStart + wg.z * 4u;
  let rb = min(p.rEnd, rowCount(p.rowsWord));
  if (j >= p.j1 || ra >= rb) { return; }
  let nr = min(4u, rb - ra);
  let jl = j - p.wRow0;
  let xl0 = ra - p.xChunk0;
  var acc = 0.0;  // thread i < nr: row ra + i
  for (var g0 = 0u; g0 < p.ng; g0 += ${T}u) {
    let gn = min(${T}u, p.ng - g0);
    if (lid < gn) {
      let g = g0 + lid;
      let blk = jl * p.ng + g;
      let d = f16v((w[p.wsOff + (blk >> 1u)] >> (16u * (blk & 1u))) & 0xffffu);
      let wv = vec4<u32>(w[blk * 4u], w[blk * 4u + 1u], w[blk * 4u + 2u], w[blk * 4u + 3u]);
      for (var i = 0u; i < nr; i++) {
        let xo = (xl0 + i) * p.nw + g * 8u;
        var iv = 0i;
        for (var q = 0u; q < 4u; q++) {
          iv += dot4(nib8(wv[q] & 0x0f0f0f0fu), xq[xo + q]);
          iv += dot4(nib8((wv[q] >> 4u) & 0x0f0f0f0fu), xq[xo + 4u + q]);
        }
        terms[i * ${T}u + lid] = (f32(iv) * d) * bitcast<f32>(xq[p.sOff + (xl0 + i) * p.ng + g]);
      }
    }
    workgroupBarrier();
    if (lid < nr) {
      for (var g = 0u; g < gn; g++) { acc = acc + terms[lid * ${T}u + g]; }
    }
    workgroupBarrier();
  }
  if (lid < nr) { out[(ra + lid) * p.d + j - p.outE0] = acc; }
}`;
}

export function matmulQ8Kernels(packedDot: boolean): KernelDef[] {
  return [
    { name: 'q8_scales', storage: ['rw', 'read'], wgsl: scalesWgsl },
    { name: 'q8_quant', storage: ['rw', 'read'], wgsl: quantWgsl },
    { name: 'matmul_q8_words', storage: ['rw', 'read', 'read'], wgsl: matmulWgsl(true, packedDot) },
    { name: 'matmul_q8_bytes', storage: ['rw', 'read', 'read'], wgsl: matmulWgsl(false, packedDot) },
    { name: 'matmul_q8_wg', storage: ['rw', 'read', 'read'], wgsl: matmulWgWgsl(packedDot) },
    { name: 'matmul_q4_0', storage: ['rw', 'read', 'read'], wgsl: matmulQ4Wgsl(packedDot) },
    { name: 'matmul_q4_0_wg', storage: ['rw', 'read', 'read'], wgsl: matmulQ4WgWgsl(packedDot) },
  ];
}

/** Where quantizeX put x's q8_0 copy in the "xq" scratch: int8 words (nw per row), then f32 scales from word sOff. */
export interface QuantizedX {
  xq: GPUBuffer;
  nw: number;
  ng: number;
  sOff: number;
}

/** Quantizes x rows [r0, end) (those `rows` needs) to q8_0 in groups of G into the "xq" scratch. */
export function quantizeX(rec: Recorder, x: GpuTensor, xp: Part, G: number, r0: number, end: number, rows: number, rowsWord: number): QuantizedX {
  const n = x.cols;
  const ng = n / G;
  const nw = Math.ceil(n / 4);
  const rc = end - r0;
  const sOff = rc * nw;
  const xq = rec.scratch('xq', 4 * (sOff + rc * ng));
  const active = Math.min(end, rows) - r0;
  const qparams = (): Params => new Params().u(n).u(G).u(ng).u(nw).u(r0).u(end).u(rowsWord).u(xp.r0).u(sOff);
  const qkey = `${x.id}|${r0}|${G}|${rowsWord}`;
  rec.dispatch('q8_scales', `q8s|${qkey}`, [x], () => ({ params: qparams(), buffers: [xq, xp.buffer] }), Math.ceil(ng / 64), active);
  rec.dispatch('q8_quant', `q8q|${qkey}`, [x], () => ({ params: qparams(), buffers: [xq, xp.buffer] }), Math.ceil(nw / 64), active);
  return { xq, nw, ng, sOff };
}

/** Quantizes x rows [r0, end) in blocks of 32, then runs each output block with Q4_0 weights. */
export function matmulQ4Chunk(
  rec: Recorder, out: GpuTensor, x: GpuTensor, w: GpuTensor, xp: Part,
  r0: number, end: number, rows: number, rowsWord: number, bs: MatmulBlock[],
): void {
  const { xq, nw, ng, sOff } = quantizeX(rec, x, xp, 32, r0, end, rows, rowsWord);
  for (const b of bs) {
    const rowGroups = Math.ceil((Math.min(b.rEnd, rows) - b.rStart) / 4);
    const make = () => ({
      params: new Params()
        .u(x.cols).u(out.cols).u(ng).u(nw).u(b.j0).u(b.j1).u(b.rStart).u(b.rEnd).u(rowsWord)
        .u(r0).u(sOff).u(b.wPart.r0).u(b.wPart.scaleOffset / 4).u(b.outPart.e0),
      buffers: [b.outPart.buffer, xq, b.wPart.buffer],
    });
    if (rec.matmulKernels === 'workgroups') {
      rec.dispatch('matmul_q4_0_wg', `mmq4w|${out.id}|${x.id}|${w.id}|${b.key}|${rowsWord}`, [out, x, w], make, ...grid2(b.j1 - b.j0), rowGroups);
    } else {
      rec.dispatch('matmul_q4_0', `mmq4|${out.id}|${x.id}|${w.id}|${b.key}|${rowsWord}`, [out, x, w], make, Math.ceil((b.j1 - b.j0) / 64), rowGroups);
    }
  }
}

/** Quantizes x rows [r0, end) (those `rows` needs) into scratch, then runs each output block. */
export function matmulQ8Chunk(
  rec: Recorder,
  out: GpuTensor,
  x: GpuTensor,
  w: GpuTensor,
  xp: Part,
  r0: number,
  end: number,
  rows: number,
  rowsWord: number,
  bs: MatmulBlock[],
): void {
  const n = x.cols;
  const G = w.groupSize!;
  const { xq, nw, ng, sOff } = quantizeX(rec, x, xp, G, r0, end, rows, rowsWord);
  // The workgroup variant needs word-aligned groups that fit a tile; other group sizes use the row-per-thread kernels.
  const wg = rec.matmulKernels === 'workgroups' && G % 4 === 0 && G <= 4 * Q8_TILE_WORDS;
  const kernel = wg ? 'matmul_q8_wg' : G % 4 === 0 ? 'matmul_q8_words' : 'matmul_q8_bytes';
  for (const b of bs) {
    const rowGroups = Math.ceil((Math.min(b.rEnd, rows) - b.rStart) / 4);
    const make = () => ({
      params: new Params()
        .u(n).u(out.cols).u(G).u(ng).u(nw).u(b.j0).u(b.j1).u(b.rStart).u(b.rEnd).u(rowsWord)
        .u(r0).u(sOff).u(b.wPart.r0).u(b.wPart.scaleOffset / 4).u(b.outPart.e0),
      buffers: [b.outPart.buffer, xq, b.wPart.buffer],
    });
    const key = `${wg ? 'mmqw' : 'mmq'}|${out.id}|${x.id}|${w.id}|${b.key}|${rowsWord}`;
    if (wg) rec.dispatch(kernel, key, [out, x, w], make, ...grid2(b.j1 - b.j0), rowGroups);
    else rec.dispatch(kernel, key, [out, x, w], make, Math.ceil((b.j1 - b.j0) / 64), rowGroups);
  }
}
