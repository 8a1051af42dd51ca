import { F16_WGSL, STEP_WGSL, Params, expect, expectDtype, singlePart, type KernelDef, type Recorder } from './common.js';
import { rowChunks, type GpuTensor } from '../tensor.js';

// The embedding lookup (docs/guide/embeddings.md): out[r] = table[tokens[r]]
// for each of the step's rows, one invocation per (column, row).
// The token is only known on the device (greedy decoding's argmax wrote it), so
// each part of a split table gets its own dispatch and writes the rows it holds.
//
// An f32 table is copied (exact, its words read as they are). A packed table (a model's token table kept
// in its file's type: only the looked-up rows are decoded) is read as u32
// words in the part layout tensor.ts gives each type, and every value is
// rounded as @rama/backend's elements.ts decoders (ggml's dequantize_row_*)
// round it, so a row is bit for bit the row of the table converted to f32:
//   f16, bf16: widened exactly
//   q8_0:      f32(q * s_g)
//   q4_0:      f32((nibble - 8) * d)
//   q4_k/q5_k: f32(f32(f32(d * sc_j) * q) - f32(dmin * m_j))
//   q6_k:      f32(f32(d * sc_s) * q)
// `value(e)` gives element e of the part (e = local row * cols + column);
// p.sOff is where the part's scales start, in bytes (q8_0, q4_0, q6_k).

/** Element e of a part, per table type (layouts: tensor.ts matrixPacking / planParts). */
const VALUE: Record<string, string> = {
  f32: 'fn value(e: u32) -> f32 { return bitcast<f32>(tab[e]); }',
  f16: 'fn value(e: u32) -> f32 { return f16v(u16at(e)); }',
  bf16: 'fn value(e: u32) -> f32 { return bitcast<f32>(u16at(e) << 16u); }',
  // values (one int8 per element), then one f32 scale per group of p.gs
  q8_0: /* wgsl */ `fn value(e: u32) -> f32 {
  let q = bitcast<i32>(ubyte(e) << 24u) >> 24u;
  return f32(q) * bitcast<f32>(tab[p.sOff / 4u + e / p.gs]);
}`,
  // 16 nibble bytes a block of 32 (element j: low nibble of byte j & 15, high for j >= 16), then the f16 scales
  q4_0: /* wgsl */ `fn value(e: u32) -> f32 {
  let b = e / 32u;
  let j = e % 32u;
  let byte = ubyte(16u * b + (j & 15u));
  let q = i32(select(byte & 15u, byte >> 4u, j >= 16u)) - 8;
  return f32(q) * f16v(u16at(p.sOff / 2u + b));
}`,
  // the file's 144-byte blocks; see kquantValue
  q4_k: /* wgsl */ `fn value(e: u32) -> f32 { return kquantValue(e, 144u, false); }`,
  q5_k: /* wgsl */ `fn value(e: u32) -> f32 { return kquantValue(e, 176u, true); }`,
  // blocks' first 208 bytes (ql[128], qh[64], int8 scales[16]), then their f16 d
  q6_k: /* wgsl */ `fn value(e: u32) -> f32 {
  let b = e / 256u;
  let i = e % 256u;
  let at = 208u * b;
  // half h, l = i % 32, quarter t: low 4 bits from ql, high 2 from qh
  let h = i >> 7u;
  let l = i & 31u;
  let t = (i >> 5u) & 3u;
  let lo = ubyte(at + 64u * h + l + 32u * (t & 1u));
  let hi = (ubyte(at + 128u + 32u * h + l) >> (2u * t)) & 3u;
  let q = i32(select(lo & 15u, lo >> 4u, t >= 2u) | (hi << 4u)) - 32;
  let sc = bitcast<i32>(ubyte(at + 192u + (i >> 4u)) << 24u) >> 24u;
  let ds = f16v(u16at(p.sOff / 2u + b)) * f32(sc);
  return ds * f32(q);
}`,
};

/**
 * Q4_K / Q5_K element i of block b (d, dmin f16 at 0; 12 scale bytes at 4; Q5_K: qh[32] at 16; qs at 16 or 48).
 * Sub-block j = i / 32 has (sc, m) by ggml's get_scale_min_k4; chunk i / 64 of 64 takes the low nibbles of
 * qs[32k..32k+31] for its first 32 elements, the high ones for the next; Q5_K adds 16 when bit j of qh[i % 32] is set.
 */
const KQUANT_WGSL = /* wgsl */ `
fn kquantValue(e: u32, size: u32, q5: bool) -> f32 {
  let b = e / 256u;
  let i = e % 256u;
  let at = size * b;
  let j = i >> 5u;
  let s = at + 4u;
  var sc: u32;
  var m: u32;
  if (j < 4u) {
    sc = ubyte(s + j) & 63u;
    m = ubyte(s + j + 4u) & 63u;
  } else {
    sc = (ubyte(s + j + 4u) & 15u) | ((ubyte(s + j - 4u) >> 6u) << 4u);
    m = (ubyte(s + j + 4u) >> 4u) | ((ubyte(s + j) >> 6u) << 4u);
  }
  let byte = ubyte(at + select(16u, 48u, q5) + 32u * (i >> 6u) + (i & 31u));
  var q = select(byte & 15u, byte >> 4u, (i & 32u) != 0u);
  if (q5) { q = q | (((ubyte(at + 16u + (i & 31u)) >> j) & 1u) << 4u); }
  let dj = f16v(u16at(at / 2u)) * f32(sc);
  let mj = f16v(u16at(at / 2u + 1u)) * f32(m);
  return dj * f32(q) - mj;
}
`;

/** The table types embed decodes (f32 is copied). */
export const PACKED_EMBED_TYPES = Object.keys(VALUE).filter((t) => t !== 'f32');

const kernelName = (dtype: string): string => (dtype === 'f32' ? 'embed' : `embed_${dtype}`);

const embedKernel = (dtype: string): KernelDef => ({
  name: kernelName(dtype),
  storage: ['rw', 'read', 'read'],
  wgsl: /* wgsl */ `${STEP_WGSL}${F16_WGSL}
struct P { cols: u32, rStart: u32, rEnd: u32, outRow0: u32, tab0: u32, tab1: u32, sOff: u32, gs: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> tab: array<u32>;
@group(0) @binding(4) var<storage, read> tokens: array<i32>;
fn ubyte(i: u32) -> u32 { return (tab[i >> 2u] >> (8u * (i & 3u))) & 0xffu; }
fn u16at(i: u32) -> u32 { return (tab[i >> 1u] >> (16u * (i & 1u))) & 0xffffu; }
${dtype === 'q4_k' || dtype === 'q5_k' ? KQUANT_WGSL : ''}${VALUE[dtype]}
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let r = p.rStart + gid.y;
  if (c >= p.cols || r >= p.rEnd || r >= rowCount(0u)) { return; }
  let t = tokens[r];
  if (t < i32(p.tab0) || t >= i32(p.tab1)) { return; }
  out[(r - p.outRow0) * p.cols + c] = value((u32(t) - p.tab0) * p.cols + c);
}`,
});

export const embedKernels: KernelDef[] = Object.keys(VALUE).map(embedKernel);

export function embed(rec: Recorder, out: GpuTensor, table: GpuTensor, tokens: GpuTensor): void {
  expectDtype('embed', table, 'f32', ...PACKED_EMBED_TYPES);
  expectDtype('embed', tokens, 'i32');
  expectDtype('embed', out, 'f32');
  expect(table.cols === out.cols, 'embed', `${out.label} has ${out.cols} columns, ${table.label} has ${table.cols}`);
  const rows = rec.rows;
  expect(tokens.size >= rows, 'embed', `${tokens.label} holds ${tokens.size} tokens, ${rows} needed`);
  const tok = singlePart('embed', tokens);
  const kernel = kernelName(table.dtype);
  for (const ch of rowChunks('embed', [out], rows)) {
    const op = ch.parts[0];
    table.parts.forEach((tp, ti) => {
      rec.dispatch(
        kernel,
        `embed|${out.id}|${table.id}|${tokens.id}|${ch.r0}|${ti}`,
        [out, table, tokens],
        () => {
          const params = new Params().u(out.cols).u(ch.r0).u(ch.end).u(op.r0).u(tp.r0).u(tp.r1).u(tp.scaleOffset).u(table.groupSize ?? 1);
          return { params, buffers: [op.buffer, tp.buffer, tok] };
        },
        Math.ceil(out.cols / 64),
        ch.r1 - ch.r0,
      );
    });
  }
}
