import {
  ArgumentError, BackendError, byteLengthOf, checkGatherRows, checkRowsInCache, checkSupported, checkStepRows, colsOf, elementCount, kvOffset, rowsOf, RowFlow,
  type Backend, type BackendOptions, type CheckedRows, type DType, type Step, type StepRows, type Tensor, type TensorDesc, type TensorFill,
} from '@rama/backend';
import { bf16ToF32, f16Table, f32ToF16, q4_0Scale } from '@rama/backend';
import { matmulQ80, quantizeActivations, viewQ80 } from '@rama/quant-q80';
import * as k from './kernels/scalar.js';

/**
 * A tensor in host memory: f32/i32 as typed arrays, q8_0 as int8 values + f32 scales, f16/bf16 as their bits,
 * q4_0 as its blocks (with its scales widened), q4_k/q5_k/q6_k as their blocks.
 */
class CpuTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: Tensor['dtype'];
  readonly label: string;
  readonly groupSize?: number;
  readonly byteLength: number;
  f32: Float32Array = new Float32Array(0);
  i32: Int32Array = new Int32Array(0);
  q: Int8Array = new Int8Array(0);
  scales: Float32Array = new Float32Array(0);
  /** f16, bf16: the 16-bit elements. */
  u16: Uint16Array = new Uint16Array(0);
  freed = false;

  constructor(desc: TensorDesc, readonly bytes: Uint8Array) {
    this.shape = [...desc.shape];
    this.dtype = desc.dtype;
    this.label = desc.label;
    this.groupSize = desc.groupSize;
    this.byteLength = bytes.byteLength;
    const n = elementCount(desc.shape);
    if (desc.dtype === 'f32') this.f32 = new Float32Array(bytes.buffer, bytes.byteOffset, n);
    else if (desc.dtype === 'i32') this.i32 = new Int32Array(bytes.buffer, bytes.byteOffset, n);
    else if (desc.dtype === 'f16' || desc.dtype === 'bf16') this.u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, n);
    else if (desc.dtype === 'q8_0') ({ q: this.q, scales: this.scales } = viewQ80(bytes, n, desc.groupSize!));
  }

  /** q4_0: each block's f16 scale as f32, read from the bytes (after upload fills them). */
  q4Scales(): Float32Array {
    if (this.scales.length === 0) {
      const blocks = elementCount(this.shape) / 32;
      this.scales = new Float32Array(blocks);
      for (let b = 0; b < blocks; b++) this.scales[b] = q4_0Scale(this.bytes, b * 18);
    }
    return this.scales;
  }
}

const F16 = f16Table();
const f16Value = (bits: number): number => F16[bits];

/** A KV cache must be f32 or f16 (keys and values stored as the nearest f16: half the memory). */
function checkKVCache(c: CpuTensor, what: string): void {
  if (c.dtype !== 'f32' && c.dtype !== 'f16') throw new ArgumentError(`${what}: ${c.label} must be an f32 or f16 KV cache, is ${c.dtype}`);
}

/** `n` f16 elements from `off`, widened exactly to f32. */
function widenF16(bits: Uint16Array, off: number, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = F16[bits[off + i]];
  return out;
}

/**
 * The reference CPU backend: plain TypeScript kernels (src/kernels/scalar.ts),
 * one thread. Tensors are typed arrays and every op runs as soon as it is
 * recorded, so `submit` has nothing left to do and `read` is a copy.
 * `CpuBackend.create({ kernels: 'scalar' })` makes one. What each op
 * computes, and why, is told beside its kernel; the long form is docs/guide/.
 */
export class ScalarCpuBackend implements Backend {
  readonly name = 'cpu';
  readonly description = 'CPU (TypeScript scalar kernels, 1 thread)';
  /** Always 1: the reference kernels run on the caller's thread. */
  readonly threads = 1;
  readonly maxRows: number;
  private readonly tensors = new Set<CpuTensor>();
  private disposed = false;
  /** Scratch reused by every op: attention scores and quantized activations. */
  private att = new Float32Array(0);
  private xq = new Int8Array(0);
  private xs = new Float32Array(0);

  constructor(opts: BackendOptions = {}) {
    this.maxRows = opts.maxRows ?? 64;
  }

  private live(): void {
    if (this.disposed) throw new BackendError('the CPU backend was disposed');
  }

  /** f32, i32, llama2.c's q8_0, f16, bf16 and GGUF's q4_0, q4_k, q5_k, q6_k: the types these kernels handle (see Backend.supports). */
  supports(dtype: DType): boolean {
    return ['f32', 'i32', 'q8_0', 'f16', 'bf16', 'q4_0', 'q4_k', 'q5_k', 'q6_k'].includes(dtype);
  }

  private make(desc: TensorDesc): CpuTensor {
    this.live();
    checkSupported(this, desc);
    const bytes = new Uint8Array(byteLengthOf(desc));
    const t = new CpuTensor(desc, bytes);
    this.tensors.add(t);
    return t;
  }

  async upload(desc: TensorDesc, data: ArrayBufferView | TensorFill): Promise<Tensor> {
    const t = this.make(desc);
    if (typeof data === 'function') await data(t.bytes);
    else {
      if (data.byteLength !== t.byteLength) {
        throw new ArgumentError(`upload ${desc.label}: ${data.byteLength} bytes given, ${t.byteLength} expected`);
      }
      t.bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    return t;
  }

  alloc(desc: TensorDesc): Tensor {
    return this.make(desc);
  }

  write(t: Tensor, data: Float32Array | Int32Array, offset = 0): void {
    const c = this.own(t);
    if (c.dtype !== 'f32' && c.dtype !== 'i32') throw new ArgumentError(`write ${c.label}: only f32 and i32 tensors can be written, it is ${c.dtype}`);
    (c.dtype === 'i32' ? c.i32 : c.f32).set(data, offset);
  }

  async read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    const c = this.own(t);
    if (c.dtype !== 'f32' && c.dtype !== 'i32') throw new ArgumentError(`read ${c.label}: only f32 and i32 tensors can be read, it is ${c.dtype}`);
    const src = c.dtype === 'i32' ? c.i32 : c.f32;
    return src.slice(0, count ?? src.length);
  }

  free(t: Tensor): void {
    const c = this.own(t);
    c.freed = true;
    this.tensors.delete(c);
  }

  dispose(): void {
    for (const t of this.tensors) t.freed = true;
    this.tensors.clear();
    this.disposed = true;
  }

  /** Checks that a handle is one of ours and still alive. */
  own(t: Tensor): CpuTensor {
    if (!(t instanceof CpuTensor) || !this.tensors.has(t)) {
      throw new ArgumentError(`tensor ${t.label} does not belong to this CPU backend or was freed`);
    }
    return t;
  }

  begin(rows: StepRows): Step {
    this.live();
    return new CpuStep(this, checkStepRows(rows, this.maxRows));
  }

  /** Scratch of at least n floats for attention scores. */
  scores(n: number): Float32Array {
    if (this.att.length < n) this.att = new Float32Array(n);
    return this.att;
  }

  /** Scratch for one quantized activation row of n values. */
  quantScratch(n: number, groupSize: number): {
    /** The int8 values. */
    xq: Int8Array;
    /** One scale per group. */
    xs: Float32Array;
  } {
    if (this.xq.length < n) this.xq = new Int8Array(n);
    if (this.xs.length < n / groupSize) this.xs = new Float32Array(n / groupSize);
    return { xq: this.xq, xs: this.xs };
  }
}

class CpuStep implements Step {
  readonly rows: number;
  readonly positions: readonly number[];
  readonly slots: readonly number[];
  private readonly rowFlow: RowFlow<CpuTensor>;

  constructor(private readonly be: ScalarCpuBackend, private readonly layout: CheckedRows) {
    this.rows = layout.positions.length;
    this.positions = layout.positions;
    this.slots = layout.slots;
    this.rowFlow = new RowFlow(this.rows);
  }

  embed(out: Tensor, table: Tensor, tokens: Tensor): void {
    const o = this.be.own(out), tab = this.be.own(table), tok = this.be.own(tokens);
    if (!['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'].includes(tab.dtype)) {
      throw new ArgumentError(`embed: ${tab.label} must be f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k, is ${tab.dtype}`);
    }
    const dim = colsOf(tab), vocab = rowsOf(tab);
    this.rowFlow.set(o, this.rows, 'embed');
    for (let r = 0; r < this.rows; r++) {
      const id = tok.i32[r];
      if (!(id >= 0 && id < vocab)) throw new ArgumentError(`token id ${id} outside the vocabulary (0..${vocab - 1})`);
      if (tab.dtype === 'f32') o.f32.set(tab.f32.subarray(id * dim, (id + 1) * dim), r * dim);
      else k.embedPackedRow(tab.dtype, tab.bytes, id, dim, o.f32, r * dim, tab.groupSize);
    }
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    const o = this.be.own(out), xi = this.be.own(x), w = this.be.own(weight);
    const n = colsOf(xi);
    const rows = this.rowFlow.flow(o, xi, 'rmsnorm');
    for (let r = 0; r < rows; r++) k.rmsnorm(o.f32, r * n, xi.f32, r * n, w.f32, n, eps);
  }

  matmul(out: Tensor, x: Tensor, w: Tensor): void {
    const o = this.be.own(out), xi = this.be.own(x), wt = this.be.own(w);
    const [d, n] = wt.shape;
    const rows = this.rowFlow.flow(o, xi, 'matmul');
    if (!['f32', 'q8_0', 'f16', 'bf16', 'q4_0', 'q4_k', 'q5_k', 'q6_k'].includes(wt.dtype)) {
      throw new ArgumentError(`matmul: ${wt.label} must be f32, q8_0, f16, bf16, q4_0, q4_k, q5_k or q6_k, is ${wt.dtype}`);
    }
    for (let r = 0; r < rows; r++) {
      if (wt.dtype === 'f32') k.matmulF32(o.f32, r * d, xi.f32, r * n, wt.f32, n, d);
      else if (wt.dtype === 'f16') k.matmulHalf(o.f32, r * d, xi.f32, r * n, wt.u16, f16Value, n, d);
      else if (wt.dtype === 'bf16') k.matmulHalf(o.f32, r * d, xi.f32, r * n, wt.u16, bf16ToF32, n, d);
      else if (wt.dtype === 'q4_0') {
        // x in q8_0 with the weight's blocks of 32 (runq.c's quantize: f32 scales)
        const { xq, xs } = this.be.quantScratch(n, 32);
        quantizeActivations(xi.f32, r * n, n, 32, xq, xs);
        k.matmulQ40(o.f32, r * d, xq, xs, wt.bytes, wt.q4Scales(), n, d);
      } else if (wt.dtype === 'q4_k' || wt.dtype === 'q5_k' || wt.dtype === 'q6_k') {
        // x in q8_0 with one scale per super-block of 256 (llama.cpp's Q8_K idea, runq.c's quantize)
        const { xq, xs } = this.be.quantScratch(n, 256);
        quantizeActivations(xi.f32, r * n, n, 256, xq, xs);
        if (wt.dtype === 'q6_k') k.matmulQ6K(o.f32, r * d, xq, xs, wt.bytes, n, d);
        else k.matmulQ4K(o.f32, r * d, xq, xs, wt.bytes, n, d, wt.dtype === 'q5_k');
      } else {
        const gs = wt.groupSize!;
        const { xq, xs } = this.be.quantScratch(n, gs);
        quantizeActivations(xi.f32, r * n, n, gs, xq, xs);
        matmulQ80(o.f32, r * d, xq, xs, wt.q, wt.scales, n, d, gs);
      }
    }
  }

  rope(x: Tensor, headSize: number, theta: number, freqFactors?: Float32Array): void {
    const t = this.be.own(x);
    const n = colsOf(t);
    if (freqFactors && freqFactors.length * 2 !== headSize) throw new ArgumentError(`rope: ${freqFactors.length} frequency factors for a head of ${headSize}`);
    const rows = this.rowFlow.flow(t, t, 'rope');
    for (let r = 0; r < rows; r++) k.rope(t.f32, r * n, n, headSize, this.positions[r], theta, freqFactors);
  }

  storeKV(cache: Tensor, layer: number, src: Tensor): void {
    const c = this.be.own(cache), s = this.be.own(src);
    checkKVCache(c, 'storeKV');
    const g = checkRowsInCache(c, layer, this.layout, 'storeKV');
    for (let r = 0; r < this.rows; r++) {
      const at = kvOffset(g, layer, this.slots[r]) + this.positions[r] * g.kvDim;
      if (c.dtype === 'f16') {
        // An f16 cache: each value rounded to the nearest f16, ties to even (half the memory).
        for (let i = 0; i < g.kvDim; i++) c.u16[at + i] = f32ToF16(s.f32[r * g.kvDim + i]);
      } else c.f32.set(s.f32.subarray(r * g.kvDim, (r + 1) * g.kvDim), at);
    }
  }

  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void {
    const o = this.be.own(out), qi = this.be.own(q), kc = this.be.own(keys), vc = this.be.own(values);
    checkKVCache(kc, 'attention');
    if (vc.dtype !== kc.dtype) throw new ArgumentError(`attention: ${kc.label} is ${kc.dtype} but ${vc.label} is ${vc.dtype}`);
    const g = checkRowsInCache(kc, layer, this.layout, 'attention');
    const dim = colsOf(qi);
    const att = this.be.scores(g.seqLen);
    const rows = this.rowFlow.flow(o, qi, 'attention');
    for (let r = 0; r < rows; r++) {
      const off = kvOffset(g, layer, this.slots[r]), last = this.positions[r];
      if (kc.dtype === 'f16') {
        // The row's positions 0..last widened exactly to f32, then the f32 kernel: by construction
        // the result of an f32 cache holding the same (f16-rounded) values.
        const n = (last + 1) * g.kvDim;
        k.attention(o.f32, r * dim, qi.f32, r * dim, widenF16(kc.u16, off, n), widenF16(vc.u16, off, n), 0,
          last, dim / headSize, g.kvDim / headSize, headSize, att);
      } else {
        k.attention(o.f32, r * dim, qi.f32, r * dim, kc.f32, vc.f32, off, last, dim / headSize, g.kvDim / headSize, headSize, att);
      }
    }
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    const o = this.be.own(out), gi = this.be.own(gate);
    const n = colsOf(o);
    k.swiglu(o.f32, gi.f32, this.be.own(up).f32, 0, this.rowFlow.flow(o, gi, 'swiglu') * n);
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const o = this.be.own(out), ai = this.be.own(a);
    k.add(o.f32, ai.f32, this.be.own(b).f32, 0, this.rowFlow.flow(o, ai, 'add') * colsOf(o));
  }

  gather(out: Tensor, x: Tensor, rows: ArrayLike<number>): void {
    const o = this.be.own(out), xi = this.be.own(x);
    const n = colsOf(xi);
    const which = checkGatherRows(rows, this.rowFlow.of(xi), rowsOf(o), o.label);
    // Through a copy: out may alias x.
    const picked = which.map((r) => xi.f32.slice(r * n, (r + 1) * n));
    picked.forEach((row, i) => o.f32.set(row, i * n));
    this.rowFlow.set(o, which.length, 'gather');
  }

  argmax(out: Tensor, logits: Tensor): void {
    const o = this.be.own(out), l = this.be.own(logits);
    const n = colsOf(l);
    const rows = this.rowFlow.of(l);
    if (o.i32.length < rows) throw new ArgumentError(`argmax: ${o.label} holds ${o.i32.length} ids, the step has ${rows} rows of logits`);
    for (let r = 0; r < rows; r++) {
      const row = l.f32.subarray(r * n, (r + 1) * n);
      let best = 0;
      let finite = true;
      for (let i = 0; i < n; i++) {
        finite &&= Number.isFinite(row[i]);
        if (row[i] > row[best]) best = i;
      }
      o.i32[r] = finite ? best : -1;
    }
  }

  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    // ops ran as they were recorded: the tensor already holds the step's result
    return this.be.read(t, count);
  }

  submit(): void {}
}
