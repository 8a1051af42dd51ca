import { describe, expect, it } from 'vitest';
import { ArgumentError, BackendError } from '@rama/backend';
import { CpuBackend, ScalarCpuBackend, WasmCpuBackend } from './index.js';

describe('CpuBackend.create', () => {
  it('makes the WASM backend by default and the scalar one on request', async () => {
    const be = await CpuBackend.create({ threads: 2 });
    expect(be).toBeInstanceOf(WasmCpuBackend);
    expect(be.threads).toBe(2);
    expect(be.description).toMatch(/WebAssembly SIMD, 2 threads/);
    be.dispose();
    const ref = await CpuBackend.create({ kernels: 'scalar' });
    expect(ref).toBeInstanceOf(ScalarCpuBackend);
    ref.dispose();
  });

  it('rejects bad options', async () => {
    await expect(CpuBackend.create({ threads: 0 })).rejects.toThrow(ArgumentError);
    await expect(CpuBackend.create({ threads: 1.5 })).rejects.toThrow(ArgumentError);
    await expect(CpuBackend.create({ kernels: 'gpu' as never })).rejects.toThrow(ArgumentError);
  });

  it('says clearly when a model does not fit in 4 GiB', async () => {
    const be = await CpuBackend.create({ threads: 1 });
    expect(() => be.alloc({ shape: [2 ** 30 + 16], dtype: 'f32', label: 'huge' })).toThrow(BackendError);
    expect(() => be.alloc({ shape: [2 ** 30 + 16], dtype: 'f32', label: 'huge' })).toThrow(/4 GiB/);
    be.dispose();
  });

  it('runs steps on every thread, reuses freed memory, and is unusable after dispose', async () => {
    const be = await CpuBackend.create({ threads: 3, maxRows: 4 });
    const a = await be.upload({ shape: [4, 100], dtype: 'f32', label: 'a' }, new Float32Array(400).fill(1.5));
    const b = be.alloc({ shape: [4, 100], dtype: 'f32', label: 'b' });
    for (let i = 0; i < 50; i++) {
      const s = be.begin(0, 3);
      s.add(b, b, a);
      s.submit();
    }
    const got = await be.read(b);
    expect(got[0]).toBe(75);
    expect(got[299]).toBe(75);
    expect(got[300]).toBe(0); // row 3 is past the step's rows
    be.free(b);
    const c = be.alloc({ shape: [4, 100], dtype: 'f32', label: 'c' });
    expect(Array.from(await be.read(c)).every((v) => v === 0)).toBe(true); // reused memory is zeroed
    await expect(be.read(b)).rejects.toThrow(ArgumentError);
    be.dispose();
    expect(() => be.begin(0, 1)).toThrow(BackendError);
  });

  it('rejects a token id outside the vocabulary at submit', async () => {
    const be = await CpuBackend.create({ threads: 2 });
    const table = await be.upload({ shape: [10, 8], dtype: 'f32', label: 'table' }, new Float32Array(80));
    const tokens = await be.upload({ shape: [1], dtype: 'i32', label: 'tokens' }, new Int32Array([10]));
    const out = be.alloc({ shape: [1, 8], dtype: 'f32', label: 'out' });
    const s = be.begin(0, 1);
    s.embed(out, table, tokens);
    expect(() => s.submit()).toThrow(ArgumentError);
    be.dispose();
  });
});
