/// <reference types="@webgpu/types" />
import { ArgumentError, BackendError, type Tensor } from '@rama/backend';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebGpuBackend } from './index.js';
import { compileKernel } from './pipelines.js';
import type { GpuTensor } from './tensor.js';
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
        const s = b.begin(pos, rows);
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
  });

  it('rejects freed tensors, other backends\' tensors and bad steps', async () => {
    const t = be.alloc({ label: 'gone', shape: [4], dtype: 'f32' });
    be.free(t);
    await expect(be.read(t)).rejects.toThrow(ArgumentError);
    const other = small.alloc({ label: 'theirs', shape: [4], dtype: 'f32' });
    expect(() => be.write(other, new Float32Array(4))).toThrow(/not a tensor of this WebGPU backend/);
    expect(() => be.begin(0, 9)).toThrow(/maxRows/);
    const s = be.begin(0, 1);
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
