import {
  ArgumentError, BackendError, byteLengthOf, colsOf, elementCount, rowsOf,
  type Backend, type BackendOptions, type Step, type Tensor, type TensorDesc, type TensorFill,
} from '@rama/backend';
import { matmulQ80, quantizeActivations, viewQ80 } from '@rama/quant-q80';
import * as k from './kernels/scalar.js';

/** A tensor in host memory: f32/i32 as typed arrays, q8_0 as int8 values + f32 scales. */
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
    else ({ q: this.q, scales: this.scales } = viewQ80(bytes, n, desc.groupSize!));
  }
}

/**
 * The reference CPU backend: plain TypeScript kernels (src/kernels/scalar.ts),
 * one thread. Tensors are typed arrays and every op runs as soon as it is
 * recorded, so `submit` has nothing left to do and `read` is a copy.
 * `CpuBackend.create({ kernels: 'scalar' })` makes one.
 */
export class ScalarCpuBackend implements Backend {
  readonly name = 'cpu';
  readonly description = 'CPU (TypeScript scalar kernels, 1 thread)';
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

  private make(desc: TensorDesc): CpuTensor {
    this.live();
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
    (c.dtype === 'i32' ? c.i32 : c.f32).set(data, offset);
  }

  async read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    const c = this.own(t);
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

  begin(pos: number, rows: number): Step {
    this.live();
    if (!(rows >= 1 && rows <= this.maxRows)) throw new ArgumentError(`step rows ${rows} outside 1..${this.maxRows}`);
    return new CpuStep(this, pos, rows);
  }

  /** Scratch of at least n floats for attention scores. */
  scores(n: number): Float32Array {
    if (this.att.length < n) this.att = new Float32Array(n);
    return this.att;
  }

  /** Scratch for one quantized activation row of n values. */
  quantScratch(n: number, groupSize: number): { xq: Int8Array; xs: Float32Array } {
    if (this.xq.length < n) this.xq = new Int8Array(n);
    if (this.xs.length < n / groupSize) this.xs = new Float32Array(n / groupSize);
    return { xq: this.xq, xs: this.xs };
  }
}

class CpuStep implements Step {
  constructor(private readonly be: ScalarCpuBackend, readonly pos: number, readonly rows: number) {}

  /** Rows an op processes: one for single-row outputs, else the step's rows. */
  private rowsFor(out: Tensor): number {
    return rowsOf(out) === 1 ? 1 : this.rows;
  }

  embed(out: Tensor, table: Tensor, tokens: Tensor): void {
    const o = this.be.own(out), tab = this.be.own(table), tok = this.be.own(tokens);
    const dim = colsOf(tab), vocab = rowsOf(tab);
    for (let r = 0; r < this.rowsFor(out); r++) {
      const id = tok.i32[r];
      if (!(id >= 0 && id < vocab)) throw new ArgumentError(`token id ${id} outside the vocabulary (0..${vocab - 1})`);
      o.f32.set(tab.f32.subarray(id * dim, (id + 1) * dim), r * dim);
    }
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    const o = this.be.own(out), xi = this.be.own(x), w = this.be.own(weight);
    const n = colsOf(xi);
    for (let r = 0; r < this.rowsFor(out); r++) k.rmsnorm(o.f32, r * n, xi.f32, r * n, w.f32, n, eps);
  }

  matmul(out: Tensor, x: Tensor, w: Tensor): void {
    const o = this.be.own(out), xi = this.be.own(x), wt = this.be.own(w);
    const [d, n] = wt.shape;
    for (let r = 0; r < this.rowsFor(out); r++) {
      if (wt.dtype === 'f32') k.matmulF32(o.f32, r * d, xi.f32, r * n, wt.f32, n, d);
      else {
        const gs = wt.groupSize!;
        const { xq, xs } = this.be.quantScratch(n, gs);
        quantizeActivations(xi.f32, r * n, n, gs, xq, xs);
        matmulQ80(o.f32, r * d, xq, xs, wt.q, wt.scales, n, d, gs);
      }
    }
  }

  rope(x: Tensor, headSize: number, theta: number): void {
    const t = this.be.own(x);
    const n = colsOf(t);
    for (let r = 0; r < this.rowsFor(x); r++) k.rope(t.f32, r * n, n, headSize, this.pos + r, theta);
  }

  storeKV(cache: Tensor, layer: number, src: Tensor): void {
    const c = this.be.own(cache), s = this.be.own(src);
    const [, seqLen, kvDim] = c.shape;
    if (this.pos + this.rows > seqLen) throw new ArgumentError(`position ${this.pos + this.rows - 1} past the KV cache (${seqLen})`);
    c.f32.set(s.f32.subarray(0, this.rows * kvDim), (layer * seqLen + this.pos) * kvDim);
  }

  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void {
    const o = this.be.own(out), qi = this.be.own(q), kc = this.be.own(keys), vc = this.be.own(values);
    const [, seqLen, kvDim] = kc.shape;
    const dim = colsOf(qi);
    const att = this.be.scores(seqLen);
    for (let r = 0; r < this.rowsFor(out); r++) {
      k.attention(o.f32, r * dim, qi.f32, r * dim, kc.f32, vc.f32, layer * seqLen * kvDim,
        this.pos + r, dim / headSize, kvDim / headSize, headSize, att);
    }
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    const o = this.be.own(out);
    const n = colsOf(o);
    k.swiglu(o.f32, this.be.own(gate).f32, this.be.own(up).f32, 0, this.rowsFor(out) * n);
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const o = this.be.own(out);
    k.add(o.f32, this.be.own(a).f32, this.be.own(b).f32, 0, this.rowsFor(out) * colsOf(o));
  }

  lastRow(out: Tensor, x: Tensor): void {
    const o = this.be.own(out), xi = this.be.own(x);
    const n = colsOf(xi);
    o.f32.set(xi.f32.subarray((this.rows - 1) * n, this.rows * n));
  }

  argmax(out: Tensor, logits: Tensor): void {
    const o = this.be.own(out), l = this.be.own(logits);
    const n = colsOf(l);
    let best = 0;
    let finite = true;
    for (let i = 0; i < n; i++) {
      finite &&= Number.isFinite(l.f32[i]);
      if (l.f32[i] > l.f32[best]) best = i;
    }
    o.i32[0] = finite ? best : -1;
  }

  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    // ops ran as they were recorded: the tensor already holds the step's result
    return this.be.read(t, count);
  }

  submit(): void {}
}
