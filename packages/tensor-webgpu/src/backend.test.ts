/// <reference types="@webgpu/types" />
import { ArgumentError, BackendError, contiguousRows, f16ToF32, type Tensor } from '@rama/backend';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScalarCpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from './index.js';
import { compileKernel } from './pipelines.js';
import { planParts, type GpuTensor } from './tensor.js';
import { quantizeActivations } from '@rama/quant-q80';
// The CPU reference kernels (llama2.c's run.c in f32 steps), by relative path: a test-only import.
import { rope as ropeRef } from '../../tensor-cpu/src/kernels/scalar.js';

const KiB = 1024;
const parts = (t: Tensor) => (t as GpuTensor).parts;

describe('WebGpuBackend', () => {
  let be: WebGpuBackend;
  let small: WebGpuBackend;
  beforeAll(async () => {
    be = await WebGpuBackend.create({ maxRows: 8 });
    small = await WebGpuBackend.create({ maxRows: 8, maxBindingSize: 64 * KiB });
  });
  afterAll(() => {
    be.dispose();
    small.dispose();
  });

  it('names itself and its device', () => {
    expect(be.name).toBe('webgpu');
    expect(be.description).toMatch(/WebGPU/);
    expect(small.description).toMatch(/split at 65536 bytes/);
  });

  it('splits tensors larger than a binding by rows, or a too-long row into segments', async () => {
    const table = await small.upload({ label: 'table', shape: [600, 32], dtype: 'f32' }, new Float32Array(600 * 32));
    expect(parts(table).length).toBe(2);
    expect(parts(table).every((p) => p.wholeRows && p.bytes <= 64 * KiB)).toBe(true);
    const logits = small.alloc({ label: 'logits', shape: [1, 40000], dtype: 'f32' });
    expect(parts(logits).length).toBe(3);
    expect(parts(logits)[0].wholeRows).toBe(false);
    const q = await small.upload({ label: 'q', shape: [300, 256], dtype: 'q8_0', groupSize: 64 }, new Uint8Array(300 * 256 + 4 * 1200));
    expect(parts(q).length).toBe(2);
    expect(parts(await be.upload({ label: 't', shape: [600, 32], dtype: 'f32' }, new Float32Array(600 * 32)))).toHaveLength(1);
  });

  it('round-trips data through split buffers (upload, write at an offset, read)', async () => {
    const data = Float32Array.from({ length: 3 * 20000 }, (_, i) => i * 0.5);
    const t = await small.upload({ label: 'x', shape: [3, 20000], dtype: 'f32' }, data);
    expect(parts(t).length).toBeGreaterThan(3);
    expect(await small.read(t)).toEqual(data);
    const patch = Float32Array.from({ length: 30000 }, (_, i) => -i);
    small.write(t, patch, 15000);
    data.set(patch, 15000);
    expect(await small.read(t)).toEqual(data);
    expect(await small.read(t, 7)).toEqual(data.subarray(0, 7));
    const filled = await small.upload({ label: 'f', shape: [3, 20000], dtype: 'f32' }, (dst) => {
      new Float32Array(dst.buffer, dst.byteOffset, dst.byteLength / 4).set(data);
    });
    expect(await small.read(filled)).toEqual(data);
  });

  it('allocates zero-filled tensors and reads i32', async () => {
    const t = be.alloc({ label: 'tok', shape: [8], dtype: 'i32' });
    expect(await be.read(t)).toEqual(new Int32Array(8));
    be.write(t, new Int32Array([7, -3]), 2);
    expect(Array.from(await be.read(t))).toEqual([0, 0, 7, -3, 0, 0, 0, 0]);
  });

  it('throws a BackendError naming the need and the limit when a tensor cannot fit', async () => {
    const tiny = await WebGpuBackend.create({ maxBindingSize: 1 * KiB });
    try {
      // One q8_0 row of 2048 values needs 2048 + 256 bytes in one binding.
      const err = await tiny
        .upload({ label: 'layers.0.w1', shape: [4, 2048], dtype: 'q8_0', groupSize: 32 }, new Uint8Array(4 * 2048 + 4 * 256))
        .catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.code).toBe('E_BACKEND');
      expect(err.message).toMatch(/layers\.0\.w1.*2304 bytes.*allows 1024/);
    } finally {
      tiny.dispose();
    }
  });

  it('reports an allocation the device refuses as a BackendError', async () => {
    // A device whose createBuffer fails for one label, as an out-of-memory device would.
    const real = be.device;
    const failing = new Proxy(real, {
      get(target, key) {
        if (key === 'createBuffer') {
          return (d: GPUBufferDescriptor) => target.createBuffer(d.label === 'huge' ? { ...d, usage: d.usage | 0x1 } : d);
        }
        const v = Reflect.get(target, key, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const b = await WebGpuBackend.create({ device: failing });
    try {
      const err = await b.upload({ label: 'huge', shape: [256, 256], dtype: 'f32' }, new Float32Array(65536)).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toMatch(/huge: cannot allocate 0\.3 MiB in 1 buffer\(s\).*the device offers .* per buffer/s);
    } finally {
      b.dispose();
    }
  });

  it('puts the numbered WGSL source in a compile error', async () => {
    const err = await compileKernel(be.device, {
      name: 'broken',
      storage: [],
      wgsl: 'struct Step { pos: u32 }\n@compute @workgroup_size(1) fn main() {\n  let y: u32 = 1.5;\n}',
    }).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/kernel "broken" failed to compile/);
    expect(err.message).toMatch(/line 3/);
    expect(err.message).toMatch(/ {3}3\| {3}let y: u32 = 1\.5;/);
  });

  it('rotates bit-identically to the CPU reference, growing and splitting the rotation table', async () => {
    for (const b of [be, small]) {
      const hs = 16;
      const n = 64;
      const x = b.alloc({ label: 'x', shape: [8, n], dtype: 'f32' });
      // pos 1022 crosses the first 64 KiB table part (1024 positions of 64 bytes); 5000 grows the table.
      for (const [pos, rows] of [[0, 8], [1022, 4], [5000, 3], [4, 8]]) {
        const data = Float32Array.from({ length: 8 * n }, (_, i) => Math.fround(Math.sin(i * 12.9898 + pos) * 3));
        b.write(x, data);
        const s = b.begin(contiguousRows(pos, rows));
        s.rope(x, hs, 10000);
        s.submit();
        const want = data.slice();
        for (let r = 0; r < rows; r++) ropeRef(want, r * n, n, hs, pos + r, 10000);
        expect(await b.read(x)).toEqual(want);
      }
      expect(b.ropeTable(hs, 10000, 1).rows).toBe(5003);
      expect(parts(b.ropeTable(hs, 10000, 1))).toHaveLength(b === small ? 5 : 1);
      b.free(x);
    }
    // The first table takes its size from the KV cache ([layers, seqLen, kvDim]) allocated before it.
    const c = await WebGpuBackend.create({ maxRows: 8 });
    try {
      c.alloc({ label: 'keys', shape: [2, 300, 32], dtype: 'f32' });
      expect(c.ropeTable(16, 10000, 1).rows).toBe(300);
      expect(c.ropeTable(16, 10000, 300)).toBe(c.ropeTable(16, 10000, 1));
      expect(c.ropeTable(16, 10000, 301).rows).toBe(600);
    } finally {
      c.dispose();
    }
    // Or from a cache of several slots ([layers, slots, seqLen, kvDim]).
    const d = await WebGpuBackend.create({ maxRows: 8 });
    try {
      d.alloc({ label: 'keys', shape: [2, 4, 500, 32], dtype: 'f32' });
      expect(d.ropeTable(16, 10000, 1).rows).toBe(500);
    } finally {
      d.dispose();
    }
  });

  it('rotates each row by its own position, bit-identically, over a split rotation table', async () => {
    for (const b of [be, small]) {
      const hs = 16;
      const n = 32;
      const x = b.alloc({ label: 'x', shape: [5, n], dtype: 'f32' });
      // At 64 KiB a table part holds 1024 positions: these rows read three parts, out of order.
      const positions = [1023, 5, 2100, 1024, 5];
      const data = Float32Array.from({ length: 5 * n }, (_, i) => Math.fround(Math.cos(i * 7.31) * 2));
      b.write(x, data);
      const s = b.begin({ positions, slots: [0, 1, 2, 0, 3] });
      s.rope(x, hs, 10000);
      s.submit();
      const want = data.slice();
      positions.forEach((pos, r) => ropeRef(want, r * n, n, hs, pos, 10000));
      expect(await b.read(x)).toEqual(want);
      b.free(x);
    }
  });

  it('rows of several sequences: storeKV and attention on a 4-D cache spanning several buffers', async () => {
    // [2 layers, 3 slots, 300 positions, 32]: 512 cache rows per 64 KiB buffer, so layer 1's slot 0
    // (rows 900..1199) and slot 2 (rows 1500..1799) each cross a buffer boundary.
    const layers = 2, slots = 3, seq = 300, hs = 16, nHeads = 4, kvDim = 32, dim = nHeads * hs;
    const r = (seed: number, n: number) => Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin(i * 12.9898 + seed) * 43758.5453 % 1));
    const cacheData = [r(1, layers * slots * seq * kvDim), r(2, layers * slots * seq * kvDim)];
    const rows = { positions: [150, 151, 152, 299, 10], slots: [0, 0, 0, 2, 1] };
    async function run(b: WebGpuBackend | ScalarCpuBackend, layout: { positions: number[]; slots: number[] }, pick: number[]) {
      const n = pick.length;
      const sel = (d: Float32Array, w: number) => {
        const o = new Float32Array(8 * w);
        pick.forEach((p, i) => o.set(d.subarray(p * w, (p + 1) * w), i * w));
        return o;
      };
      const q = await b.upload({ label: 'q', shape: [8, dim], dtype: 'f32' }, sel(r(3, 5 * dim), dim));
      const k = await b.upload({ label: 'k', shape: [8, kvDim], dtype: 'f32' }, sel(r(4, 5 * kvDim), kvDim));
      const v = await b.upload({ label: 'v', shape: [8, kvDim], dtype: 'f32' }, sel(r(5, 5 * kvDim), kvDim));
      const keys = await b.upload({ label: 'keys', shape: [layers, slots, seq, kvDim], dtype: 'f32' }, cacheData[0].slice());
      const values = await b.upload({ label: 'values', shape: [layers, slots, seq, kvDim], dtype: 'f32' }, cacheData[1].slice());
      const out = b.alloc({ label: 'out', shape: [8, dim], dtype: 'f32' });
      const s = b.begin(layout);
      s.rope(q, hs, 10000);
      s.rope(k, hs, 10000);
      s.storeKV(keys, 1, k);
      s.storeKV(values, 1, v);
      s.attention(out, q, keys, values, 1, hs);
      s.submit();
      const res = { out: (await b.read(out, n * dim)) as Float32Array, keys: (await b.read(keys)) as Float32Array };
      for (const t of [q, k, v, keys, values, out]) b.free(t);
      return res;
    }
    const cpu = new ScalarCpuBackend({ maxRows: 8 });
    try {
      const want = await run(cpu, rows, [0, 1, 2, 3, 4]);
      for (const b of [be, small]) {
        const got = await run(b, rows, [0, 1, 2, 3, 4]);
        expect(got.keys).toEqual(want.keys);
        for (let i = 0; i < want.out.length; i++) expect(Math.abs(got.out[i] - want.out[i])).toBeLessThanOrEqual(2e-5);
        // A sequence's results do not depend on what else the step holds: slot 2's row alone gives the same bits.
        const alone = await run(b, { positions: [299], slots: [2] }, [3]);
        expect(alone.out).toEqual(got.out.slice(3 * dim, 4 * dim));
      }
    } finally {
      cpu.dispose();
    }
  });

  it('gathers rows in place (out = x), across split rows', async () => {
    for (const [b, n] of [[be, 24], [small, 17000]] as const) {
      const data = Float32Array.from({ length: 5 * n }, (_, i) => i);
      const x = await b.upload({ label: 'x', shape: [5, n], dtype: 'f32' }, data);
      const s = b.begin(contiguousRows(0, 5));
      s.gather(x, x, [4, 0, 2]);
      s.submit();
      const want = data.slice();
      [4, 0, 2].forEach((r, i) => want.set(data.subarray(r * n, (r + 1) * n), i * n));
      expect(await b.read(x)).toEqual(want);
      b.free(x);
    }
  });

  it('makes no bind groups per step: positions, slots and row counts live in the step buffer', async () => {
    const dim = 32, hs = 8, vocab = 50;
    const t = (label: string, shape: number[]) => be.alloc({ label, shape, dtype: 'f32' });
    const x = t('x', [8, dim]), keys = t('keys', [1, 4, 16, dim]), values = t('values', [1, 4, 16, dim]);
    const out = t('out', [8, dim]), last = t('last', [8, dim]), norm = t('norm', [dim]), cls = t('cls', [vocab, dim]), logits = t('logits', [8, vocab]);
    const ids = be.alloc({ label: 'ids', shape: [8], dtype: 'i32' });
    const step = (positions: number[], slots: number[], pick: number[]) => {
      const s = be.begin({ positions, slots });
      s.rope(x, hs, 10000);
      s.storeKV(keys, 0, x);
      s.storeKV(values, 0, x);
      s.attention(out, x, keys, values, 0, hs);
      s.gather(last, out, pick);
      s.rmsnorm(last, last, norm, 1e-5);
      s.matmul(logits, last, cls);
      s.argmax(ids, logits);
      s.submit();
    };
    const bindings = () => (be as unknown as { bindings: Map<string, unknown> }).bindings.size;
    // A prompt (its last row's logits), then a decoding step (every row's logits).
    step([0, 1, 2, 3], [0, 0, 0, 0], [3]);
    step([4, 0], [0, 1], [0, 1]);
    const made = bindings();
    step([0, 1, 2, 5, 1], [2, 2, 2, 0, 1], [2, 3, 4]);
    step([6, 2, 3], [0, 1, 2], [0, 1, 2]);
    step([7, 4, 3, 0, 1, 2, 3], [0, 2, 1, 3, 3, 3, 3], [0, 1, 2, 6]);
    step([8], [0], [0]);
    expect(bindings()).toBe(made);
    await be.read(ids);
    for (const u of [x, keys, values, out, last, norm, cls, logits, ids]) be.free(u);
  });

  it('rejects freed tensors, other backends\' tensors and bad steps', async () => {
    const t = be.alloc({ label: 'gone', shape: [4], dtype: 'f32' });
    be.free(t);
    await expect(be.read(t)).rejects.toThrow(ArgumentError);
    const other = small.alloc({ label: 'theirs', shape: [4], dtype: 'f32' });
    expect(() => be.write(other, new Float32Array(4))).toThrow(/not a tensor of this WebGPU backend/);
    expect(() => be.begin(contiguousRows(0, 9))).toThrow(/outside 1\.\.8/);
    expect(() => be.begin({ positions: [0, 1], slots: [0] })).toThrow(ArgumentError);
    const s = be.begin(contiguousRows(0, 1));
    s.submit();
    expect(() => s.submit()).toThrow(/already submitted/);
  });

  it('is unusable after dispose', async () => {
    const b = await WebGpuBackend.create();
    const t = b.alloc({ label: 't', shape: [4], dtype: 'f32' });
    b.dispose();
    expect(() => b.alloc({ label: 'u', shape: [4], dtype: 'f32' })).toThrow(BackendError);
    await expect(b.read(t)).rejects.toThrow(BackendError);
  });
});

describe('matmul kernel variants (rows, workgroups)', () => {
  const variants: { name: string; rows: WebGpuBackend; wg: WebGpuBackend }[] = [];
  beforeAll(async () => {
    for (const maxBindingSize of [undefined, 64 * KiB]) {
      variants.push({
        name: maxBindingSize ? '64 KiB bindings' : 'default bindings',
        rows: await WebGpuBackend.create({ maxRows: 8, maxBindingSize, matmulKernels: 'rows' }),
        wg: await WebGpuBackend.create({ maxRows: 8, maxBindingSize, matmulKernels: 'workgroups' }),
      });
    }
  });
  afterAll(() => {
    for (const v of variants) {
      v.rows.dispose();
      v.wg.dispose();
    }
  });

  // Deterministic pseudo-random values in [-1, 1).
  const rand = (seed: number) => {
    let s = seed >>> 0;
    return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31) - 1;
  };

  async function run(b: WebGpuBackend, w: { desc: { shape: number[]; dtype: 'f32' | 'q8_0' | 'q4_0' | 'f16' | 'q4_k' | 'q5_k' | 'q6_k'; groupSize?: number }; data: Uint8Array | Float32Array }, x: Float32Array, rows: number): Promise<Float32Array> {
    const [d, n] = w.desc.shape;
    const wt = await b.upload({ label: 'w', ...w.desc }, w.data);
    const xt = await b.upload({ label: 'x', shape: [8, n], dtype: 'f32' }, x);
    const out = b.alloc({ label: 'out', shape: [8, d], dtype: 'f32' });
    const s = b.begin(contiguousRows(0, rows));
    s.matmul(out, xt, wt);
    s.submit();
    const got = (await b.read(out, rows * d)) as Float32Array;
    for (const t of [wt, xt, out]) b.free(t);
    return got;
  }

  it('describes the default: rows on SwiftShader', async () => {
    const b = await WebGpuBackend.create();
    try {
      if (/swiftshader/i.test(b.description)) expect(b.matmulKernels).toBe('rows');
      expect(b.description).toMatch(new RegExp(`${b.matmulKernels} matmul kernels`));
    } finally {
      b.dispose();
    }
    await expect(WebGpuBackend.create({ matmulKernels: 'tiles' as never })).rejects.toThrow(ArgumentError);
  });

  it('q8_0: bit-identical results (runq.c order), over tiles, batch rows and split weights', async () => {
    // [d, n, G]: several 128-word tiles (G 32, G 4), one group per tile (G 512), a group too big
    // for a tile (G 1024: row kernel) and groups that are not whole words (G 6: row kernel).
    for (const [d, n, G] of [[70, 4096, 32], [33, 1100, 4], [9, 1536, 512], [5, 2048, 1024], [12, 120, 6]]) {
      const r = rand(d * n + G);
      const q = new Int8Array(d * n).map(() => Math.round(r() * 127));
      const scales = Float32Array.from({ length: (d * n) / G }, () => Math.fround(0.001 + Math.abs(r()) * 0.01));
      const data = new Uint8Array(d * n + 4 * scales.length);
      data.set(new Uint8Array(q.buffer));
      data.set(new Uint8Array(scales.buffer), d * n);
      const x = Float32Array.from({ length: 8 * n }, () => Math.fround(r() * 2));
      const w = { desc: { shape: [d, n], dtype: 'q8_0' as const, groupSize: G }, data };
      for (const v of variants) {
        for (const rows of [1, 5]) {
          const a = await run(v.rows, w, x, rows);
          const b = await run(v.wg, w, x, rows);
          expect(b, `${v.name}, [${d}, ${n}] G ${G}, ${rows} rows`).toEqual(a);
          expect(a.some((e) => e !== 0)).toBe(true);
        }
      }
    }
  });

  it('q4_0: bit-identical results (block order), over several 64-block tiles, batch rows and split weights', async () => {
    // [d, n]: 80 blocks a row (two tiles; 84 KB, two parts at 64 KiB), 130 (three tiles), 3 (one, partial)
    for (const [d, n] of [[60, 2560], [6, 4160], [37, 96]]) {
      const r = rand(d * n + 7);
      const blocks = (d * n) / 32;
      const data = new Uint8Array(18 * blocks).map(() => Math.floor((r() + 1) * 128));
      for (let b = 0; b < blocks; b++) {
        data[18 * b] = Math.floor((r() + 1) * 128); // f16 scale: a positive normal from 2^-10 to 2^-7
        data[18 * b + 1] = 0x14 + Math.floor((r() + 1) * 6);
      }
      const x = Float32Array.from({ length: 8 * n }, () => Math.fround(r() * 2));
      const w = { desc: { shape: [d, n], dtype: 'q4_0' as const }, data };
      for (const v of variants) {
        for (const rows of [1, 5]) {
          const a = await run(v.rows, w, x, rows);
          const b = await run(v.wg, w, x, rows);
          expect(b, `${v.name}, [${d}, ${n}], ${rows} rows`).toEqual(a);
          expect(a.some((e) => e !== 0)).toBe(true);
        }
      }
    }
  });

  // The k-quant numerics, written out from their definition: x quantized in groups of 256
  // (runq.c's q8_0), then per block b, in f32 steps: val = val + ((f32(isum) * d) - (f32(msum) * dmin)) * xs_b
  // (Q4_K, Q5_K) or val = val + (f32(isum) * d) * xs_b (Q6_K), isum and msum exact integer sums.
  type KQuant = 'q4_k' | 'q5_k' | 'q6_k';
  const K_BYTES = { q4_k: 144, q5_k: 176, q6_k: 210 } as const;

  /** Block `at`'s 256 integer values q, the scale of each value's sub-block, its min (0 for Q6_K), d and dmin. */
  function decodeK(type: KQuant, bytes: Uint8Array, at: number) {
    const q = new Int32Array(256), sc = new Int32Array(256), m = new Int32Array(256);
    const f16 = (o: number) => f16ToF32(bytes[at + o] | (bytes[at + o + 1] << 8));
    if (type === 'q6_k') {
      for (let h = 0; h < 2; h++) {
        const ql = at + 64 * h, qh = at + 128 + 32 * h;
        for (let l = 0; l < 32; l++) {
          const e = 128 * h + l;
          q[e] = ((bytes[ql + l] & 15) | ((bytes[qh + l] & 3) << 4)) - 32;
          q[e + 32] = ((bytes[ql + l + 32] & 15) | (((bytes[qh + l] >> 2) & 3) << 4)) - 32;
          q[e + 64] = ((bytes[ql + l] >> 4) | (((bytes[qh + l] >> 4) & 3) << 4)) - 32;
          q[e + 96] = ((bytes[ql + l + 32] >> 4) | (((bytes[qh + l] >> 6) & 3) << 4)) - 32;
        }
      }
      for (let e = 0; e < 256; e++) sc[e] = (bytes[at + 192 + (e >> 4)] << 24) >> 24;
      return { q, sc, m, d: f16(208), dmin: 0 };
    }
    const s = (i: number) => bytes[at + 4 + i];
    const qs = at + (type === 'q4_k' ? 16 : 48);
    for (let k = 0; k < 4; k++) {
      for (let l = 0; l < 32; l++) {
        const hb = type === 'q5_k' ? bytes[at + 16 + l] : 0;
        q[64 * k + l] = (bytes[qs + 32 * k + l] & 15) + (((hb >> (2 * k)) & 1) << 4);
        q[64 * k + 32 + l] = (bytes[qs + 32 * k + l] >> 4) + (((hb >> (2 * k + 1)) & 1) << 4);
      }
    }
    for (let j = 0; j < 8; j++) {
      const scj = j < 4 ? s(j) & 63 : (s(j + 4) & 15) | ((s(j - 4) >> 6) << 4);
      const mj = j < 4 ? s(j + 4) & 63 : (s(j + 4) >> 4) | ((s(j) >> 6) << 4);
      sc.fill(scj, 32 * j, 32 * j + 32);
      m.fill(mj, 32 * j, 32 * j + 32);
    }
    return { q, sc, m, d: f16(0), dmin: f16(2) };
  }

  function kquantRef(type: KQuant, data: Uint8Array, d: number, n: number, x: Float32Array, rows: number): Float32Array {
    const res = new Float32Array(rows * d);
    const xq = new Int8Array(n), xs = new Float32Array(n / 256);
    const f = Math.fround;
    for (let r = 0; r < rows; r++) {
      quantizeActivations(x, r * n, n, 256, xq, xs);
      for (let j = 0; j < d; j++) {
        let val = 0;
        for (let b = 0; b < n / 256; b++) {
          const blk = decodeK(type, data, K_BYTES[type] * ((j * n) / 256 + b));
          let isum = 0, msum = 0;
          for (let e = 0; e < 256; e++) {
            isum += blk.sc[e] * blk.q[e] * xq[256 * b + e];
            msum += blk.m[e] * xq[256 * b + e];
          }
          val = f(val + f(f(f(isum * blk.d) - f(msum * blk.dmin)) * xs[b]));
        }
        res[r * d + j] = val;
      }
    }
    return res;
  }

  it('q4_k, q5_k, q6_k: bit-identical to the k-quant numerics, over tiles, batch rows and split weights', async () => {
    // [d, n]: 10 blocks a row (a tile of 8 and a partial one; two parts at 64 KiB), 17 (three tiles), 1.
    const shapes = [[60, 2560], [6, 4352], [37, 256]];
    for (const type of ['q4_k', 'q5_k', 'q6_k'] as const) {
      const plans = planParts({ label: 'w', shape: shapes[0], dtype: type }, 64 * KiB);
      expect(plans.length).toBe(2);
      expect(plans.every((p) => p.wholeRows && p.bytes <= 64 * KiB)).toBe(true);
      // A row of 512 blocks (73728 bytes and more) fits no 64 KiB binding.
      expect(() => planParts({ label: 'w', shape: [2, 256 * 512], dtype: type }, 64 * KiB)).toThrow(BackendError);
      for (const [d, n] of shapes) {
        const r = rand(d * n + K_BYTES[type]);
        const size = K_BYTES[type];
        const blocks = (d * n) / 256;
        const data = new Uint8Array(size * blocks).map(() => Math.floor((r() + 1) * 128));
        // f16 scales: positive normals from 2^-10 to 2^-7 (d at 208 for Q6_K; d, dmin at 0, 2 for Q4_K/Q5_K).
        for (let b = 0; b < blocks; b++) {
          for (const o of type === 'q6_k' ? [208] : [0, 2]) {
            data[size * b + o] = Math.floor((r() + 1) * 128);
            data[size * b + o + 1] = 0x14 + Math.floor((r() + 1) * 6);
          }
        }
        const x = Float32Array.from({ length: 8 * n }, () => Math.fround(r() * 2));
        const w = { desc: { shape: [d, n], dtype: type }, data };
        for (const rows of [1, 5]) {
          const want = kquantRef(type, data, d, n, x, rows);
          expect(want.some((e) => e !== 0)).toBe(true);
          for (const v of variants) {
            expect(await run(v.rows, w, x, rows), `${type} rows kernel, ${v.name}, [${d}, ${n}], ${rows} rows`).toEqual(want);
            expect(await run(v.wg, w, x, rows), `${type} workgroup kernel, ${v.name}, [${d}, ${n}], ${rows} rows`).toEqual(want);
          }
        }
      }
    }
  });

  it('f32: both near the exact dot product, and within one rounding of each other', async () => {
    for (const [d, n] of [[40, 4096], [17, 1001]]) {
      const r = rand(d + n);
      const wv = Float32Array.from({ length: d * n }, () => Math.fround(r() * 0.1));
      const x = Float32Array.from({ length: 8 * n }, () => Math.fround(r()));
      const w = { desc: { shape: [d, n], dtype: 'f32' as const }, data: wv };
      for (const v of variants) {
        const a = await run(v.rows, w, x, 5);
        const b = await run(v.wg, w, x, 5);
        for (let i = 0; i < 5; i++) {
          for (let j = 0; j < d; j++) {
            let exact = 0;
            let mag = 0;
            for (let k = 0; k < n; k++) {
              exact += wv[j * n + k] * x[i * n + k];
              mag += Math.abs(wv[j * n + k] * x[i * n + k]);
            }
            // Where fma is not fused (SwiftShader), each product's rounding error is lost: up to 2^-24 * mag.
            const bound = 2 ** -23 * Math.abs(exact) + 2 ** -24 * mag;
            expect(Math.abs(a[i * d + j] - exact)).toBeLessThanOrEqual(bound);
            expect(Math.abs(b[i * d + j] - exact)).toBeLessThanOrEqual(bound);
            // Both sum the same products with compensation, in different orders: within one rounding of each other.
            expect(Math.abs(a[i * d + j] - b[i * d + j])).toBeLessThanOrEqual(2 ** -23 * Math.abs(a[i * d + j]) + 2 ** -40 * mag);
          }
        }
      }
    }
  });
});
