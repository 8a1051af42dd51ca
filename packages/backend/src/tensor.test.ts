import { describe, expect, it } from 'vitest';
import { ArgumentError } from '@rama/core';
import {
  byteLengthOf, checkSupported, dtypeTraits, isDType, registerDType, registeredDTypes, type DType, type TensorDesc,
} from './index.js';

// A type registered by this test, the way a package adds one: its name joins DType, its traits the registry.
declare module './tensor.js' {
  interface DTypes {
    test_q4_0: true;
  }
}
registerDType({
  name: 'test_q4_0',
  kind: 'quantized',
  blockSize: 32,
  bytesPerBlock: 18,
  layout: "GGUF's Q4_0, for this test: blocks of 32, an f16 scale then 16 bytes of 4-bit values",
});

const desc = (dtype: DType, shape: number[], groupSize?: number): TensorDesc => ({ label: 'layers.0.wq', dtype, shape, groupSize });

describe('dtype registry', () => {
  it('knows the built-in types by their traits', () => {
    const names = registeredDTypes().map((t) => t.name);
    expect(names.slice(0, 6)).toEqual(['f32', 'i32', 'q8_0', 'f16', 'bf16', 'q4_0']);
    expect(dtypeTraits('q4_0')).toMatchObject({ kind: 'quantized', blockSize: 32, bytesPerBlock: 18 });
    expect(dtypeTraits('f32')).toMatchObject({ kind: 'float', blockSize: 1, bytesPerBlock: 4 });
    expect(dtypeTraits('i32')).toMatchObject({ kind: 'int', blockSize: 1, bytesPerBlock: 4 });
    expect(dtypeTraits('q8_0')).toMatchObject({ kind: 'quantized', blockSize: 'groupSize' });
    expect(dtypeTraits('q8_0').layout).toMatch(/llama2\.c/);
    expect(dtypeTraits('f16')).toMatchObject({ kind: 'float', blockSize: 1, bytesPerBlock: 2 });
    expect(dtypeTraits('bf16')).toMatchObject({ kind: 'float', blockSize: 1, bytesPerBlock: 2 });
    for (const t of registeredDTypes()) expect(t.layout.length).toBeGreaterThan(10);
    expect(isDType('f32')).toBe(true);
    expect(isDType('f64')).toBe(false);
  });

  it('gives the byte length of every registered type', () => {
    const want: Record<string, number> = {
      f32: 4 * 64 * 96,
      i32: 4 * 64 * 96,
      q8_0: 64 * 96 + 4 * ((64 * 96) / 32), // int8 values, then one f32 scale per group of 32
      f16: 2 * 64 * 96,
      bf16: 2 * 64 * 96,
      q4_0: 18 * ((64 * 96) / 32), // GGUF's blocks of 32: an f16 scale and 16 bytes of nibbles
      test_q4_0: 18 * ((64 * 96) / 32),
      // GGUF's k-quant super-blocks of 256
      q4_k: 144 * ((64 * 96) / 256),
      q5_k: 176 * ((64 * 96) / 256),
      q6_k: 210 * ((64 * 96) / 256),
    };
    for (const t of registeredDTypes()) {
      expect(t.name in want, `a byte length expected for ${t.name}`).toBe(true);
      // 8 x 768 = 64 x 96 elements, in rows that hold whole blocks of 32 and 256
      expect(byteLengthOf(desc(t.name, [8, 768], t.blockSize === 'groupSize' ? 32 : undefined)), t.name).toBe(want[t.name]);
    }
    // llama2.c's q8_0: the group size is the tensor's, not the type's
    expect(byteLengthOf(desc('q8_0', [96, 64], 64))).toBe(64 * 96 + 4 * 96);
    expect(byteLengthOf(desc('f32', [7]))).toBe(28);
  });

  it('refuses a group size that does not divide, groups or blocks that straddle rows, and unknown types', () => {
    expect(() => byteLengthOf(desc('q8_0', [3, 10], 4))).toThrow(ArgumentError);
    expect(() => byteLengthOf(desc('q8_0', [3, 10], 4))).toThrow('layers.0.wq: q8_0 group size 4 does not divide 30 elements');
    expect(() => byteLengthOf(desc('q8_0', [3, 10]))).toThrow(/group size 0/);
    // 12 elements are whole groups of 4, but rows of 6 start mid-group
    expect(() => byteLengthOf(desc('q8_0', [2, 6], 4))).toThrow('layers.0.wq: q8_0 groups of 4 straddle its rows of 6; regroup it to a size that divides 6');
    expect(byteLengthOf(desc('q8_0', [3, 8], 4))).toBe(24 + 6 * 4);
    expect(() => byteLengthOf(desc('test_q4_0', [2, 48]))).toThrow(/last dimension 48 is not a multiple of 32/);
    expect(() => byteLengthOf(desc('q4_0', [3, 40]))).toThrow('layers.0.wq: q4_0 stores blocks of 32 elements; the last dimension 40 is not a multiple of 32');
    expect(() => byteLengthOf(desc('f64' as DType, [2]))).toThrow(/layers\.0\.wq: unknown dtype "f64"; registered: f32, i32, q8_0/);
  });

  it('refuses to register a name again with other traits, or traits that do not fit together', () => {
    expect(registerDType(dtypeTraits('f16'))).toBe(dtypeTraits('f16'));
    expect(() => registerDType({ ...dtypeTraits('f16'), bytesPerBlock: 4 })).toThrow(/already registered/);
    expect(() => registerDType({ name: 'f16', kind: 'float', blockSize: 'groupSize', bytesPerBlock: 2, layout: 'x' })).toThrow(ArgumentError);
    expect(() => registerDType({ name: 'f16', kind: 'float', blockSize: 0, bytesPerBlock: 2, layout: 'x' })).toThrow(/blockSize/);
  });
});

describe('checkSupported', () => {
  const cpuLike = { name: 'test', supports: (d: DType) => d === 'f32' || d === 'i32' || d === 'q8_0' };

  it('passes a supported type', () => {
    expect(() => checkSupported(cpuLike, desc('f32', [4]))).not.toThrow();
  });

  it('refuses a registered but unsupported type with an ArgumentError naming the tensor, the type and the backend', () => {
    for (const dtype of ['f16', 'bf16', 'test_q4_0'] as const) {
      const e = (() => {
        try {
          checkSupported(cpuLike, desc(dtype, [4, 32]), 'upload');
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(ArgumentError);
      expect((e as Error).message).toBe(
        `upload layers.0.wq: the test backend does not support dtype ${dtype} (it supports f32, i32, q8_0); convert the tensor or use another backend`,
      );
    }
  });
});
