import { checkRowsInCache, kvOffset, type KVGeometry } from '@rama/backend';
import { STEP_WGSL, Params, copyElems, expect, expectDtype, runs, type KernelDef, type Recorder } from './common.js';
import { rowChunks, type GpuTensor } from '../tensor.js';

// cache[layer, slots[r], positions[r]] = src[r] for each of the step's rows.
// An f32 cache: the host knows every row's destination when recording, so
// this is buffer copies rather than a kernel: one per run of rows that are
// consecutive positions of one slot (contiguous in both tensors: a prompt's
// rows are one run, each decoding row its own), and per pair of buffer parts
// a run crosses. Copies are ordered with the step's dispatches, so attention
// later in the step sees them.
// An f16 cache (half the memory): a kernel rounds each value to the nearest
// f16 and packs two per u32 word (the buffer holds the f16s in the standard
// layout). Its rows' destinations come from the step buffer, so one bind
// group per (cache part, src part) serves every step.

/**
 * f32 bits to the bits of the nearest f16, round half to even (@rama/backend's
 * f32ToF16), with integer operations only: WGSL leaves f32-to-f16 rounding
 * (pack2x16float) to the implementation and an out-of-range value
 * indeterminate, and may flush subnormals; the bits are read as u32, so no
 * float operation touches them.
 * - normal f16 (|x| >= 2^-14): rebias the exponent by 112 and drop 13 fraction
 *   bits, adding 0xfff plus the kept part's last bit first (more than half
 *   rounds up, exactly half to even; a carry reaches the exponent, up to
 *   0x7c00 = inf for 65520 <= |x| < 2^16);
 * - subnormal f16 or zero: the 24-bit significand shifted down to units of
 *   2^-24, rounded half to even on the bits shifted out;
 * - |x| >= 2^16 or inf: inf; NaN: a quiet NaN; the sign kept.
 */
export const F16_BITS_WGSL = /* wgsl */ `
fn f16_bits(b: u32) -> u32 {
  let a = b & 0x7fffffffu;
  let sign = (b >> 16u) & 0x8000u;
  if (a > 0x7f800000u) { return sign | 0x7e00u; }
  if (a >= 0x47800000u) { return sign | 0x7c00u; }
  if (a >= 0x38800000u) {
    let t = a - 0x38000000u;
    return sign | ((t + 0xfffu + ((t >> 13u) & 1u)) >> 13u);
  }
  let e = a >> 23u;
  if (e < 102u) { return sign; }
  let m = (a & 0x7fffffu) | 0x800000u;
  let sh = 126u - e;
  let q = m >> sh;
  let rem = m & ((1u << sh) - 1u);
  let half = 1u << (sh - 1u);
  return sign | select(q, q + 1u, rem > half || (rem == half && (q & 1u) == 1u));
}
`;

export const storeKVKernels: KernelDef[] = [
  {
    name: 'store_kv_f16',
    storage: ['rw', 'read'],
    wgsl: /* wgsl */ `${STEP_WGSL}${F16_BITS_WGSL}
// c0, c1: the cache rows this dispatch's cache part holds (its first element: c0 * kvDim);
// s0, s1: the step rows its src part holds; layerSlot0 = layer * slots.
struct P { kvDim: u32, layerSlot0: u32, seqLen: u32, c0: u32, c1: u32, s0: u32, s1: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> cache: array<u32>;
@group(0) @binding(3) var<storage, read> src: array<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let pair = gid.x; // elements 2 * pair and 2 * pair + 1 of row r
  let r = gid.y;
  if (2u * pair >= p.kvDim || r >= rowCount(0u) || r < p.s0 || r >= p.s1) { return; }
  let row = (p.layerSlot0 + rowSlot(r)) * p.seqLen + rowPos(r);
  if (row < p.c0 || row >= p.c1) { return; }
  let s = (r - p.s0) * p.kvDim + 2u * pair;
  cache[((row - p.c0) * p.kvDim) / 2u + pair] = f16_bits(src[s]) | (f16_bits(src[s + 1u]) << 16u);
}`,
  },
];

export function storeKV(rec: Recorder, cache: GpuTensor, layer: number, src: GpuTensor): void {
  expectDtype('storeKV', cache, 'f32', 'f16');
  expectDtype('storeKV', src, 'f32');
  const g = checkRowsInCache(cache, layer, rec.layout, 'storeKV');
  expect(src.cols === g.kvDim, 'storeKV', `${src.label} has ${src.cols} columns, ${cache.label} has kvDim ${g.kvDim}`);
  expect(src.rows >= rec.rows, 'storeKV', `${src.label} has ${src.rows} rows, the step has ${rec.rows}`);
  if (cache.dtype === 'f16') {
    storeKVF16(rec, cache, layer, src, g);
    return;
  }
  const { positions, slots } = rec;
  const contiguous = (r: number): boolean => slots[r] === slots[r - 1] && positions[r] === positions[r - 1] + 1;
  for (const [r0, r1] of runs(rec.rows, contiguous)) {
    const dst0 = kvOffset(g, layer, slots[r0]) + positions[r0] * g.kvDim;
    copyElems(rec, src, r0 * g.kvDim, cache, dst0, (r1 - r0) * g.kvDim);
  }
}

/** storeKV into an f16 cache: one dispatch per (cache part, src part) that some row of the step writes through. */
function storeKVF16(rec: Recorder, cache: GpuTensor, layer: number, src: GpuTensor, g: KVGeometry): void {
  // Each thread writes one u32 word: two f16s of one row, which a word must not share with another row.
  expect(g.kvDim % 2 === 0, 'storeKV', `an f16 KV cache needs an even kvDim, ${cache.label} has ${g.kvDim}`);
  const layerSlot0 = layer * g.slots;
  const done = new Set<string>();
  for (const ch of rowChunks('storeKV', [src], rec.rows)) {
    const sp = ch.parts[0];
    for (let r = ch.r0; r < ch.r1; r++) {
      const row = (layerSlot0 + rec.slots[r]) * g.seqLen + rec.positions[r];
      const ci = cache.parts.findIndex((p) => p.r0 <= row && row < p.r1);
      const cp = cache.parts[ci];
      const key = `kvf16|${cache.id}|${src.id}|${layer}|${ci}|${sp.r0}`;
      if (done.has(key)) continue;
      done.add(key);
      rec.dispatch(
        'store_kv_f16',
        key,
        [cache, src],
        () => ({
          params: new Params().u(g.kvDim).u(layerSlot0).u(g.seqLen).u(cp.r0).u(cp.r1).u(sp.r0).u(sp.r1),
          buffers: [cp.buffer, sp.buffer],
        }),
        Math.ceil(g.kvDim / 2 / 64),
        ch.r1,
      );
    }
  }
}
