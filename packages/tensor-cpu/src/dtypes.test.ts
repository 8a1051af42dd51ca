import { describe, expect, it } from 'vitest';
import { ArgumentError, byteLengthOf, registeredDTypes, type Backend, type TensorDesc } from '@rama/backend';
import { CpuBackend } from './index.js';

for (const kernels of ['scalar', 'wasm'] as const) {
  describe(`CPU backend (${kernels}): dtypes`, () => {
    const make = (): Promise<Backend> => CpuBackend.create({ kernels, threads: 1, maxRows: 2 });

    it('supports f32, i32 and q8_0 and nothing else registered', async () => {
      const be = await make();
      try {
        expect(registeredDTypes().filter((t) => be.supports(t.name)).map((t) => t.name)).toEqual(['f32', 'i32', 'q8_0']);
      } finally {
        be.dispose();
      }
    });

    it('refuses an unsupported registered type (f16) on upload and alloc, naming the tensor and the type', async () => {
      const be = await make();
      try {
        const desc: TensorDesc = { label: 'layers.0.wq', shape: [4, 32], dtype: 'f16' };
        const err = await be.upload(desc, new Uint8Array(byteLengthOf(desc))).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ArgumentError);
        expect((err as Error).message).toBe(
          'layers.0.wq: the cpu backend does not support dtype f16 (it supports f32, i32, q8_0); convert the tensor or use another backend',
        );
        expect(() => be.alloc({ ...desc, dtype: 'bf16' })).toThrow(/layers\.0\.wq: the cpu backend does not support dtype bf16/);
        // nothing was allocated: a supported tensor still fits and works
        const t = await be.upload({ label: 'x', shape: [2], dtype: 'f32' }, new Float32Array([1, 2]));
        expect(Array.from(await be.read(t))).toEqual([1, 2]);
      } finally {
        be.dispose();
      }
    });
  });
}
