import { describe, expect, it, vi } from 'vitest';
import { ArgumentError, BackendError, contiguousRows, type Backend, type Tensor } from '@rama/backend';
import { CpuBackend, ScalarCpuBackend, WasmCpuBackend } from './index.js';
import { OP_WORDS } from './wasm/runtime.js';

// 3 threads (an odd split) also where the machine has fewer cores: these tests check results, not speed.
vi.mock('./wasm/runtime.js', async (importOriginal) => {
  const runtime = await importOriginal<typeof import('./wasm/runtime.js')>();
  return { ...runtime, hardwareThreads: async () => Math.max(3, await runtime.hardwareThreads()) };
});

const OP_BYTES = OP_WORDS * 4;

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

  it('uses all of its 4 GiB: tensors above 2 GiB and up to the last byte work', async () => {
    const be = await WasmCpuBackend.create({ threads: 2, maxRows: 1 });
    const row = (label: string) => ({ shape: [1, 64], dtype: 'f32' as const, label });
    const addressOf = (t: Tensor) => (t as unknown as { ptr: number }).ptr;
    try {
      // Blocks that are never touched cost address space, not memory (the test process stays ~60 MB).
      be.alloc({ shape: [2 ** 29], dtype: 'f32', label: 'the first 2 GiB' });
      const x = await be.upload(row('x'), new Float32Array(64).fill(2));
      const y = be.alloc(row('y'));
      be.alloc({ shape: [(2 ** 32 - be.spaces[0].heap.used - 64 * 4 - 2 * OP_BYTES) / 4], dtype: 'f32', label: 'up to the last 384 bytes' });
      const z = be.alloc(row('z'));
      expect(addressOf(x)).toBeGreaterThan(2 ** 31);
      expect(addressOf(z) + 64 * 4).toBe(2 ** 32 - 2 * OP_BYTES);
      be.write(x, new Float32Array([5, 6]), 3);
      const s = be.begin(contiguousRows(0, 1));
      s.add(y, x, x);
      s.add(z, y, x); // the program (two records) takes the last bytes
      s.submit();
      const want = new Float32Array(64).fill(6);
      want.set([15, 18], 3);
      expect(Array.from(await be.read(z))).toEqual(Array.from(want));
      expect(be.spaces[0].heap.used).toBe(2 ** 32);
      // the next tensor goes to a second memory
      be.alloc(row('one too many for the first memory'));
      expect(be.spaces.length).toBe(2);
    } finally {
      be.dispose();
    }
  });

  it('runs steps on every thread, reuses freed memory, and is unusable after dispose', async () => {
    const be = await CpuBackend.create({ threads: 3, maxRows: 4 });
    const a = await be.upload({ shape: [4, 100], dtype: 'f32', label: 'a' }, new Float32Array(400).fill(1.5));
    const b = be.alloc({ shape: [4, 100], dtype: 'f32', label: 'b' });
    for (let i = 0; i < 50; i++) {
      const s = be.begin(contiguousRows(0, 3));
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
    expect(() => be.begin(contiguousRows(0, 1))).toThrow(BackendError);
  });

  describe('alloc returns zeros wherever the memory comes from', () => {
    const f32 = (n: number, label: string) => ({ shape: [n], dtype: 'f32' as const, label });
    const sevens = (n: number) => new Float32Array(n).fill(7);
    // Each case leaves nonzero bytes where the next block will go, then allocates (in a fresh backend, so the layout is known).
    const cases: [string, (be: Backend) => Promise<Tensor>][] = [
      ['a block freed at the top, same size', async (be) => {
        be.free(await be.upload(f32(256, 'a'), sevens(256)));
        return be.alloc(f32(256, 'b'));
      }],
      ['a block freed at the top, then a larger one', async (be) => {
        be.free(await be.upload(f32(256, 'a'), sevens(256)));
        return be.alloc(f32(512, 'b'));
      }],
      ['two freed neighbours, merged', async (be) => {
        const [a, b] = [await be.upload(f32(100, 'a'), sevens(100)), await be.upload(f32(100, 'b'), sevens(100))];
        be.alloc(f32(256, 'keeps a and b off the top'));
        be.free(a);
        be.free(b);
        return be.alloc(f32(200, 'c'));
      }],
      ['the first part of a freed block', async (be) => {
        const a = await be.upload(f32(300, 'a'), sevens(300));
        be.alloc(f32(256, 'keeps a off the top'));
        be.free(a);
        return be.alloc(f32(64, 'b'));
      }],
      ['memory a step wrote', async (be) => {
        const x = await be.upload({ shape: [1, 128], dtype: 'f32', label: 'x' }, sevens(128));
        const y = be.alloc({ shape: [1, 128], dtype: 'f32', label: 'y' });
        const s = be.begin(contiguousRows(0, 1));
        s.add(y, x, x);
        s.submit();
        be.free(y);
        be.free(x);
        return be.alloc(f32(256, 'z'));
      }],
      ['the scratch a Q8_0 upload rearranges its rows in', async (be) => {
        const [rows, cols, gs] = [8, 64, 32];
        await be.upload({ shape: [rows, cols], dtype: 'q8_0', groupSize: gs, label: 'w' }, new Uint8Array(rows * cols + (4 * rows * cols) / gs).fill(0x3f));
        return be.alloc(f32(256, 'a'));
      }],
    ];
    for (const [name, arrange] of cases) {
      it(name, async () => {
        const be = await CpuBackend.create({ threads: 1, maxRows: 4 });
        try {
          const t = await arrange(be);
          expect(Array.from(await be.read(t)).filter((v) => v !== 0)).toEqual([]);
        } finally {
          be.dispose();
        }
      });
    }
  });

  it('rejects a token id outside the vocabulary at submit', async () => {
    const be = await CpuBackend.create({ threads: 2 });
    const table = await be.upload({ shape: [10, 8], dtype: 'f32', label: 'table' }, new Float32Array(80));
    const tokens = await be.upload({ shape: [1], dtype: 'i32', label: 'tokens' }, new Int32Array([10]));
    const out = be.alloc({ shape: [1, 8], dtype: 'f32', label: 'out' });
    const s = be.begin(contiguousRows(0, 1));
    s.embed(out, table, tokens);
    expect(() => s.submit()).toThrow(ArgumentError);
    be.dispose();
  });
});
