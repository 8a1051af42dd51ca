import { BackendError, ropeFrequencies } from '@rama/backend';
import { STEP_WGSL, Params, expect, expectDtype, type KernelDef, type Recorder, type RowFlow } from './common.js';
import { rowChunks, type GpuTensor } from '../tensor.js';

// RoPE (docs/guide/rope.md), one invocation per pair.
// Rotates (x[2i], x[2i+1]) of each head of row r by the angle f32(t * freq_i),
// t = row r's position (from the step buffer), exactly as the CPU reference
// (scalar.ts) does:
//   x0' = f32(x0 * cos) - f32(x1 * sin)   x1' = f32(x0 * sin) + f32(x1 * cos)
// with cos and sin read from a rotation table that the host builds once per
// (headSize, theta): [positions, headSize / 2] of vec2(cos, sin), each
// Math.fround(Math.cos(angle)) and Math.fround(Math.sin(angle)), so the result
// is bit-identical to the CPU backend. The table is a tensor like any other:
// when it is larger than one binding it is split by positions, and a step
// dispatches once per table part that its rows' positions touch; in each
// dispatch, a row whose position lies in another part does nothing.
export const ropeKernels: KernelDef[] = [
  {
    name: 'rope',
    storage: ['rw', 'read'],
    wgsl: /* wgsl */ `${STEP_WGSL}
struct P { n: u32, headSize: u32, rStart: u32, rowsWord: u32, xRow0: u32, tRow0: u32, tRow1: u32 }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
@group(0) @binding(3) var<storage, read> tab: array<vec2<f32>>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let pi = gid.x;
  let r = p.rStart + gid.y;
  if (2u * pi >= p.n || r >= rowCount(p.rowsWord)) { return; }
  // Only rows whose position lies in this table part [tRow0, tRow1).
  let t = rowPos(r);
  if (t < p.tRow0 || t >= p.tRow1) { return; }
  let half = p.headSize / 2u;
  let cs = tab[(t - p.tRow0) * half + pi % half];
  let o = (r - p.xRow0) * p.n + 2u * pi;
  let v0 = x[o];
  let v1 = x[o + 1u];
  let a = v0 * cs.x;
  let b = v1 * cs.y;
  let c = v0 * cs.y;
  let d = v1 * cs.x;
  x[o] = a - b;
  x[o + 1u] = c + d;
}`,
  },
];

/**
 * Rows [p0, p1) of the rotation table: for position p and pair i,
 * (cos, sin) of angle = f32(p * freq_i), each rounded to f32, as the CPU does
 * (freq_i from @rama/backend's ropeFrequencies, with the model's frequency
 * factors if any).
 */
export function fillRopeTable(dst: Float32Array, headSize: number, theta: number, p0: number, p1: number, freqFactors?: Float32Array): void {
  const f = Math.fround;
  const freq = ropeFrequencies(headSize, theta, freqFactors);
  const half = headSize / 2;
  for (let p = p0, o = 0; p < p1; p++) {
    for (let i = 0; i < half; i++, o += 2) {
      const angle = f(p * freq[i]);
      dst[o] = f(Math.cos(angle));
      dst[o + 1] = f(Math.sin(angle));
    }
  }
}

export function rope(rec: Recorder, x: GpuTensor, headSize: number, theta: number, rows: RowFlow, freqFactors?: Float32Array): void {
  expectDtype('rope', x, 'f32');
  expect(Number.isInteger(headSize) && headSize > 0 && headSize % 2 === 0 && x.cols % headSize === 0, 'rope', `head size ${headSize} must be even and divide ${x.cols}`);
  expect(Number.isFinite(theta) && theta > 0, 'rope', `theta must be a positive number, got ${theta}`);
  const chunks = rowChunks('rope', [x], rows.count);
  const positions = rec.positions.slice(0, rows.count);
  const table = rec.ropeTable(headSize, theta, Math.max(...positions) + 1, freqFactors);
  if (!table.parts.every((tp) => tp.wholeRows)) {
    throw new BackendError(`rope: a rotation table row of ${4 * headSize} bytes does not fit one buffer binding`);
  }
  for (const ch of chunks) {
    const xp = ch.parts[0];
    const mine = positions.slice(ch.r0, ch.r1);
    for (const tp of table.parts) {
      if (!mine.some((t) => t >= tp.r0 && t < tp.r1)) continue;
      rec.dispatch(
        'rope',
        `rope|${x.id}|${ch.r0}|${table.id}|${tp.r0}|${rows.word}`,
        [x, table],
        () => ({
          params: new Params().u(x.cols).u(headSize).u(ch.r0).u(rows.word).u(xp.r0).u(tp.r0).u(tp.r1),
          buffers: [xp.buffer, tp.buffer],
        }),
        Math.ceil(x.cols / 2 / 64),
        ch.r1 - ch.r0,
      );
    }
  }
}
