import { STEP_WGSL, Params, expect, expectDtype, rowLimit, rowsFor, type KernelDef, type Recorder } from './common.js';
import { rowChunks, type GpuTensor } from '../tensor.js';

// Rotates (x[2i], x[2i+1]) of each head by angle = f32(pos + r) * freq_i.
// freq_i = 1 / powf(theta, (2i mod headSize) / headSize) is computed on the host
// in f32 steps (as llama2.c does) and passed in the params. WGSL's sin/cos have
// no accuracy guarantee outside [-pi, pi], so the shader reduces the angle
// itself (Cody-Waite, exact for angles below ~12000) and evaluates Cephes'
// single-precision polynomials: within ~2 ulp of glibc's sinf/cosf.
const MAX_PAIRS = 256;

export const ropeKernels: KernelDef[] = [
  {
    name: 'rope',
    storage: ['rw'],
    wgsl: /* wgsl */ `${STEP_WGSL}
struct P { n: u32, headSize: u32, rStart: u32, rowLimit: u32, xRow0: u32, _a: u32, _b: u32, _c: u32,
  freq: array<vec4<f32>, ${MAX_PAIRS / 4}> }
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

// (sin, cos) of a finite angle.
fn sincos(v: f32) -> vec2<f32> {
  let a = abs(v);
  let k = floor(a * 0.63661977236758134 + 0.5);
  var r = a - k * 1.5703125;
  r = r - k * 4.837512969970703125e-4;
  r = r - k * 7.54978995489188216e-8;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  var sc: vec2<f32>;
  switch (u32(k) & 3u) {
    case 0u: { sc = vec2<f32>(s, c); }
    case 1u: { sc = vec2<f32>(c, -s); }
    case 2u: { sc = vec2<f32>(-s, -c); }
    default: { sc = vec2<f32>(-c, s); }
  }
  if (v < 0.0) { sc.x = -sc.x; }
  return sc;
}

@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let pi = gid.x;
  let r = p.rStart + gid.y;
  if (2u * pi >= p.n || r >= min(step.rows, p.rowLimit)) { return; }
  let fi = (2u * pi) % p.headSize / 2u;
  let freq = p.freq[fi / 4u][fi % 4u];
  let sc = sincos(f32(step.pos + r) * freq);
  let o = (r - p.xRow0) * p.n + 2u * pi;
  let v0 = x[o];
  let v1 = x[o + 1u];
  x[o] = v0 * sc.y - v1 * sc.x;
  x[o + 1u] = v0 * sc.x + v1 * sc.y;
}`,
  },
];

/** llama2.c's frequencies, step by step in f32. */
export function ropeFrequencies(headSize: number, theta: number): Float32Array {
  const f = Math.fround;
  const freq = new Float32Array(headSize / 2);
  for (let i = 0; i < headSize / 2; i++) {
    freq[i] = f(1 / f(Math.pow(f(theta), f((2 * i) / headSize))));
  }
  return freq;
}

export function rope(rec: Recorder, x: GpuTensor, headSize: number, theta: number): void {
  expectDtype('rope', x, 'f32');
  expect(Number.isInteger(headSize) && headSize > 0 && headSize % 2 === 0 && x.cols % headSize === 0, 'rope', `head size ${headSize} must be even and divide ${x.cols}`);
  expect(headSize / 2 <= MAX_PAIRS, 'rope', `head size ${headSize} is above the supported ${2 * MAX_PAIRS}`);
  const rows = rowsFor(rec, x);
  const lim = rowLimit(x);
  for (const ch of rowChunks('rope', [x], rows)) {
    const xp = ch.parts[0];
    rec.dispatch(
      'rope',
      `rope|${x.id}|${ch.r0}|${headSize}|${theta}|${lim}`,
      [x],
      () => {
        const params = new Params().u(x.cols).u(headSize).u(ch.r0).u(lim).u(xp.r0).pad();
        const freq = ropeFrequencies(headSize, theta);
        for (let i = 0; i < MAX_PAIRS; i++) params.f(i < freq.length ? freq[i] : 0);
        return { params, buffers: [xp.buffer] };
      },
      Math.ceil(x.cols / 2 / 64),
      ch.r1 - ch.r0,
    );
  }
}
