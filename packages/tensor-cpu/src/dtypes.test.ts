import { describe, expect, it } from 'vitest';
import {
  ArgumentError, bf16ToF32, byteLengthOf, contiguousRows, dequantizeQ4_0, dequantizeQ4_K, dequantizeQ5_K, dequantizeQ6_K, f16ToF32,
  registerDType, registeredDTypes, type Backend, type Tensor, type TensorDesc,
} from '@rama/backend';
import { rng } from '@rama/backend-conformance';
import { CpuBackend } from './index.js';

// A type no backend supports, registered the way a package adds one.
declare module '@rama/backend' {
  interface DTypes {
    test_q2: true;
  }
}
registerDType({ name: 'test_q2', kind: 'quantized', blockSize: 16, bytesPerBlock: 6, layout: 'a type for this test only: 2-bit values, an f16 scale' });

/** out = w @ x for `rows` rows on `be`. */
async function matmul(be: Backend, w: TensorDesc, wData: Uint8Array | Float32Array, x: Float32Array, rows: number): Promise<Float32Array> {
  const [d, n] = w.shape;
  const ts: Tensor[] = [];
  try {
    const wt = await be.upload(w, wData);
    ts.push(wt);
    const xt = await be.upload({ label: 'x', shape: [rows, n], dtype: 'f32' }, x);
    ts.push(xt);
    const out = be.alloc({ label: 'out', shape: [rows, d], dtype: 'f32' });
    ts.push(out);
    const s = be.begin(contiguousRows(0, rows));
    s.matmul(out, xt, wt);
    s.submit();
    return (await be.read(out)) as Float32Array;
  } finally {
    for (const t of ts) be.free(t);
  }
}

type KQuant = 'q4_k' | 'q5_k' | 'q6_k';
const K_BYTES = { q4_k: 144, q5_k: 176, q6_k: 210 } as const;

/**
 * Random k-quant weights [d, n]: random quant bits; the scales' bytes from `scaleByte` (Q4_K/Q5_K: the 12 bytes of
 * 6-bit scales and mins; Q6_K: the int8 scales), d (and dmin) the given f16 bits.
 */
function kquantBytes(dtype: KQuant, d: number, n: number, seed: number, dBits: () => number, scaleByte: () => number): Uint8Array {
  const r = rng(seed);
  const size = K_BYTES[dtype];
  const bytes = new Uint8Array((d * n / 256) * size);
  for (let b = 0; b < bytes.length / size; b++) {
    const o = b * size;
    for (let i = 0; i < size; i++) bytes[o + i] = Math.floor(r() * 256);
    if (dtype === 'q6_k') {
      for (let s = 0; s < 16; s++) bytes[o + 192 + s] = scaleByte();
      const h = dBits();
      bytes[o + 208] = h & 255; bytes[o + 209] = h >> 8;
    } else {
      for (let s = 0; s < 12; s++) bytes[o + 4 + s] = scaleByte();
      const h = dBits(), m = dBits();
      bytes[o] = h & 255; bytes[o + 1] = h >> 8; bytes[o + 2] = m & 255; bytes[o + 3] = m >> 8;
    }
  }
  return bytes;
}

const kDequantize = { q4_k: dequantizeQ4_K, q5_k: dequantizeQ5_K, q6_k: dequantizeQ6_K } as const;

function randomX(seed: number, count: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: count }, () => (r() - 0.5) * 4);
}

for (const kernels of ['scalar', 'wasm'] as const) {
  describe(`CPU backend (${kernels}): dtypes`, () => {
    const make = (): Promise<Backend> => CpuBackend.create({ kernels, threads: 1, maxRows: 4 });

    it('supports f32, i32, q8_0, f16, bf16, q4_0, q4_k, q5_k and q6_k', async () => {
      const be = await make();
      try {
        expect(registeredDTypes().filter((t) => be.supports(t.name)).map((t) => t.name)).toEqual(['f32', 'i32', 'q8_0', 'f16', 'bf16', 'q4_0', 'q4_k', 'q5_k', 'q6_k']);
      } finally {
        be.dispose();
      }
    });

    it('refuses an unsupported registered type on upload and alloc, naming the tensor and the type', async () => {
      const be = await make();
      try {
        const desc: TensorDesc = { label: 'layers.0.wq', shape: [4, 32], dtype: 'test_q2' };
        const err = await be.upload(desc, new Uint8Array(byteLengthOf(desc))).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ArgumentError);
        expect((err as Error).message).toBe(
          'layers.0.wq: the cpu backend does not support dtype test_q2 (it supports f32, i32, q8_0, f16, bf16, q4_0, q4_k, q5_k, q6_k); convert the tensor or use another backend',
        );
        expect(() => be.alloc(desc)).toThrow(/layers\.0\.wq: the cpu backend does not support dtype test_q2/);
        // nothing was allocated: a supported tensor still fits and works
        const t = await be.upload({ label: 'x', shape: [2], dtype: 'f32' }, new Float32Array([1, 2]));
        expect(Array.from(await be.read(t))).toEqual([1, 2]);
        // weights of the packed types are not read or written as floats
        const h = await be.upload({ label: 'layers.0.w1', shape: [2, 2], dtype: 'f16' }, new Uint8Array(8));
        await expect(be.read(h)).rejects.toThrow(/layers\.0\.w1: only f32 and i32 tensors can be read, it is f16/);
        expect(() => be.write(h, new Float32Array(4))).toThrow(ArgumentError);
      } finally {
        be.dispose();
      }
    });

    // f16 and bf16 widen exactly: the matmul must give what the f32 matmul gives on the widened matrix, bit for bit
    // (the same sum in the same order), for odd sizes and batches too.
    for (const kind of ['f16', 'bf16'] as const) {
      it(`${kind} weights give exactly the f32 matmul of their widened values`, async () => {
        const be = await make();
        try {
          for (const [d, n, rows, seed] of [[13, 40, 3, 1], [8, 7, 1, 2], [5, 64, 4, 3]] as const) {
            const r = rng(seed);
            const bits = Uint16Array.from({ length: d * n }, () => Math.floor(r() * 65536) & (kind === 'f16' ? 0xfbff : 0xbfff)); // finite values
            if (seed === 3) {
              // normal numbers only (exponents 1..30): every block of 16 takes the WASM kernel's fast f16 path
              for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7c00) === 0) bits[i] |= 0x0400;
            } else {
              bits[0] = 0x0001; // a subnormal
              bits[1] = 0x8000; // -0
            }
            if (seed === 2) {
              // infinities and NaN widen to themselves: rows 1..3 of the 8x7 matrix sum to +-inf or NaN
              const special = kind === 'f16' ? [0x7c00, 0xfc00, 0x7e01] : [0x7f80, 0xff80, 0x7fc1];
              special.forEach((b, i) => (bits[(i + 1) * n + 2] = b));
            }
            const widened = Float32Array.from(bits, (b) => (kind === 'f16' ? f16ToF32(b) : bf16ToF32(b)));
            const x = randomX(seed + 10, rows * n);
            const got = await matmul(be, { label: 'w', shape: [d, n], dtype: kind }, new Uint8Array(bits.buffer), x, rows);
            const want = await matmul(be, { label: 'w', shape: [d, n], dtype: 'f32' }, widened, x, rows);
            expect(Array.from(got), `${d}x${n}, ${rows} rows`).toEqual(Array.from(want));
            if (seed === 2) expect([got[1], got[2]]).toEqual([Math.sign(x[2]) * Infinity, -Math.sign(x[2]) * Infinity]);
          }
        } finally {
          be.dispose();
        }
      });
    }

    // Q4_0's values are d * (nibble - 8): as q8_0 in groups of 32 (scale d, int8 nibble - 8) they are the same
    // weights, and both quantize x to q8_0 in groups of 32, so the results must be identical.
    it('q4_0 weights give exactly the q8_0 matmul of the same weights in groups of 32', async () => {
      const be = await make();
      try {
        for (const [d, n, rows, seed] of [[9, 96, 3, 4], [4, 32, 1, 5], [16, 256, 4, 6]] as const) {
          const r = rng(seed);
          const bytes = new Uint8Array((d * n / 32) * 18);
          for (let b = 0; b < d * n / 32; b++) {
            const scale = ((3 + Math.floor(r() * 10)) << 10) | Math.floor(r() * 1024);
            bytes[18 * b] = scale & 0xff;
            bytes[18 * b + 1] = scale >> 8;
            for (let j = 2; j < 18; j++) bytes[18 * b + j] = Math.floor(r() * 256);
          }
          const values = dequantizeQ4_0(bytes, d * n);
          const q8 = new Uint8Array(d * n + 4 * (d * n / 32));
          const q = new Int8Array(q8.buffer, 0, d * n);
          const scales = new Float32Array(d * n / 32);
          for (let b = 0; b < scales.length; b++) {
            scales[b] = f16ToF32(bytes[18 * b] | (bytes[18 * b + 1] << 8));
            for (let j = 0; j < 32; j++) q[32 * b + j] = Math.round(values[32 * b + j] / scales[b]);
          }
          q8.set(new Uint8Array(scales.buffer), d * n);
          const x = randomX(seed + 20, rows * n);
          const got = await matmul(be, { label: 'w', shape: [d, n], dtype: 'q4_0' }, bytes, x, rows);
          const want = await matmul(be, { label: 'w', shape: [d, n], dtype: 'q8_0', groupSize: 32 }, q8, x, rows);
          expect(Array.from(got), `${d}x${n}, ${rows} rows`).toEqual(Array.from(want));
        }
      } finally {
        be.dispose();
      }
    });

    // The k-quants: with integer activations whose every group of 256 has max |x| = 127 (so x quantizes to itself,
    // scale 1), power-of-two d and dmin and small scales, every step of the spec's f32 arithmetic is exact, so the
    // result must be the exact dot product of the dequantized weights with x. Other weights and activations: within
    // the bound that x's quantization (half a step per element) and f32 rounding allow.
    for (const dtype of ['q4_k', 'q5_k', 'q6_k'] as const) {
      it(`${dtype} weights: exact where the arithmetic is exact, else within x's quantization error`, async () => {
        const be = await make();
        try {
          for (const [d, n, rows, seed] of [[5, 1024, 3, 1], [7, 256, 2, 2], [3, 512, 1, 3]] as const) {
            const r = rng(seed + 40);
            // d = 2^-2 (0x3400), dmin = 2^-3 (0x3000); scales 0..7 (Q6_K: -8..7)
            const bytes = kquantBytes(dtype, d, n, seed, () => (r() < 0.5 ? 0x3400 : 0x3000), () => Math.floor(r() * 256) & (dtype === 'q6_k' ? 0x0f : 0x07) );
            if (dtype === 'q6_k') for (let i = 192; i < bytes.length; i += 210) for (let s = 0; s < 16; s++) bytes[i + s] = ((bytes[i + s] << 28) >> 28) & 255;
            const x = Float32Array.from({ length: rows * n }, () => Math.floor(r() * 255) - 127);
            for (let g = 0; g < rows * n; g += 256) x[g + Math.floor(r() * 256)] = r() < 0.5 ? 127 : -127;
            const w = kDequantize[dtype](bytes, d * n);
            const got = await matmul(be, { label: 'w', shape: [d, n], dtype }, bytes, x, rows);
            for (let i = 0; i < rows * d; i++) {
              const row = Math.floor(i / d), j = i % d;
              let want = 0;
              for (let k = 0; k < n; k++) want += w[j * n + k] * x[row * n + k];
              expect(got[i], `${d}x${n}, output ${i}`).toBe(want);
            }
          }
          for (const [d, n, rows, seed] of [[9, 768, 4, 4], [4, 256, 1, 5]] as const) {
            const r = rng(seed + 50);
            // d, dmin: f16 exponents 2^-10..2^-4; any scale bytes
            const bytes = kquantBytes(dtype, d, n, seed, () => ((5 + Math.floor(r() * 7)) << 10) | Math.floor(r() * 1024), () => Math.floor(r() * 256));
            const x = randomX(seed + 60, rows * n);
            const w = kDequantize[dtype](bytes, d * n);
            const got = await matmul(be, { label: 'w', shape: [d, n], dtype }, bytes, x, rows);
            for (let i = 0; i < rows * d; i++) {
              const row = Math.floor(i / d), j = i % d;
              let want = 0, bound = 0;
              for (let b = 0; b < n / 256; b++) {
                let amax = 0;
                for (let k = 256 * b; k < 256 * b + 256; k++) amax = Math.max(amax, Math.abs(x[row * n + k]));
                for (let k = 256 * b; k < 256 * b + 256; k++) {
                  const wk = w[j * n + k], xk = x[row * n + k];
                  want += wk * xk;
                  bound += Math.abs(wk) * (amax / 127 / 2) * 1.001 + 1e-5 * Math.abs(wk * xk);
                }
              }
              expect(Math.abs(got[i] - want), `${d}x${n}, output ${i}`).toBeLessThanOrEqual(bound);
            }
          }
        } finally {
          be.dispose();
        }
      });
    }
  });
}

// The k-quant numerics fix every f32 step (the integer sums are exact in any order), so the WebAssembly kernels
// must give the scalar reference's bits: batches of 1 to 7 rows (fours, pairs and single rows), odd output counts,
// two threads, an all-zero activation group, the largest scales and mins, negative and subnormal d.
describe('CPU backend: k-quant matmuls, WebAssembly against the scalar reference', () => {
  for (const dtype of ['q4_k', 'q5_k', 'q6_k'] as const) {
    it(`${dtype}: bit for bit`, async () => {
      const wasm = await CpuBackend.create({ kernels: 'wasm', threads: 2, maxRows: 8 });
      const ref = await CpuBackend.create({ kernels: 'scalar', maxRows: 8 });
      try {
        for (const [d, n, rows, seed] of [[37, 768, 5, 7], [64, 256, 2, 8], [3, 1280, 1, 9], [130, 512, 3, 10], [21, 512, 4, 11], [11, 768, 7, 12]] as const) {
          const r = rng(seed + 70);
          const dBits = (): number => {
            const u = r();
            if (u < 0.05) return 0x8000 | 0x0123; // a negative subnormal
            return (u < 0.1 ? 0x8000 : 0) | ((4 + Math.floor(r() * 9)) << 10) | Math.floor(r() * 1024);
          };
          const bytes = kquantBytes(dtype, d, n, seed, dBits, () => (r() < 0.1 ? 0xff : Math.floor(r() * 256)));
          const x = randomX(seed + 80, rows * n);
          x.fill(0, 256, 512 < x.length ? 512 : 256);
          const desc: TensorDesc = { label: 'w', shape: [d, n], dtype };
          const got = await matmul(wasm, desc, bytes, x, rows);
          const want = await matmul(ref, desc, bytes, x, rows);
          expect(Array.from(got), `${d}x${n}, ${rows} rows`).toEqual(Array.from(want));
        }
      } finally {
        wasm.dispose();
        ref.dispose();
      }
    });
  }
});
