/**
 * The conformance cases: small random inputs for every op, each output with
 * the per-element error bound a backend must meet against the reference.
 *
 * Bounds on |got - want| per element (eps = 2^-23):
 * - embed, storeKV, gather, add, argmax: exact (copies, one correctly
 *   rounded add, an index with the lowest index winning a tie).
 * - rmsnorm, swiglu: 1e-5 * |want| + 1e-6 (sqrt and exp may be a few ulp off on GPUs).
 * - rope: 1e-5 * (|x0| + |x1|) + 1e-6 (sin and cos within a few ulp).
 * - matmul f32: 4 * sqrt(n) * eps * sum_k |w_jk x_k|: the same sum in another
 *   order, with or without fused multiply-adds.
 * - matmul q8_0: 4 * sqrt(n / G) * eps * sum_k |w_jk x_k|: the quantized x and
 *   every int32 group sum must be exact; only the f32 accumulation over
 *   groups may round differently (one quantization step off would exceed it).
 * - matmul f16, bf16: as f32, with w_jk the weight's exact f32 value: the
 *   widening is exact, so only the order of the f32 sum may differ.
 * - matmul q4_0: as q8_0 with G = 32 (x quantized to q8_0 in the weight's
 *   blocks of 32, int32 block sums exact), w_jk = (nibble - 8) * d.
 * - matmul q4_k, q5_k, q6_k: as q8_0 with G = 256 (x quantized to q8_0 in
 *   the super-blocks of 256, the int32 sums exact), with |w_jk| taken as
 *   |d sc q| + |dmin m| (q6_k: |d sc q|): the f32 steps per super-block
 *   (f32(isum) * d - f32(msum) * dmin, times xs) round terms that can be much
 *   larger than the weight's value. (The numerics fix those steps, so the
 *   CPU kernels give the reference's bits; the bound leaves a GPU room.)
 * - attention: 2e-5 * max_t |v_t| (per head and column) + 1e-6: another
 *   softmax algorithm (e.g. online, flash-attention style) rounds differently.
 * - storeKV and attention with an f16 KV cache: each value rounded to the
 *   nearest f16 (ties to even, past 65504 infinity) and widened exactly, so
 *   within each backend the result must equal, bit for bit, that of an f32
 *   cache holding the f16-rounded values (`same`); against the reference,
 *   the f32 bounds.
 * Rows past a step's `rows`, and everything an op does not write, must keep
 * their contents exactly: every output is compared in full.
 *
 * Sizes are small (SwiftShader runs them on a CPU) but several tensors are
 * larger than 64 KiB, so a backend that splits buffers at a forced 64 KiB
 * binding limit is exercised across its splits (a row-split weight, a logits
 * row split into segments, a KV cache layer spanning two buffers).
 */
import {
  bf16ToF32, dequantizeQ4_0, dequantizeQ4_K, dequantizeQ5_K, dequantizeQ6_K, f16ToF32, f32ToF16, kD, kDmin, kMin, kquantInts, kScale, q6_kD, q6_kScale,
  type Step, type StepRows, type Tensor, type TensorDesc,
} from '@rama/backend';

export type HostData = Float32Array | Int32Array | Uint8Array;

/** A tensor a case makes on both backends. */
export interface CaseTensor {
  /** Its shape, type and label. */
  desc: TensorDesc;
  /** Initial contents (standard layout), or undefined to alloc (zero-filled). */
  data?: HostData;
}

/** Allowed |got - want| for element i of an output. */
export type Bound = (i: number, want: number) => number;

/** One step of a case: `rows` consecutive positions from `pos` in slot 0, or an explicit `layout`. */
export type CaseStep = ({ pos: number; rows: number } | { layout: StepRows }) & { run: (s: Step, t: Record<string, Tensor>) => void };

/** One op (or pipeline of ops) checked against the reference backend. */
export interface ConformanceCase {
  /** The op it checks, e.g. "matmul q8_0" (the test name's first part). */
  op: string;
  /** What this case varies: shapes, rows, positions. */
  name: string;
  /** The tensors it makes, by name. */
  tensors: Record<string, CaseTensor>;
  /** The steps it records and submits, in order. */
  steps: CaseStep[];
  /** Outputs compared after the last step, each with its bound. */
  outputs: Record<string, Bound>;
  /**
   * Pairs of outputs that must be equal, element for element, within each
   * backend (the reference's too): e.g. attention over an f16 KV cache and
   * over an f32 cache holding the same f16-rounded values.
   */
  same?: [string, string][];
}

const EPS = 2 ** -23;
const exact: Bound = () => 0;
const rel = (r: number, a: number): Bound => (_i, want) => r * Math.abs(want) + a;

/** mulberry32: a small deterministic generator. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randn(r: () => number, n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(r(), 1e-12);
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

const f32 = (label: string, shape: number[], data?: Float32Array): CaseTensor => ({ desc: { label, shape, dtype: 'f32' }, data });
/** The keys and values of one KV cache: read together by attention, so kept in one memory. */
const kvCache = (label: string, shape: number[], data?: Float32Array): CaseTensor =>
  ({ desc: { label, shape, dtype: 'f32', colocate: { group: 'kv', bytes: 2 * 4 * size(shape) } }, data });
const i32 = (label: string, shape: number[], data?: Int32Array): CaseTensor => ({ desc: { label, shape, dtype: 'i32' }, data });
const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** A random q8_0 weight [d, n]: int8 values and positive scales, plus its dequantized values. */
function q80(r: () => number, label: string, d: number, n: number, gs: number): { t: CaseTensor; deq: Float32Array } {
  const q = new Int8Array(d * n);
  for (let i = 0; i < q.length; i++) q[i] = Math.floor(r() * 255) - 127;
  const s = new Float32Array((d * n) / gs);
  for (let i = 0; i < s.length; i++) s[i] = 0.002 + 0.01 * r();
  const bytes = new Uint8Array(d * n + 4 * s.length);
  bytes.set(new Uint8Array(q.buffer), 0);
  bytes.set(new Uint8Array(s.buffer), d * n);
  const deq = new Float32Array(d * n);
  for (let i = 0; i < deq.length; i++) deq[i] = q[i] * s[Math.floor(i / gs)];
  return { t: { desc: { label, shape: [d, n], dtype: 'q8_0', groupSize: gs }, data: bytes }, deq };
}

/** Bound for out [R, d] = w [d, n] @ x [R, n]; `groups` = n for f32, n / G for q8_0. Rows >= rows are exact. */
function matmulBound(w: Float32Array, x: Float32Array, d: number, n: number, rows: number, groups: number): Bound {
  const b = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += Math.abs(w[j * n + k] * x[r * n + k]);
      b[r * d + j] = 4 * Math.sqrt(groups) * EPS * s + 1e-30;
    }
  }
  return (i) => (i < b.length ? b[i] : 0);
}

function embedCases(): ConformanceCase[] {
  const make = (name: string, vocab: number, dim: number, outRows: number, rows: number, seed: number): ConformanceCase => {
    const r = rng(seed);
    const tokens = new Int32Array(8);
    for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(r() * vocab);
    tokens[0] = vocab - 1;
    return {
      op: 'embed',
      name,
      tensors: {
        table: f32('table', [vocab, dim], randn(r, vocab * dim)),
        tokens: i32('tokens', [8], tokens),
        out: f32('out', [outRows, dim], randn(r, outRows * dim)),
      },
      steps: [{ pos: 0, rows, run: (s, t) => s.embed(t.out, t.table, t.tokens) }],
      outputs: { out: exact },
    };
  };
  return [
    make('5 rows of a 600x32 table (76.8 KB)', 600, 32, 6, 5, 1),
    make('single-row output', 100, 24, 1, 1, 2),
  ];
}

/**
 * embed from a packed table: each looked-up row must be, bit for bit, the
 * row's values as @rama/backend's decoders (elements.ts) give them, i.e. what
 * converting the table to f32 at load gives. The case embeds the same tokens
 * from the packed table and from that f32 table and asks for equal outputs
 * (`same`), on the reference too; against the reference, exact.
 */
function embedPackedCases(): ConformanceCase[] {
  const mk = (name: string, seed: number, vocab: number, dim: number, outRows: number, rows: number,
    table: (r: () => number) => { t: CaseTensor; values: Float32Array }): ConformanceCase => {
    const r = rng(seed);
    const { t, values } = table(r);
    const tokens = new Int32Array(8);
    for (let i = 0; i < tokens.length; i++) tokens[i] = Math.floor(r() * vocab);
    tokens[0] = vocab - 1; // the last row (q8_0: past the blocks of four when vocab is not a multiple of 4)
    tokens[1] = 0;
    const init = randn(r, outRows * dim);
    return {
      op: `embed ${t.desc.dtype}`,
      name,
      tensors: {
        table: t,
        tableF32: f32('tableF32', [vocab, dim], values),
        tokens: i32('tokens', [8], tokens),
        out: f32('out', [outRows, dim], init),
        outF32: f32('outF32', [outRows, dim], init),
      },
      steps: [{ pos: 0, rows, run: (s, x) => (s.embed(x.out, x.table, x.tokens), s.embed(x.outF32, x.tableF32, x.tokens)) }],
      outputs: { out: exact, outF32: exact },
      same: [['out', 'outF32']],
    };
  };
  const kq = (dtype: KQuant, vocab: number, dim: number) => (r: () => number) => {
    const { t } = kquant(r, dtype, 'table', vocab, dim);
    const decode = { q4_k: dequantizeQ4_K, q5_k: dequantizeQ5_K, q6_k: dequantizeQ6_K }[dtype];
    return { t, values: decode(t.data as Uint8Array, vocab * dim) };
  };
  const q8 = (vocab: number, dim: number, gs: number) => (r: () => number) => {
    const { t, deq } = q80(r, 'table', vocab, dim, gs);
    return { t, values: deq };
  };
  return [
    mk('5 rows of a 300x40 table', 31, 300, 40, 6, 5, (r) => half(r, 'f16', 'table', 300, 40)),
    mk('3 rows of a 50x24 table', 32, 50, 24, 4, 3, (r) => half(r, 'bf16', 'table', 50, 24)),
    mk('5 rows of a 700x64 table (78.75 KB)', 33, 700, 64, 6, 5, (r) => q40(r, 'table', 700, 64)),
    mk('4 rows of a 30x512 table (2 super-blocks a row)', 34, 30, 512, 5, 4, kq('q4_k', 30, 512)),
    mk('4 rows of a 30x512 table (2 super-blocks a row)', 35, 30, 512, 5, 4, kq('q5_k', 30, 512)),
    mk('4 rows of a 30x512 table (2 super-blocks a row)', 36, 30, 512, 5, 4, kq('q6_k', 30, 512)),
    mk('single-row output, 3x256', 37, 3, 256, 1, 1, kq('q4_k', 3, 256)),
    mk('G 32, 5 rows of a 302x64 table (rows past the last four)', 38, 302, 64, 6, 5, q8(302, 64, 32)),
    mk('G 6 (not a multiple of 4), 4 rows of 10x24', 39, 10, 24, 4, 4, q8(10, 24, 6)),
  ];
}

function rmsnormCases(): ConformanceCase[] {
  const make = (name: string, n: number, outRows: number, rows: number, inPlace: boolean, seed: number): ConformanceCase => {
    const r = rng(seed);
    const tensors: Record<string, CaseTensor> = {
      x: f32('x', [outRows, n], randn(r, outRows * n, 2)),
      w: f32('w', [n], randn(r, n)),
    };
    if (!inPlace) tensors.out = f32('out', [outRows, n], randn(r, outRows * n));
    return {
      op: 'rmsnorm',
      name,
      tensors,
      steps: [{ pos: 3, rows, run: (s, t) => s.rmsnorm(inPlace ? t.x : t.out, t.x, t.w, 1e-5) }],
      outputs: { [inPlace ? 'x' : 'out']: rel(1e-5, 1e-6) },
    };
  };
  return [
    make('4 of 6 rows, n 48', 48, 6, 4, false, 3),
    make('in place (out = x), 3 rows, n 1000', 1000, 4, 3, true, 4),
    make('single-row output', 64, 1, 1, false, 5),
  ];
}

function matmulCases(): ConformanceCase[] {
  const mk = (name: string, d: number, n: number, xRows: number, outRows: number, rows: number, seed: number, gs?: number): ConformanceCase => {
    const r = rng(seed);
    const x = randn(r, xRows * n);
    let wt: CaseTensor;
    let wv: Float32Array;
    if (gs) ({ t: wt, deq: wv } = q80(r, 'w', d, n, gs));
    else {
      wv = randn(r, d * n, 0.1);
      wt = f32('w', [d, n], wv);
    }
    const active = outRows === 1 ? 1 : rows;
    return {
      op: gs ? 'matmul q8_0' : 'matmul f32',
      name,
      tensors: { x: f32('x', [xRows, n], x), w: wt, out: f32('out', [outRows, d], randn(r, outRows * d)) },
      steps: [{ pos: 0, rows, run: (s, t) => s.matmul(t.out, t.x, t.w) }],
      outputs: { out: matmulBound(wv, x, d, n, active, gs ? n / gs : n) },
    };
  };
  return [
    mk('300x64 weight (76.8 KB), 5 of 6 rows', 300, 64, 6, 6, 5, 6),
    mk('37x19 (odd sizes), 3 rows', 37, 19, 4, 4, 3, 7),
    mk('single-row output, 17000 outputs (68 KB row)', 17000, 8, 1, 1, 1, 8),
    mk('single-row output, 50 outputs', 50, 16, 1, 1, 1, 9),
  ];
}

function matmulQ8Cases(): ConformanceCase[] {
  const mk = (name: string, d: number, n: number, gs: number, outRows: number, rows: number, seed: number): ConformanceCase => {
    const r = rng(seed);
    const x = randn(r, outRows * n);
    if (seed % 2) x.fill(0, 0, gs); // an all-zero group: scale 0
    x[gs + 1] = -x[gs + 2]; // a tie for the group maximum magnitude
    if (n >= 3 * gs) {
      // Exact halves: max 127 gives scale 1 and max 63.5 scale 0.5, so x / scale
      // lands on k + 0.5 and must round half away from zero (not to even).
      const halves = [127, 0.5, -0.5, 1.5, -2.5, 2.5, 126.5, -125.5, 2.4999998, -0.49999997];
      const quarters = [63.5, 0.25, -0.75, 1.25, -31.75, 0.24999999];
      for (let i = 0; i < Math.min(gs, halves.length); i++) x[gs * 2 + i] = halves[i];
      for (let i = 0; i < Math.min(gs, quarters.length); i++) x[x.length - gs + i] = quarters[i];
    }
    const { t: wt, deq } = q80(r, 'w', d, n, gs);
    const active = outRows === 1 ? 1 : rows;
    return {
      op: 'matmul q8_0',
      name,
      tensors: { x: f32('x', [outRows, n], x), w: wt, out: f32('out', [outRows, d], randn(r, outRows * d)) },
      steps: [{ pos: 0, rows, run: (s, t) => s.matmul(t.out, t.x, t.w) }],
      outputs: { out: matmulBound(deq, x, d, n, active, n / gs) },
    };
  };
  return [
    mk('G 32, 200x128, 4 rows', 200, 128, 32, 5, 4, 11),
    mk('G 64, 300x256 (81.6 KB), 3 of 4 rows', 300, 256, 64, 4, 3, 12),
    mk('G 64, single-row output', 70, 128, 64, 1, 1, 13),
    mk('G 6 (not a multiple of 4), 10x24, 2 rows', 10, 24, 6, 3, 2, 15),
  ];
}

/**
 * A random f16 or bf16 weight [d, n] as bits, plus its values. Exponents span
 * a few octaves around 0.1 (bf16: the same range); some elements are zeros,
 * -0 and subnormals, which the widening must get right too.
 */
function half(r: () => number, kind: 'f16' | 'bf16', label: string, d: number, n: number): { t: CaseTensor; values: Float32Array } {
  const bits = new Uint16Array(d * n);
  for (let i = 0; i < bits.length; i++) {
    const sign = r() < 0.5 ? 0x8000 : 0;
    if (kind === 'f16') bits[i] = sign | ((9 + Math.floor(r() * 7)) << 10) | Math.floor(r() * 1024);
    else bits[i] = sign | ((120 + Math.floor(r() * 7)) << 7) | Math.floor(r() * 128);
  }
  const specials = kind === 'f16' ? [0x0000, 0x8000, 0x0001, 0x83ff, 0x0200, 0x7bff] : [0x0000, 0x8000, 0x0001, 0x807f, 0x0040, 0x4100];
  for (let i = 0; i < specials.length && 3 * i + 1 < bits.length; i++) bits[3 * i + 1] = specials[i];
  const values = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) values[i] = kind === 'f16' ? f16ToF32(bits[i]) : bf16ToF32(bits[i]);
  return { t: { desc: { label, shape: [d, n], dtype: kind }, data: new Uint8Array(bits.buffer) }, values };
}

/** A random GGUF Q4_0 weight [d, n]: random nibbles, positive f16 scales from about 1/1000 to 1/30; plus its values. */
function q40(r: () => number, label: string, d: number, n: number): { t: CaseTensor; values: Float32Array } {
  const blocks = (d * n) / 32;
  const bytes = new Uint8Array(blocks * 18);
  for (let b = 0; b < blocks; b++) {
    const scale = ((5 + Math.floor(r() * 5)) << 10) | Math.floor(r() * 1024);
    bytes[b * 18] = scale & 0xff;
    bytes[b * 18 + 1] = scale >> 8;
    for (let j = 2; j < 18; j++) bytes[b * 18 + j] = Math.floor(r() * 256);
  }
  return { t: { desc: { label, shape: [d, n], dtype: 'q4_0' }, data: bytes }, values: dequantizeQ4_0(bytes, d * n) };
}

type KQuant = 'q4_k' | 'q5_k' | 'q6_k';

/**
 * A random GGUF k-quant weight [d, n]: random quants, scales and mins (Q6_K: int8 scales), positive f16 d and
 * dmin from about 1/1000 to 1/30 (Q6_K's d a tenth of that); plus, per element, the magnitude of the terms its
 * value is computed from (|d sc q| + |dmin m|), for the bound.
 */
function kquant(r: () => number, dtype: KQuant, label: string, d: number, n: number): { t: CaseTensor; magnitudes: Float32Array } {
  const size = { q4_k: 144, q5_k: 176, q6_k: 210 }[dtype];
  const blocks = (d * n) / 256;
  const bytes = new Uint8Array(blocks * size);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
  const f16 = (shift: number): number => ((5 + Math.floor(r() * 5) - shift) << 10) | Math.floor(r() * 1024);
  const magnitudes = new Float32Array(d * n);
  const q = new Int32Array(256);
  for (let b = 0; b < blocks; b++) {
    const at = b * size;
    if (dtype === 'q6_k') {
      const h = f16(3);
      bytes[at + 208] = h & 0xff;
      bytes[at + 209] = h >> 8;
    } else {
      const h = f16(0), m = f16(0);
      bytes[at] = h & 0xff;
      bytes[at + 1] = h >> 8;
      bytes[at + 2] = m & 0xff;
      bytes[at + 3] = m >> 8;
    }
    kquantInts(dtype, bytes, at, q);
    for (let i = 0; i < 256; i++) {
      magnitudes[256 * b + i] = dtype === 'q6_k'
        ? Math.abs(q6_kD(bytes, at) * q6_kScale(bytes, at, i >> 4) * q[i])
        : Math.abs(kD(bytes, at) * kScale(bytes, at, i >> 5) * q[i]) + Math.abs(kDmin(bytes, at) * kMin(bytes, at, i >> 5));
    }
  }
  return { t: { desc: { label, shape: [d, n], dtype }, data: bytes }, magnitudes };
}

function matmulKQuantCases(): ConformanceCase[] {
  const mk = (dtype: KQuant, name: string, d: number, n: number, outRows: number, rows: number, seed: number): ConformanceCase => {
    const r = rng(seed);
    const x = randn(r, outRows * n);
    // the activation corner cases of the q8_0 cases: an all-zero super-block (scale 0), a tie for the maximum
    if (seed % 2 && outRows > 1) x.fill(0, n, n + 256);
    x[3] = -x[4];
    const { t: wt, magnitudes } = kquant(r, dtype, 'w', d, n);
    const active = outRows === 1 ? 1 : rows;
    return {
      op: `matmul ${dtype}`,
      name,
      tensors: { x: f32('x', [outRows, n], x), w: wt, out: f32('out', [outRows, d], randn(r, outRows * d)) },
      steps: [{ pos: 0, rows, run: (s, t) => s.matmul(t.out, t.x, t.w) }],
      outputs: { out: matmulBound(magnitudes, x, d, n, active, n / 256) },
    };
  };
  const cases: ConformanceCase[] = [];
  (['q4_k', 'q5_k', 'q6_k'] as const).forEach((dtype, k) => {
    const seed = 111 + 10 * k;
    cases.push(
      mk(dtype, '480x256 (over 64 KiB), 5 of 6 rows', 480, 256, 6, 5, seed),
      mk(dtype, '33x1024 (4 blocks a row, odd output count), 3 of 4 rows', 33, 1024, 4, 3, seed + 1),
      mk(dtype, '2 rows of 64x768 (3 blocks a row)', 64, 768, 2, 2, seed + 2),
      mk(dtype, '1 of 3 rows, 17x512', 17, 512, 3, 1, seed + 3),
      mk(dtype, 'single-row output, 70x256', 70, 256, 1, 1, seed + 4),
    );
  });
  return cases;
}

function matmulPackedCases(): ConformanceCase[] {
  const mk = (dtype: 'f16' | 'bf16' | 'q4_0', name: string, d: number, n: number, outRows: number, rows: number, seed: number): ConformanceCase => {
    const r = rng(seed);
    const x = randn(r, outRows * n);
    if (dtype === 'q4_0') {
      // the activation corner cases of the q8_0 cases: an all-zero block (scale 0), a tie for the maximum
      if (seed % 2) x.fill(0, 0, 32);
      if (n >= 64) x[33] = -x[34];
    }
    const { t: wt, values } = dtype === 'q4_0' ? q40(r, 'w', d, n) : half(r, dtype, 'w', d, n);
    const active = outRows === 1 ? 1 : rows;
    return {
      op: `matmul ${dtype}`,
      name,
      tensors: { x: f32('x', [outRows, n], x), w: wt, out: f32('out', [outRows, d], randn(r, outRows * d)) },
      steps: [{ pos: 0, rows, run: (s, t) => s.matmul(t.out, t.x, t.w) }],
      outputs: { out: matmulBound(values, x, d, n, active, dtype === 'q4_0' ? n / 32 : n) },
    };
  };
  return [
    mk('f16', '600x64 (76.8 KB, over two 64 KiB bindings), 5 of 6 rows', 600, 64, 6, 5, 91),
    mk('f16', '37x19 (odd sizes: rows start mid-word), 3 rows', 37, 19, 4, 3, 92),
    mk('f16', '6 rows of 20x72', 20, 72, 6, 6, 93),
    mk('f16', 'single-row output, 50x16', 50, 16, 1, 1, 94),
    mk('bf16', '300x128 (76.8 KB), 4 of 5 rows', 300, 128, 5, 4, 95),
    mk('bf16', '21x13 (odd sizes), 2 rows', 21, 13, 3, 2, 96),
    mk('bf16', 'single-row output, 40x24', 40, 24, 1, 1, 97),
    mk('q4_0', '2000x64 (72 KB, over two 64 KiB bindings), 5 of 6 rows', 2000, 64, 6, 5, 101),
    mk('q4_0', '10x96 (3 blocks a row), 3 rows', 10, 96, 4, 3, 102),
    mk('q4_0', '6 rows of 33x160 (odd output count)', 33, 160, 6, 6, 103),
    mk('q4_0', 'single-row output, 70x256', 70, 256, 1, 1, 104),
  ];
}

function ropeCases(): ConformanceCase[] {
  const mk = (name: string, n: number, hs: number, theta: number, pos: number, outRows: number, rows: number, seed: number, factors?: Float32Array): ConformanceCase => {
    const r = rng(seed);
    const x = randn(r, outRows * n);
    return {
      op: 'rope',
      name,
      tensors: { x: f32('x', [outRows, n], x) },
      steps: [{ pos, rows, run: (s, t) => s.rope(t.x, hs, theta, factors) }],
      outputs: { x: (i) => 1e-5 * (Math.abs(x[i]) + Math.abs(x[i ^ 1])) + 1e-6 },
    };
  };
  return [
    mk('head 16, pos 0, 5 rows', 64, 16, 10000, 0, 6, 5, 21),
    mk('head 8, pos 300, 2 rows', 32, 8, 10000, 300, 3, 2, 22),
    mk('head 32, theta 500000, pos 1000, 3 rows', 96, 32, 500000, 1000, 4, 3, 23),
    // Llama 3.1's rope scaling: each pair's frequency divided by its own factor (1 for high frequencies, up to 8 for low)
    mk('head 16, frequency factors 1..8, pos 700, 3 rows', 48, 16, 500000, 700, 4, 3, 24, Float32Array.from({ length: 8 }, (_, i) => 1 + i)),
  ];
}

function storeKVCases(): ConformanceCase[] {
  const mk = (name: string, layers: number, seq: number, kvDim: number, layer: number, pos: number, srcRows: number, rows: number, seed: number): ConformanceCase => {
    const r = rng(seed);
    return {
      op: 'storeKV',
      name,
      tensors: {
        cache: f32('cache', [layers, seq, kvDim], randn(r, layers * seq * kvDim)),
        src: f32('src', [srcRows, kvDim], randn(r, srcRows * kvDim)),
      },
      steps: [{ pos, rows, run: (s, t) => s.storeKV(t.cache, layer, t.src) }],
      outputs: { cache: exact },
    };
  };
  return [
    mk('layer 1, pos 3, 4 rows', 2, 40, 32, 1, 3, 4, 4, 31),
    mk('across a 64 KiB split (layer 0, pos 254, 3 rows)', 2, 300, 64, 0, 254, 4, 3, 32),
    mk('single row at the last position', 3, 16, 8, 2, 15, 1, 1, 33),
  ];
}

function attentionCases(): ConformanceCase[] {
  const mk = (
    name: string, layers: number, seq: number, nHeads: number, nKv: number, hs: number,
    layer: number, pos: number, qRows: number, rows: number, seed: number,
  ): ConformanceCase => {
    const r = rng(seed);
    const kvDim = nKv * hs;
    const dim = nHeads * hs;
    const keys = randn(r, layers * seq * kvDim);
    const values = randn(r, layers * seq * kvDim);
    const vmax = new Float64Array(dim);
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / (nHeads / nKv));
      for (let t = 0; t < seq; t++) {
        for (let d = 0; d < hs; d++) {
          vmax[h * hs + d] = Math.max(vmax[h * hs + d], Math.abs(values[(layer * seq + t) * kvDim + kvh * hs + d]));
        }
      }
    }
    return {
      op: 'attention',
      name,
      tensors: {
        q: f32('q', [qRows, dim], randn(r, qRows * dim, 2)),
        keys: kvCache('keys', [layers, seq, kvDim], keys),
        values: kvCache('values', [layers, seq, kvDim], values),
        out: f32('out', [qRows, dim], randn(r, qRows * dim)),
      },
      steps: [{ pos, rows, run: (s, t) => s.attention(t.out, t.q, t.keys, t.values, layer, hs) }],
      outputs: { out: (i) => 2e-5 * vmax[i % dim] + 1e-6 },
    };
  };
  return [
    mk('MHA, pos 0, 1 row', 2, 20, 4, 4, 16, 0, 0, 2, 1, 41),
    mk('GQA 8 heads / 2 KV heads, layer 1, pos 5, 4 rows', 2, 20, 8, 2, 8, 1, 5, 5, 4, 42),
    mk('GQA 8/4, head 16, layer 1 of a 82 KB cache, pos 150, 3 rows', 2, 160, 8, 4, 16, 1, 150, 4, 3, 43),
    mk('head 48 (not a multiple of 32), 2 heads / 1 KV head, pos 40, 2 rows', 1, 64, 2, 1, 48, 0, 40, 2, 2, 44),
    mk('single-row output', 1, 32, 4, 2, 8, 0, 20, 1, 1, 45),
  ];
}

/** An f16 KV cache (keys or values), colocated with its partner: `values` are rounded to f16 (the initial contents). */
function kvCacheF16(label: string, shape: number[], values?: Float32Array): CaseTensor {
  const desc: TensorDesc = { label, shape, dtype: 'f16', colocate: { group: 'kv16', bytes: 2 * 2 * size(shape) } };
  return { desc, data: values && new Uint8Array(Uint16Array.from(values, f32ToF16).buffer) };
}

/** `x` rounded to f16 and widened back: what an f16 KV cache holds for it. */
const roundF16 = (x: Float32Array): Float32Array => Float32Array.from(x, (v) => f16ToF32(f32ToF16(v)));

function kvF16Cases(): ConformanceCase[] {
  // storeKV's rounding, seen through attention at position 0 (one position: its softmax weight is
  // exactly 1, so each output row is its value row as the cache holds it): values at and around
  // f16's ties, its overflow threshold, its subnormals, signed zeros, infinities, NaN, f32 subnormals.
  const r1 = rng(91);
  const hs = 10; // not a multiple of 4: the kernels' tails too
  const kvDim = 2 * hs;
  const slots = 6;
  const special = [
    1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11), 2048 + 1, 2048 + 3, 1 + 2 ** -11 + 2 ** -23, 1 + 2 ** -11 - 2 ** -23,
    65504, 65519, 65520, -65520, 65536, 1e9, -1e30, Infinity, -Infinity, NaN,
    2 ** -14, 2 ** -14 - 2 ** -25, 2 ** -24, 2 ** -25, -(2 ** -25), 3 * 2 ** -25, 5 * 2 ** -25, 2 ** -26, 1.5 * 2 ** -24,
    0, -0, 1e-40, -1e-45, 6.1e-5, 0.1, -0.3333333, 3.14159265,
  ];
  const src = randn(r1, slots * kvDim, 3);
  special.forEach((v, i) => (src[3 * i] = v));
  const c1: ConformanceCase = {
    op: 'storeKV f16',
    name: `rounding of ${special.length} edge values (ties, overflow, subnormals, inf, NaN) and random ones, read back by attention at position 0`,
    tensors: {
      src: f32('src', [slots, kvDim], src),
      keys: kvCacheF16('keys', [1, slots, 4, kvDim]),
      values: kvCacheF16('values', [1, slots, 4, kvDim]),
      q: f32('q', [slots, kvDim], randn(r1, slots * kvDim)),
      out: f32('out', [slots, kvDim]),
      rounded: f32('rounded', [slots, kvDim], roundF16(src)),
    },
    steps: [{
      layout: { positions: new Array<number>(slots).fill(0), slots: Array.from({ length: slots }, (_, i) => i) },
      // keys stay zero: every score is 0 and its weight 1, whatever the values
      run: (s, t) => {
        s.storeKV(t.values, 0, t.src);
        s.attention(t.out, t.q, t.keys, t.values, 0, hs);
      },
    }],
    outputs: { out: exact, rounded: exact },
    same: [['out', 'rounded']],
  };

  // storeKV and attention over f16 caches beside f32 caches given the same values rounded to f16:
  // a prompt's rows (one run), then rows of three sequences in one step.
  const mk = (name: string, layers: number, nSlots: number, seq: number, nHeads: number, nKv: number, headSize: number,
    prompt: number, layout: StepRows, seed: number, sameSplits = true): ConformanceCase => {
    const r = rng(seed);
    const kd = nKv * headSize, qd = nHeads * headSize;
    const shape = [layers, nSlots, seq, kd];
    const rows = layout.positions.length;
    const k0 = randn(r, size(shape)), v0 = randn(r, size(shape));
    const kp = randn(r, prompt * kd), vp = randn(r, prompt * kd, 4);
    const k = randn(r, rows * kd, 2), v = randn(r, rows * kd);
    const layer = layers - 1;
    return {
      op: 'attention f16 KV',
      name,
      tensors: {
        qp: f32('qp', [prompt, qd], randn(r, prompt * qd)),
        q: f32('q', [rows, qd], randn(r, rows * qd)),
        kp: f32('kp', [prompt, kd], kp), vp: f32('vp', [prompt, kd], vp),
        k: f32('k', [rows, kd], k), v: f32('v', [rows, kd], v),
        kpRounded: f32('kp_rounded', [prompt, kd], roundF16(kp)), vpRounded: f32('vp_rounded', [prompt, kd], roundF16(vp)),
        kRounded: f32('k_rounded', [rows, kd], roundF16(k)), vRounded: f32('v_rounded', [rows, kd], roundF16(v)),
        keys16: kvCacheF16('keys16', shape, k0), values16: kvCacheF16('values16', shape, v0),
        keys32: kvCache('keys32', shape, roundF16(k0)), values32: kvCache('values32', shape, roundF16(v0)),
        outP16: f32('out_p16', [prompt, qd]), outP32: f32('out_p32', [prompt, qd]),
        out16: f32('out16', [rows, qd]), out32: f32('out32', [rows, qd]),
      },
      steps: [
        {
          pos: 0,
          rows: prompt,
          run: (s, t) => {
            s.storeKV(t.keys16, layer, t.kp);
            s.storeKV(t.values16, layer, t.vp);
            s.attention(t.outP16, t.qp, t.keys16, t.values16, layer, headSize);
            s.storeKV(t.keys32, layer, t.kpRounded);
            s.storeKV(t.values32, layer, t.vpRounded);
            s.attention(t.outP32, t.qp, t.keys32, t.values32, layer, headSize);
          },
        },
        {
          layout,
          run: (s, t) => {
            s.storeKV(t.keys16, layer, t.k);
            s.storeKV(t.values16, layer, t.v);
            s.attention(t.out16, t.q, t.keys16, t.values16, layer, headSize);
            s.storeKV(t.keys32, layer, t.kRounded);
            s.storeKV(t.values32, layer, t.vRounded);
            s.attention(t.out32, t.q, t.keys32, t.values32, layer, headSize);
          },
        },
      ],
      outputs: { outP16: rel(1e-4, 1e-5), outP32: rel(1e-4, 1e-5), out16: rel(1e-4, 1e-5), out32: rel(1e-4, 1e-5) },
      same: sameSplits ? [['outP16', 'outP32'], ['out16', 'out32']] : [['outP16', 'outP32']],
    };
  };
  return [
    c1,
    mk('GQA 4/2, head 8, [2, 3, 12, 16] caches: 5 prompt rows, then 3 sequences in one step', 2, 3, 12, 4, 2, 8, 5,
      { positions: [4, 6, 7, 5], slots: [2, 0, 0, 0] }, 92),
    // A backend that splits buffers at a binding limit splits the f16 cache and its f32 twin at other
    // rows, and a sum over positions may group differently at a split: the second step's outputs are
    // compared with the reference only.
    mk('head 12, [2, 2, 300, 48] caches (at 64 KiB bindings, layer 1 of the f16 cache straddles its two buffers): 6 prompt rows, then positions 290 and 299', 2, 2, 300, 4, 4, 12, 6,
      { positions: [290, 299], slots: [1, 0] }, 93, false),
  ];
}

function elementwiseCases(): ConformanceCase[] {
  const mk = (op: 'add' | 'swiglu', name: string, shape: number[], rows: number, alias: '' | 'a' | 'b', seed: number): ConformanceCase => {
    const r = rng(seed);
    const n = size(shape);
    const tensors: Record<string, CaseTensor> = {
      a: f32('a', shape, randn(r, n, 3)),
      b: f32('b', shape, randn(r, n)),
    };
    if (!alias) tensors.out = f32('out', shape, randn(r, n));
    const outName = alias || 'out';
    return {
      op,
      name,
      tensors,
      steps: [{ pos: 0, rows, run: (s, t) => s[op](t[outName], t.a, t.b) }],
      outputs: { [outName]: op === 'add' ? exact : rel(1e-5, 1e-6) },
    };
  };
  return [
    mk('add', '3 of 6 rows', [6, 40], 3, '', 51),
    mk('add', 'in place (out = a)', [4, 40], 4, 'a', 52),
    mk('add', 'in place (out = b)', [4, 40], 2, 'b', 53),
    mk('add', 'single 17000-wide row (68 KB)', [1, 17000], 1, '', 54),
    mk('swiglu', '4 of 6 rows', [6, 100], 4, '', 55),
    mk('swiglu', 'in place (out = gate)', [3, 100], 3, 'a', 56),
    mk('swiglu', 'single-row output', [1, 64], 1, '', 57),
  ];
}

function gatherCases(): ConformanceCase[] {
  const mk = (name: string, xRows: number, n: number, rows: number, which: number[], seed: number): ConformanceCase => {
    const r = rng(seed);
    return {
      op: 'gather',
      name,
      tensors: { x: f32('x', [xRows, n], randn(r, xRows * n)), out: f32('out', [which.length, n], randn(r, which.length * n)) },
      steps: [{ pos: 0, rows, run: (s, t) => s.gather(t.out, t.x, which) }],
      outputs: { out: exact },
    };
  };
  return [
    mk('the last of 4 of 6 rows', 6, 40, 4, [3], 61),
    mk('row 2 of 3, 17000 wide (68 KB rows)', 3, 17000, 3, [2], 62),
    mk('1 row', 4, 16, 1, [0], 63),
    mk('rows 4, 0, 2 of 5 (out of order)', 5, 24, 5, [4, 0, 2], 64),
  ];
}

function argmaxCases(): ConformanceCase[] {
  const mk = (name: string, rowsT: number, n: number, rows: number, ties: number[], seed: number): ConformanceCase => {
    const r = rng(seed);
    const logits = randn(r, rowsT * n);
    for (const i of ties) logits[i] = 100;
    if (rowsT > 1) logits[n + 1] = 1000; // row 1's own maximum
    return {
      op: 'argmax',
      name,
      tensors: { logits: f32('logits', [rowsT, n], logits), out: i32('out', [rowsT], new Int32Array(rowsT).fill(-5)) },
      steps: [{ pos: 0, rows, run: (s, t) => s.argmax(t.out, t.logits) }],
      outputs: { out: exact },
    };
  };
  const cases = [
    mk('1000 logits', 1, 1000, 1, [], 71),
    mk('a tie: the lowest index wins', 1, 1000, 1, [700, 300, 999], 72),
    mk('20000 logits (80 KB), tie across a 64 KiB split', 1, 20000, 1, [19990, 16390], 73),
    mk('each row of a batch', 3, 50, 3, [], 74),
  ];
  const nonFinite = (name: string, n: number, at: number, value: number, seed: number): ConformanceCase => {
    const logits = randn(rng(seed), n);
    logits[at] = value;
    return {
      op: 'argmax',
      name,
      tensors: { logits: f32('logits', [1, n], logits), out: i32('out', [1], new Int32Array([-5])) },
      steps: [{ pos: 0, rows: 1, run: (s, t) => s.argmax(t.out, t.logits) }],
      // exact, and the reference itself must say -1 (a negative bound fails any element)
      outputs: { out: (_i, want) => (want === -1 ? 0 : -1) },
    };
  };
  return [
    ...cases,
    nonFinite('a NaN gives -1', 1000, 500, NaN, 75),
    nonFinite('a NaN first gives -1', 1000, 0, NaN, 76),
    nonFinite('+Infinity gives -1', 1000, 999, Infinity, 77),
    nonFinite('-Infinity gives -1', 1000, 3, -Infinity, 78),
    nonFinite('a NaN past a 64 KiB split gives -1', 20000, 19000, NaN, 79),
  ];
}

/** Steps of several ops: the classifier path after a gather; rows of several sequences in one step. */
function pipelineCases(): ConformanceCase[] {
  const r = rng(81);
  const dim = 32;
  const vocab = 500;
  const x = randn(r, 4 * dim);
  const wcls = randn(r, vocab * dim, 0.2);
  const c1: ConformanceCase = {
    op: 'pipeline',
    name: 'gather (last row) -> rmsnorm -> matmul -> argmax in one step',
    tensors: {
      x: f32('x', [4, dim], x),
      xLast: f32('xLast', [1, dim]),
      xFinal: f32('xFinal', [1, dim]),
      norm: f32('norm', [dim], randn(r, dim)),
      cls: f32('cls', [vocab, dim], wcls),
      logits: f32('logits', [1, vocab]),
      token: i32('token', [1]),
    },
    steps: [
      {
        pos: 7,
        rows: 4,
        run: (s, t) => {
          s.gather(t.xLast, t.x, [3]);
          s.rmsnorm(t.xFinal, t.xLast, t.norm, 1e-5);
          s.matmul(t.logits, t.xFinal, t.cls);
          s.argmax(t.token, t.logits);
        },
      },
    ],
    outputs: { xLast: exact, xFinal: rel(1e-5, 1e-6), logits: rel(1e-4, 1e-5), token: exact },
  };
  // Two steps submitted back to back: each must see its own pos and rows.
  const r2 = rng(82);
  const hs = 8;
  const kv = 16;
  const c2: ConformanceCase = {
    op: 'pipeline',
    name: 'two steps (pos 0 x 3 rows, then pos 3 x 1 row): storeKV, rope, attention',
    tensors: {
      q: f32('q', [3, 32], randn(r2, 96)),
      k: f32('k', [3, kv], randn(r2, 48)),
      k2: f32('k2', [3, kv], randn(r2, 48)),
      keys: kvCache('keys', [1, 8, kv], randn(r2, 8 * kv)),
      values: kvCache('values', [1, 8, kv], randn(r2, 8 * kv)),
      out: f32('out', [3, 32]),
      out2: f32('out2', [3, 32]),
    },
    steps: [
      {
        pos: 0,
        rows: 3,
        run: (s, t) => {
          s.rope(t.k, hs, 10000);
          s.storeKV(t.keys, 0, t.k);
          s.storeKV(t.values, 0, t.k);
          s.attention(t.out, t.q, t.keys, t.values, 0, hs);
        },
      },
      {
        pos: 3,
        rows: 1,
        run: (s, t) => {
          s.rope(t.k2, hs, 10000);
          s.storeKV(t.keys, 0, t.k2);
          s.attention(t.out2, t.q, t.keys, t.values, 0, hs);
        },
      },
    ],
    outputs: { keys: rel(1e-5, 1e-5), out: rel(1e-4, 1e-5), out2: rel(1e-4, 1e-5) },
  };
  // The classifier for two sequences at once: gather their last rows, then one row each.
  const r3 = rng(83);
  const c3: ConformanceCase = {
    op: 'pipeline',
    name: 'gather 2 of 5 rows -> rmsnorm -> matmul -> argmax per row',
    tensors: {
      x: f32('x', [5, dim], randn(r3, 5 * dim)),
      xLast: f32('xLast', [2, dim]),
      xFinal: f32('xFinal', [2, dim]),
      norm: f32('norm', [dim], randn(r3, dim)),
      cls: f32('cls', [vocab, dim], randn(r3, vocab * dim, 0.2)),
      logits: f32('logits', [2, vocab]),
      token: i32('token', [5], new Int32Array(5).fill(-5)),
    },
    steps: [
      {
        layout: { positions: [3, 0, 1, 2, 9], slots: [1, 0, 0, 0, 2] },
        run: (s, t) => {
          s.gather(t.xLast, t.x, [3, 4]);
          s.rmsnorm(t.xFinal, t.xLast, t.norm, 1e-5);
          s.matmul(t.logits, t.xFinal, t.cls);
          s.argmax(t.token, t.logits);
        },
      },
    ],
    outputs: { xLast: exact, xFinal: rel(1e-5, 1e-6), logits: rel(1e-4, 1e-5), token: exact },
  };
  // Rows of three sequences in one step (a prompt's rows beside two decoding rows):
  // each row is rotated by its own position and reads and writes only its own slot.
  const r4 = rng(84);
  const slots = 3, seq = 12, layers = 2, nHeads = 4, nKv = 2;
  const kvDim = nKv * hs;
  const qDim = nHeads * hs;
  const c4: ConformanceCase = {
    op: 'pipeline',
    name: '3 sequences in one step: rope, storeKV, attention on a [2, 3, 12, 16] cache',
    tensors: {
      q: f32('q', [4, qDim], randn(r4, 4 * qDim)),
      k: f32('k', [4, kvDim], randn(r4, 4 * kvDim)),
      v: f32('v', [4, kvDim], randn(r4, 4 * kvDim)),
      keys: kvCache('keys', [layers, slots, seq, kvDim], randn(r4, layers * slots * seq * kvDim)),
      values: kvCache('values', [layers, slots, seq, kvDim], randn(r4, layers * slots * seq * kvDim)),
      out: f32('out', [4, qDim]),
    },
    steps: [
      {
        layout: { positions: [4, 6, 7, 0], slots: [2, 0, 0, 1] },
        run: (s, t) => {
          s.rope(t.q, hs, 10000);
          s.rope(t.k, hs, 10000);
          s.storeKV(t.keys, 1, t.k);
          s.storeKV(t.values, 1, t.v);
          s.attention(t.out, t.q, t.keys, t.values, 1, hs);
        },
      },
    ],
    outputs: { q: rel(1e-5, 1e-6), keys: rel(1e-5, 1e-6), values: exact, out: rel(1e-4, 1e-5) },
  };
  return [c1, c2, c3, c4];
}

/** Every case, deterministic (seeded): what describeBackendConformance runs. */
export function conformanceCases(): ConformanceCase[] {
  return [
    ...embedCases(),
    ...embedPackedCases(),
    ...rmsnormCases(),
    ...matmulCases(),
    ...matmulQ8Cases(),
    ...matmulPackedCases(),
    ...matmulKQuantCases(),
    ...ropeCases(),
    ...storeKVCases(),
    ...attentionCases(),
    ...kvF16Cases(),
    ...elementwiseCases(),
    ...gatherCases(),
    ...argmaxCases(),
    ...pipelineCases(),
  ];
}
