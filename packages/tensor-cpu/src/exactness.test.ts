/**
 * The WebAssembly kernels against the scalar reference, bit for bit, for
 * every op except the f32 matmul (which sums in SIMD lanes; the conformance
 * suite bounds it). This is what keeps llama2.c's goldens matching.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { rng } from '@rama/backend-conformance';
import { contiguousRows, f32ToF16, type Backend, type Step, type Tensor, type TensorDesc } from '@rama/backend';
import { quantizeWeights, writeQ80 } from '@rama/quant-q80';
import { CpuBackend } from './index.js';

// 3 threads (an odd split) also where the machine has fewer cores: these tests check results, not speed.
vi.mock('./wasm/runtime.js', async (importOriginal) => {
  const runtime = await importOriginal<typeof import('./wasm/runtime.js')>();
  return { ...runtime, hardwareThreads: async () => Math.max(3, await runtime.hardwareThreads()) };
});

type Data = Float32Array | Int32Array | Uint8Array;
interface Case {
  name: string;
  tensors: Record<string, { desc: TensorDesc; data?: Data }>;
  pos: number;
  rows: number;
  run(s: Step, t: Record<string, Tensor>): void;
  out: string[];
}

function randn(r: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(Math.max(r(), 1e-12))) * Math.cos(2 * Math.PI * r());
  return out;
}

const f32 = (shape: number[], data?: Float32Array) => ({ desc: { label: 't', shape, dtype: 'f32' as const }, data });

function q80(r: () => number, d: number, n: number, gs: number) {
  const w = quantizeWeights(randn(r, d * n, 0.1), gs);
  const bytes = new Uint8Array(d * n + 4 * (d * n / gs));
  writeQ80(bytes, w);
  return { desc: { label: 'w', shape: [d, n], dtype: 'q8_0' as const, groupSize: gs }, data: bytes };
}

function cases(): Case[] {
  const out: Case[] = [];
  let seed = 100;
  for (const [d, n, gs, rows] of [[288, 288, 32, 1], [768, 288, 32, 5], [70, 128, 64, 3], [37, 96, 16, 2], [10, 24, 6, 2], [288, 768, 64, 1], [301, 256, 64, 4]]) {
    const r = rng(seed++);
    const x = randn(r, 5 * n);
    x.fill(0, 0, gs); // an all-zero group
    for (let i = 0; i < 8; i++) x[n + i] = [127, 0.5, -0.5, 1.5, -2.5, 2.5, 2.4999998, -0.49999997][i] * (i === 0 ? 1 : 1);
    out.push({
      name: `matmul q8_0 ${d}x${n} G${gs}, ${rows} rows`,
      tensors: { x: f32([5, n], x), w: q80(r, d, n, gs), out: f32([5, d], randn(r, 5 * d)) },
      pos: 0, rows, run: (s, t) => s.matmul(t.out, t.x, t.w), out: ['out'],
    });
  }
  for (const [nHeads, nKv, hs, pos, rows] of [[6, 6, 48, 0, 1], [6, 6, 48, 150, 4], [8, 2, 8, 37, 3], [12, 12, 64, 200, 1], [4, 2, 6, 9, 2]]) {
    const r = rng(seed++);
    const seq = pos + rows + 3, dim = nHeads * hs, kvDim = nKv * hs;
    out.push({
      name: `attention ${nHeads}/${nKv} heads of ${hs}, pos ${pos}, ${rows} rows`,
      tensors: {
        q: f32([rows, dim], randn(r, rows * dim, 2)),
        k: f32([2, seq, kvDim], randn(r, 2 * seq * kvDim)),
        v: f32([2, seq, kvDim], randn(r, 2 * seq * kvDim)),
        out: f32([rows, dim], randn(r, rows * dim)),
      },
      pos, rows, run: (s, t) => s.attention(t.out, t.q, t.k, t.v, 1, hs), out: ['out'],
    });
  }
  // f16 KV caches: storeKV rounds the step's rows into them (some values at f16's ties, overflow and
  // subnormals), attention widens what they hold.
  for (const [nHeads, nKv, hs, pos, rows] of [[6, 6, 48, 150, 4], [8, 2, 8, 37, 3], [4, 2, 6, 9, 2], [2, 2, 10, 0, 5]]) {
    const r = rng(seed++);
    const seq = pos + rows + 3, dim = nHeads * hs, kvDim = nKv * hs;
    const f16 = (shape: number[]) => {
      const bits = Uint16Array.from(randn(r, shape.reduce((a, b) => a * b, 1)), f32ToF16);
      return { desc: { label: 'kv16', shape, dtype: 'f16' as const }, data: new Uint8Array(bits.buffer) };
    };
    const kNew = randn(r, rows * kvDim, 2), vNew = randn(r, rows * kvDim, 3);
    [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, -70000, 2 ** -25, 3 * 2 ** -25, 1e-40, -0].forEach((x, i) => (vNew[2 * i] = x));
    out.push({
      name: `storeKV and attention, f16 KV cache: ${nHeads}/${nKv} heads of ${hs}, pos ${pos}, ${rows} rows`,
      tensors: {
        q: f32([rows, dim], randn(r, rows * dim, 2)),
        kNew: f32([rows, kvDim], kNew),
        vNew: f32([rows, kvDim], vNew),
        k: f16([2, seq, kvDim]),
        v: f16([2, seq, kvDim]),
        out: f32([rows, dim], randn(r, rows * dim)),
      },
      pos, rows,
      run: (s, t) => {
        s.storeKV(t.k, 1, t.kNew);
        s.storeKV(t.v, 1, t.vNew);
        s.attention(t.out, t.q, t.k, t.v, 1, hs);
      },
      out: ['out'],
    });
  }
  for (const [n, hs, pos, rows] of [[288, 48, 0, 3], [768, 64, 199, 2], [64, 8, 1000, 4]]) {
    const r = rng(seed++);
    out.push({
      name: `rmsnorm, rope, swiglu, add: n ${n}, pos ${pos}, ${rows} rows`,
      tensors: {
        x: f32([rows, n], randn(r, rows * n, 3)),
        w: f32([n], randn(r, n)),
        a: f32([rows, n], randn(r, rows * n, 4)),
        b: f32([rows, n], randn(r, rows * n)),
        o: f32([rows, n], randn(r, rows * n)),
      },
      pos, rows,
      run: (s, t) => {
        s.rmsnorm(t.o, t.x, t.w, 1e-5);
        s.rope(t.o, hs, 10000);
        s.rope(t.x, hs, 500000);
        s.swiglu(t.a, t.a, t.b);
        s.add(t.b, t.b, t.x);
      },
      out: ['o', 'x', 'a', 'b'],
    });
  }
  return out;
}

async function runCase(be: Backend, c: Case): Promise<Record<string, Data>> {
  const t: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(c.tensors)) t[k] = v.data ? await be.upload(v.desc, v.data.slice()) : be.alloc(v.desc);
  const s = be.begin(contiguousRows(c.pos, c.rows));
  c.run(s, t);
  s.submit();
  const res: Record<string, Data> = {};
  for (const k of c.out) res[k] = await be.read(t[k]);
  for (const x of Object.values(t)) be.free(x);
  return res;
}

const bits = (a: Data) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

// threads undefined: the default, which runs each program on every thread or on the caller's alone (its
// first runs of a kind alternate: all, alone, all), so each case runs three times there.
for (const threads of [1, 2, 3, undefined]) {
  describe(`wasm kernels are bit-exact with the scalar ones (threads: ${threads ?? 'default'})`, async () => {
    const ref = await CpuBackend.create({ kernels: 'scalar', maxRows: 8 });
    const be = await CpuBackend.create({ threads, maxRows: 8 });
    afterAll(() => {
      be.dispose();
      ref.dispose();
    });
    for (const c of cases()) {
      it(c.name, async () => {
        const want = await runCase(ref, c);
        for (let run = 0; run < (threads === undefined ? 3 : 1); run++) {
          const got = await runCase(be, c);
          for (const k of c.out) expect(bits(got[k]), k).toEqual(bits(want[k]));
        }
      });
    }
  });
}

// The f32 matmul sums in SIMD lanes (not the scalar order), but every output the same way on any thread.
describe('the f32 matmul gives the same bits on 1, 2 and 3 threads and the default', async () => {
  const backends = await Promise.all([1, 2, 3, undefined].map((threads) => CpuBackend.create({ threads, maxRows: 8 })));
  afterAll(() => backends.forEach((be) => be.dispose()));
  let seed = 300;
  for (const [d, n, rows] of [[768, 288, 1], [301, 256, 4], [4000, 64, 1], [10, 24, 2], [288, 768, 5]]) {
    it(`${d}x${n}, ${rows} rows`, async () => {
      const r = rng(seed++);
      const c: Case = {
        name: '',
        tensors: { x: f32([5, n], randn(r, 5 * n)), w: f32([d, n], randn(r, d * n, 0.1)), out: f32([5, d], randn(r, 5 * d)) },
        pos: 0, rows, run: (s, t) => s.matmul(t.out, t.x, t.w), out: ['out'],
      };
      const results = [];
      for (const be of backends) results.push(bits((await runCase(be, c)).out));
      for (const got of results.slice(1)) expect(got).toEqual(results[0]);
    });
  }
});
