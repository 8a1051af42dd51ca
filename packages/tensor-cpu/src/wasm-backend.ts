/**
 * The CPU backend at native speed: tensors live in one WebAssembly memory,
 * kernels are WebAssembly SIMD (assembly/kernels.ts), and a Step runs on every
 * core. Ops are recorded into a program; `submit` runs it on all threads at
 * once, so `read` and `write` find every submitted step finished.
 */
import {
  ArgumentError, BackendError, byteLengthOf, checkGatherRows, checkRowsInCache, checkSupported, checkStepRows, colsOf, elementCount, kvOffset, rowsOf, RowFlow,
  type Backend, type BackendOptions, type CheckedRows, type DType, type Step, type StepRows, type Tensor, type TensorDesc, type TensorFill,
} from '@rama/backend';
import {
  CTL, MAX_PAGES, OP, OP_WORDS, PAGE, WorkerPool, canBlock, createMemory, defaultThreads, hardwareThreads, instantiate,
  kernelsModule, sharedMemoryAvailable, type KernelExports,
} from './wasm/runtime.js';
import { ThreadModeChooser } from './wasm/adaptive.js';

const f32 = Math.fround;
const ALIGN = 64;
/** The control block's address (CTL_BASE in assembly/kernels.ts); tensors start at HEAP_BASE (the module has no static data). */
const CTL_ADDR = 1024;
const HEAP_BASE = PAGE;
/**
 * Spins before sleeping: between programs (a worker idle while JS samples)
 * and in a barrier. Short, because a spinning thread holds a core that a
 * thread it waits for may need (with one busy process beside, 2^20 spins made
 * 2 threads ~8x slower than 1); long enough to cover the JavaScript between
 * two decoding steps and a barrier's usual wait without a sleep and wake-up.
 */
const IDLE_SPIN = Number(globalThis.process?.env?.RAMA_IDLE_SPIN ?? 1 << 17);
const BAR_SPIN = Number(globalThis.process?.env?.RAMA_BAR_SPIN ?? 1 << 14);

/**
 * Whether the kernels' own exp (kernelExp) returns Math.exp's bits here, as it
 * does in V8. If not (another engine), kernels call Math.exp instead.
 */
function expMatchesHost(k: KernelExports): boolean {
  const xs = [0, -0, 1, -1, 0.5, -0.5, 88.5, -87.25, -103.5, 700, -745.5, 1e-9, -1e-9, 0.3466, 1.0397];
  let s = 12345;
  for (let i = 0; i < 2000; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    xs.push(f32((s / 2 ** 32) * -40), f32((s / 2 ** 32 - 0.5) * 30));
  }
  return xs.every((x) => Object.is(k.wasmExp(x), Math.exp(x)));
}

class WasmTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: Tensor['dtype'];
  readonly label: string;
  readonly groupSize?: number;
  readonly byteLength: number;
  readonly elements: number;
  /** q8_0 stored in blocks of four interleaved rows (see interleaveQ80 in assembly/kernels.ts). */
  blocked = false;
  freed = false;

  constructor(desc: TensorDesc, readonly ptr: number, readonly backend: WasmCpuBackend) {
    this.shape = [...desc.shape];
    this.dtype = desc.dtype;
    this.label = desc.label;
    this.groupSize = desc.groupSize;
    this.byteLength = byteLengthOf(desc);
    this.elements = elementCount(desc.shape);
  }

  /** q8_0: where the f32 scales start (the standard layout: values, then scales). */
  get scalesPtr(): number {
    return this.ptr + this.elements;
  }
}

/** First-fit allocator over the memory, with freed blocks merged. */
class Heap {
  private top = HEAP_BASE;
  /**
   * No block has ever reached this address: memory from here up is as grow()
   * made it, zero. Anything below may hold an old block's bytes, also when it
   * lies above `top` (a block freed at the top gives its memory back to `top`).
   */
  private clean = HEAP_BASE;
  private free: { at: number; size: number }[] = [];
  constructor(private readonly memory: WebAssembly.Memory, private readonly maxPages: number, private readonly onGrow: () => void) {}

  get used(): number {
    return this.top;
  }

  /** `bytes` at a 64-byte aligned address; zero-filled if `zero`, otherwise holding whatever was there. */
  alloc(bytes: number, what: string, zero = false): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const at = this.fromFree(size) ?? this.fromTop(size, what);
    if (zero && at < this.clean) new Uint8Array(this.memory.buffer).fill(0, at, Math.min(at + bytes, this.clean));
    this.clean = Math.max(this.clean, at + size);
    return at;
  }

  private fromFree(size: number): number | undefined {
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i];
      if (b.size >= size) {
        const at = b.at;
        if (b.size === size) this.free.splice(i, 1);
        else {
          b.at += size;
          b.size -= size;
        }
        return at;
      }
    }
    return undefined;
  }

  private fromTop(size: number, what: string): number {
    const at = this.top;
    const end = at + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (end > this.maxPages * PAGE) {
        const limit = this.maxPages === MAX_PAGES
          ? 'the 4 GiB a 32-bit WebAssembly memory can hold'
          : `the ${(this.maxPages * PAGE / 2 ** 30).toFixed(2)} GiB this engine let the CPU backend reserve (32-bit WebAssembly allows at most 4 GiB)`;
        throw new BackendError(
          `${what}: the CPU backend needs ${(end / 2 ** 30).toFixed(2)} GiB, more than ${limit} ` +
          `(weights + KV cache + activations must fit; try a smaller model, --q80, or a shorter context)`,
        );
      }
      try {
        this.memory.grow(pages);
      } catch (e) {
        throw new BackendError(`${what}: cannot grow the CPU backend's WebAssembly memory to ${(end / 2 ** 20).toFixed(0)} MiB (out of memory?)`, { cause: e });
      }
      this.onGrow();
    }
    this.top = end;
    return at;
  }

  release(at: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    let i = 0;
    while (i < this.free.length && this.free[i].at < at) i++;
    this.free.splice(i, 0, { at, size });
    // merge with the neighbours
    if (i + 1 < this.free.length && at + size === this.free[i + 1].at) {
      this.free[i].size += this.free[i + 1].size;
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1].at + this.free[i - 1].size === at) {
      this.free[i - 1].size += this.free[i].size;
      this.free.splice(i, 1);
      i--;
    }
    const last = this.free[this.free.length - 1];
    if (last && last.at + last.size === this.top) {
      this.top = last.at;
      this.free.pop();
    }
  }
}

/** A growable block of backend-owned memory (scratch). A replaced block is freed after the current submit. */
class Scratch {
  ptr = 0;
  size = 0;
  constructor(private readonly be: WasmCpuBackend, private readonly what: string) {}
  ensure(bytes: number): number {
    if (bytes > this.size) {
      if (this.size) this.be.retire(this.ptr, this.size);
      const size = Math.max(bytes, Math.ceil(this.size * 1.5));
      this.ptr = this.be.heap.alloc(size, this.what);
      this.size = size;
    }
    return this.ptr;
  }
}

export interface WasmCpuBackendOptions extends BackendOptions {
  /**
   * Threads including the caller's, at most the hardware threads. Given, every
   * step runs on exactly that many. Default: every core, but each step runs
   * on the caller's thread alone while that has been faster lately (when
   * other processes keep the cores busy).
   */
  threads?: number;
}

export class WasmCpuBackend implements Backend {
  readonly name = 'cpu';
  readonly description: string;
  readonly maxRows: number;
  /** Threads that run each step, the caller's included. */
  readonly threads: number;
  /** Most bytes all tensors together can take: the WebAssembly memory's maximum (at most 4 GiB) less the control page. */
  readonly memoryLimit: number;
  readonly heap: Heap;
  private readonly tensors = new Set<WasmTensor>();
  private disposed = false;
  private u8!: Uint8Array;
  private f32v!: Float32Array;
  private i32v!: Int32Array;
  private retired: { at: number; size: number }[] = [];
  readonly program: Scratch;
  readonly quant: Scratch;
  readonly attScratch: Scratch;
  readonly ropeTables: Scratch;
  private readonly canWait: number;
  /** Whether a program runs on every thread or the caller's alone (default thread count only). */
  private readonly modes: ThreadModeChooser | undefined;

  private constructor(
    private readonly memory: WebAssembly.Memory,
    maxPages: number,
    private readonly kernels: KernelExports,
    private readonly pool: WorkerPool | undefined,
    threads: number,
    adaptive: boolean,
    maxRows: number,
    shared: boolean,
  ) {
    this.threads = threads;
    this.maxRows = maxRows;
    this.memoryLimit = maxPages * PAGE - HEAP_BASE;
    this.modes = adaptive && threads > 1 ? new ThreadModeChooser() : undefined;
    const count = `${this.modes ? 'up to ' : ''}${threads} thread${threads === 1 ? '' : 's'}`;
    this.description = `CPU (WebAssembly SIMD, ${count}${shared ? '' : ', no SharedArrayBuffer'})`;
    this.refreshViews();
    this.heap = new Heap(memory, maxPages, () => this.refreshViews());
    this.program = new Scratch(this, 'step program');
    this.quant = new Scratch(this, 'quantized activations');
    this.attScratch = new Scratch(this, 'attention scores');
    this.ropeTables = new Scratch(this, 'step tables (RoPE, attention rows)');
    this.canWait = threads > 1 && canBlock() ? 1 : 0;
    const c = CTL_ADDR >>> 2;
    this.i32v[c + (CTL.NTHREADS >>> 2)] = threads;
    this.i32v[c + (CTL.IDLE_SPIN >>> 2)] = IDLE_SPIN;
    this.i32v[c + (CTL.BAR_SPIN >>> 2)] = BAR_SPIN;
    this.i32v[c + (CTL.EXP_FLAG >>> 2)] = expMatchesHost(kernels) ? 0 : 1;
  }

  static async create(opts: WasmCpuBackendOptions = {}): Promise<WasmCpuBackend> {
    const maxRows = opts.maxRows ?? 64;
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new ArgumentError(`maxRows must be an integer >= 1, got ${maxRows}`);
    let threads = opts.threads ?? (await defaultThreads());
    if (!Number.isInteger(threads) || threads < 1) throw new ArgumentError(`threads must be an integer >= 1, got ${opts.threads}`);
    const cores = await hardwareThreads();
    if (threads > cores) {
      throw new ArgumentError(`threads must be at most ${cores}, the hardware threads of this machine, got ${threads} (more threads than cores only slow each step down)`);
    }
    const shared = sharedMemoryAvailable();
    if (!shared) threads = 1; // no SharedArrayBuffer (a page without cross-origin isolation): one thread, still SIMD
    const module = await kernelsModule(shared);
    const { memory, maxPages } = createMemory(shared, HEAP_BASE / PAGE);
    const kernels = instantiate(module, memory);
    const pool = threads > 1 ? await WorkerPool.start(module, memory, CTL_ADDR, threads - 1) : undefined;
    return new WasmCpuBackend(memory, maxPages, kernels, pool, threads, opts.threads === undefined, maxRows, shared);
  }

  private refreshViews(): void {
    const buf = this.memory.buffer;
    this.u8 = new Uint8Array(buf);
    this.f32v = new Float32Array(buf);
    this.i32v = new Int32Array(buf);
  }

  /** Frees a replaced scratch block once the work that may use it has run. */
  retire(at: number, size: number): void {
    this.retired.push({ at, size });
  }

  private live(): void {
    if (this.disposed) throw new BackendError('the CPU backend was disposed');
  }

  /** f32, i32 and llama2.c's q8_0: the types these kernels handle (see Backend.supports). */
  supports(dtype: DType): boolean {
    return dtype === 'f32' || dtype === 'i32' || dtype === 'q8_0';
  }

  private make(desc: TensorDesc, zero: boolean): WasmTensor {
    this.live();
    checkSupported(this, desc);
    const bytes = byteLengthOf(desc);
    // an upload overwrites it all: only alloc needs zeros
    const ptr = this.heap.alloc(bytes, desc.label, zero);
    const t = new WasmTensor(desc, ptr, this);
    this.tensors.add(t);
    return t;
  }

  async upload(desc: TensorDesc, data: ArrayBufferView | TensorFill): Promise<Tensor> {
    const t = this.make(desc, false);
    try {
      if (typeof data === 'function') await data(new Uint8Array(this.memory.buffer, t.ptr, t.byteLength));
      else {
        if (data.byteLength !== t.byteLength) {
          throw new ArgumentError(`upload ${desc.label}: ${data.byteLength} bytes given, ${t.byteLength} expected`);
        }
        this.u8.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), t.ptr);
      }
    } catch (e) {
      if (!this.disposed) this.free(t);
      throw e;
    }
    this.arrange(t);
    return t;
  }

  /**
   * Q8_0 matrices are rearranged in place, once, into blocks of four
   * interleaved rows: the matmul then reads memory strictly in order and
   * shares each activation load between four rows (1.5-3x faster than four
   * separate row streams). Needs a group size that is a multiple of 16.
   */
  private arrange(t: WasmTensor): void {
    if (t.dtype !== 'q8_0' || t.shape.length !== 2) return;
    const [d, n] = t.shape;
    const gs = t.groupSize!;
    if (gs % 16 !== 0 || d < 4) return;
    const groups = n / gs;
    const tmpBytes = 4 * n + 16 * groups;
    const tmp = this.heap.alloc(tmpBytes, `${t.label} (rearranging)`);
    try {
      this.kernels.interleaveQ80(t.ptr, t.scalesPtr, n, d, gs, tmp);
    } finally {
      this.heap.release(tmp, tmpBytes);
    }
    t.blocked = true;
  }

  alloc(desc: TensorDesc): Tensor {
    return this.make(desc, true);
  }

  write(t: Tensor, data: Float32Array | Int32Array, offset = 0): void {
    const c = this.own(t);
    if (c.dtype === 'q8_0') throw new ArgumentError(`write ${c.label}: only f32 and i32 tensors can be written`);
    if (offset < 0 || offset + data.length > c.elements) {
      throw new ArgumentError(`write ${c.label}: ${data.length} elements at ${offset} past its ${c.elements}`);
    }
    const at = (c.ptr >>> 2) + offset;
    if (c.dtype === 'i32') this.i32v.set(data instanceof Int32Array ? data : Int32Array.from(data), at);
    else this.f32v.set(data instanceof Float32Array ? data : Float32Array.from(data), at);
  }

  async read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    const c = this.own(t);
    if (c.dtype === 'q8_0') throw new ArgumentError(`read ${c.label}: only f32 and i32 tensors can be read`);
    const n = Math.min(count ?? c.elements, c.elements);
    const at = c.ptr >>> 2;
    return c.dtype === 'i32' ? this.i32v.slice(at, at + n) : this.f32v.slice(at, at + n);
  }

  free(t: Tensor): void {
    const c = this.own(t);
    c.freed = true;
    this.tensors.delete(c);
    this.heap.release(c.ptr, c.byteLength);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tensors) t.freed = true;
    this.tensors.clear();
    if (this.pool) {
      const c = CTL_ADDR >>> 2;
      Atomics.store(this.i32v, c + (CTL.SHUTDOWN >>> 2), 1);
      Atomics.add(this.i32v, c + (CTL.EPOCH >>> 2), 1);
      Atomics.notify(this.i32v, c + (CTL.EPOCH >>> 2));
      this.pool.terminate();
    }
  }

  /** Checks that a handle is one of ours and still alive. */
  own(t: Tensor): WasmTensor {
    if (!(t instanceof WasmTensor) || t.backend !== this || !this.tensors.has(t)) {
      throw new ArgumentError(`tensor ${t.label} does not belong to this CPU backend or was freed`);
    }
    return t;
  }

  begin(rows: StepRows): Step {
    this.live();
    return new WasmStep(this, checkStepRows(rows, this.maxRows));
  }

  /** Runs a recorded program on every thread; returns when all are done. */
  run(words: Int32Array, count: number, rows: number, tables: (Float32Array | Int32Array)[], tableUses: { slot: number; table: number }[], embeds: { tokens: number; rows: number; vocab: number }[]): void {
    this.live();
    // Token ids are checked here, when they are known (argmax may have written them).
    for (const e of embeds) {
      for (let r = 0; r < e.rows; r++) {
        const id = this.i32v[(e.tokens >>> 2) + r];
        if (!(id >= 0 && id < e.vocab)) throw new ArgumentError(`token id ${id} outside the vocabulary (0..${e.vocab - 1})`);
      }
    }
    let tableBytes = 0;
    for (const t of tables) tableBytes += Math.ceil(t.byteLength / 16) * 16;
    const tablePtr = tableBytes ? this.ropeTables.ensure(tableBytes) : 0;
    const prog = this.program.ensure(count * OP_WORDS * 4);
    // Patch table addresses, then copy the program in.
    const addrs: number[] = [];
    let at = tablePtr;
    for (const t of tables) {
      this.u8.set(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), at);
      addrs.push(at);
      at += Math.ceil(t.byteLength / 16) * 16;
    }
    for (const u of tableUses) words[u.slot] = addrs[u.table];
    const p = prog >>> 2;
    this.i32v.set(words.subarray(0, count * OP_WORDS), p);
    try {
      const kind = `${count}:${rows}`;
      const mode = this.modes?.pick(kind) ?? 'all';
      const t0 = performance.now();
      this.kernels.launch(CTL_ADDR, prog, count, mode === 'solo' ? 1 : 0, this.canWait);
      this.modes?.record(kind, mode, performance.now() - t0);
    } finally {
      for (const r of this.retired) this.heap.release(r.at, r.size);
      this.retired = [];
    }
    if (Atomics.load(this.i32v, (CTL_ADDR + CTL.FAILED) >>> 2) !== 0) {
      this.disposed = true;
      this.pool?.terminate();
      throw new BackendError(`a CPU backend worker thread failed${this.pool?.error ? `: ${this.pool.error}` : ''}`);
    }
  }
}

/**
 * One step's ops, recorded as op records and run by `submit`. RoPE (cos, sin)
 * tables are made once per step for each (rows, period, head size, theta).
 */
class WasmStep implements Step {
  private words = new Int32Array(OP_WORDS * 64);
  private count = 0;
  /** Per-step data the kernels read (RoPE (cos, sin) tables, attention row tables); their addresses are patched in at submit. */
  private tables: (Float32Array | Int32Array)[] = [];
  private tableUses: { slot: number; table: number }[] = [];
  private tableCache = new Map<string, number>();
  private embeds: { tokens: number; rows: number; vocab: number }[] = [];
  private submitted = false;
  /** Reads to answer once the program has run. */
  private reads: (() => void)[] = [];
  /** The activation tensor whose quantized copy is in the quant scratch, and how. */
  private quantized: { t: WasmTensor; rows: number; gs: number; xq: number; xs: number } | undefined;

  readonly rows: number;
  readonly positions: readonly number[];
  readonly slots: readonly number[];
  private readonly rowFlow: RowFlow<WasmTensor>;

  constructor(private readonly be: WasmCpuBackend, private readonly layout: CheckedRows) {
    this.rows = layout.positions.length;
    this.positions = layout.positions;
    this.slots = layout.slots;
    this.rowFlow = new RowFlow(this.rows);
  }

  /** A per-step table, made once per key; `slot` is the op word that receives its address at submit. */
  private useTable(key: string, slot: number, make: () => Float32Array | Int32Array): void {
    let table = this.tableCache.get(key);
    if (table === undefined) {
      table = this.tables.length;
      this.tables.push(make());
      this.tableCache.set(key, table);
    }
    this.tableUses.push({ slot, table });
  }

  /** Copies row runs: consecutive rows whose destinations are consecutive too become one copy. */
  private copyRows(dst: WasmTensor, rowBytes: number, pieces: { dst: number; src: number }[]): void {
    for (let i = 0; i < pieces.length; ) {
      let j = i + 1;
      while (j < pieces.length && pieces[j].dst === pieces[j - 1].dst + rowBytes && pieces[j].src === pieces[j - 1].src + rowBytes) j++;
      this.op(OP.COPY, dst, pieces[i].dst, pieces[i].src, (j - i) * rowBytes);
      i = j;
    }
  }

  /** Appends one op record; `writes` is the tensor the op modifies. */
  private op(code: number, writes: WasmTensor | undefined, ...args: number[]): number {
    if (this.submitted) throw new ArgumentError('this step was already submitted');
    if ((this.count + 1) * OP_WORDS > this.words.length) {
      const w = new Int32Array(this.words.length * 2);
      w.set(this.words);
      this.words = w;
    }
    const base = this.count * OP_WORDS;
    this.words[base] = code;
    for (let i = 0; i < args.length; i++) this.words[base + 1 + i] = args[i];
    this.count++;
    if (this.quantized && this.quantized.t === writes) this.quantized = undefined;
    return base;
  }

  private f32(t: Tensor, what: string): WasmTensor {
    const c = this.be.own(t);
    if (c.dtype !== 'f32') throw new ArgumentError(`${what}: ${c.label} must be f32, is ${c.dtype}`);
    return c;
  }

  embed(out: Tensor, table: Tensor, tokens: Tensor): void {
    const o = this.f32(out, 'embed'), tab = this.f32(table, 'embed'), tok = this.be.own(tokens);
    const dim = colsOf(tab), vocab = rowsOf(tab), rows = this.rows;
    if (colsOf(o) !== dim) throw new ArgumentError(`embed: ${o.label} has ${colsOf(o)} columns, the table ${dim}`);
    this.rowFlow.set(o, rows, 'embed');
    this.embeds.push({ tokens: tok.ptr, rows, vocab });
    this.op(OP.EMBED, o, o.ptr, tab.ptr, tok.ptr, dim, rows);
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    const o = this.f32(out, 'rmsnorm'), xi = this.f32(x, 'rmsnorm'), w = this.f32(weight, 'rmsnorm');
    const n = colsOf(xi), rows = this.rowFlow.flow(o, xi, 'rmsnorm');
    const base = this.op(OP.RMSNORM, o, o.ptr, xi.ptr, w.ptr, n, rows, 0);
    new Float32Array(this.words.buffer, (base + 6) * 4, 1)[0] = f32(eps);
  }

  matmul(out: Tensor, x: Tensor, w: Tensor): void {
    const o = this.f32(out, 'matmul'), xi = this.f32(x, 'matmul'), wt = this.be.own(w);
    const [d, n] = wt.shape;
    if (colsOf(xi) !== n || colsOf(o) !== d) {
      throw new ArgumentError(`matmul: ${wt.label} is [${d}, ${n}], x ${xi.label} has ${colsOf(xi)} columns, out ${o.label} ${colsOf(o)}`);
    }
    const rows = this.rowFlow.flow(o, xi, 'matmul');
    if (wt.dtype === 'f32') {
      this.op(OP.MATMUL_F32, o, o.ptr, xi.ptr, wt.ptr, n, d, rows);
      return;
    }
    if (wt.dtype !== 'q8_0') throw new ArgumentError(`matmul: ${wt.label} must be f32 or q8_0, is ${wt.dtype}`);
    const gs = wt.groupSize!;
    let q = this.quantized;
    if (!q || q.t !== xi || q.rows !== rows || q.gs !== gs) {
      const groups = (rows * n) / gs;
      const xqBytes = Math.ceil((rows * n * 2) / 64) * 64;
      const base = this.be.quant.ensure(xqBytes + groups * 4);
      q = { t: xi, rows, gs, xq: base, xs: base + xqBytes };
      this.op(OP.QUANTIZE, undefined, xi.ptr, n, rows, gs, q.xq, q.xs);
      this.quantized = q;
    }
    this.op(OP.MATMUL_Q80, o, o.ptr, q.xq, q.xs, wt.ptr, wt.scalesPtr, n, d, rows, gs, wt.blocked ? 1 : 0);
  }

  rope(x: Tensor, headSize: number, theta: number): void {
    const t = this.f32(x, 'rope');
    const n = colsOf(t), rows = this.rowFlow.flow(t, t, 'rope');
    // (cos, sin) per pair depends on the pair's index within its head: one head's worth per row,
    // or the whole row when heads have an odd size. Row r turns by its own position.
    const period = headSize % 2 === 0 ? headSize / 2 : n / 2;
    const base = this.op(OP.ROPE, t, t.ptr, n, rows, 0, period);
    this.useTable(`rope,${rows},${period},${headSize},${theta}`, base + 4, () => {
      const tab = new Float32Array(rows * period * 2);
      for (let r = 0; r < rows; r++) {
        for (let p = 0; p < period; p++) {
          const headDim = (2 * p) % headSize;
          const freq = f32(1 / f32(Math.pow(theta, f32(headDim / headSize))));
          const angle = f32(this.positions[r] * freq);
          tab[(r * period + p) * 2] = Math.cos(angle);
          tab[(r * period + p) * 2 + 1] = Math.sin(angle);
        }
      }
      return tab;
    });
  }

  storeKV(cache: Tensor, layer: number, src: Tensor): void {
    const c = this.f32(cache, 'storeKV'), s = this.f32(src, 'storeKV');
    const g = checkRowsInCache(c, layer, this.layout, 'storeKV');
    const rowBytes = g.kvDim * 4;
    const pieces = this.positions.map((pos, r) => ({ dst: c.ptr + (kvOffset(g, layer, this.slots[r]) + pos * g.kvDim) * 4, src: s.ptr + r * rowBytes }));
    this.copyRows(c, rowBytes, pieces);
  }

  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void {
    const o = this.f32(out, 'attention'), qi = this.f32(q, 'attention');
    const kc = this.f32(keys, 'attention'), vc = this.f32(values, 'attention');
    const g = checkRowsInCache(kc, layer, this.layout, 'attention');
    const dim = colsOf(qi);
    const rows = this.rowFlow.flow(o, qi, 'attention');
    const nHeads = dim / headSize, nKv = g.kvDim / headSize;
    if (!Number.isInteger(nHeads) || !Number.isInteger(nKv) || nHeads % nKv !== 0) {
      throw new ArgumentError(`attention: head size ${headSize} does not fit dim ${dim} and kv_dim ${g.kvDim}`);
    }
    const stride = Math.ceil((g.seqLen * 4) / 64) * 64 + 64;
    const scratch = this.be.attScratch.ensure(stride * this.be.threads);
    const layerOff = kvOffset(g, layer, 0) * 4;
    const base = this.op(OP.ATTENTION, o, o.ptr, qi.ptr, kc.ptr + layerOff, vc.ptr + layerOff, 0, rows, nHeads, nKv, headSize, scratch, stride);
    // Per row: the last position it attends to, and its slot's byte offset from slot 0.
    this.useTable(`attention-rows,${g.seqLen},${g.kvDim},${rows}`, base + 5, () => {
      const tab = new Int32Array(rows * 2);
      for (let r = 0; r < rows; r++) {
        tab[2 * r] = this.positions[r];
        tab[2 * r + 1] = this.slots[r] * g.seqLen * g.kvDim * 4;
      }
      return tab;
    });
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    const o = this.f32(out, 'swiglu');
    const g = this.f32(gate, 'swiglu'), u = this.f32(up, 'swiglu');
    this.op(OP.SWIGLU, o, o.ptr, g.ptr, u.ptr, this.rowFlow.flow(o, g, 'swiglu') * colsOf(o));
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const o = this.f32(out, 'add');
    const x = this.f32(a, 'add'), y = this.f32(b, 'add');
    this.op(OP.ADD, o, o.ptr, x.ptr, y.ptr, this.rowFlow.flow(o, x, 'add') * colsOf(o));
  }

  gather(out: Tensor, x: Tensor, rows: ArrayLike<number>): void {
    const o = this.f32(out, 'gather'), xi = this.f32(x, 'gather');
    const n = colsOf(xi);
    if (colsOf(o) !== n) throw new ArgumentError(`gather: ${o.label} has ${colsOf(o)} columns, ${xi.label} ${n}`);
    const which = checkGatherRows(rows, this.rowFlow.of(xi), rowsOf(o), o.label);
    if (o === xi && which.some((r, i) => r !== i)) throw new ArgumentError('gather: out may not alias x unless the rows stay in place');
    this.rowFlow.set(o, which.length, 'gather');
    this.copyRows(o, n * 4, which.map((r, i) => ({ dst: o.ptr + i * n * 4, src: xi.ptr + r * n * 4 })));
  }

  argmax(out: Tensor, logits: Tensor): void {
    const o = this.be.own(out), l = this.f32(logits, 'argmax');
    const rows = this.rowFlow.of(l);
    if (o.dtype !== 'i32' || o.elements < rows) throw new ArgumentError(`argmax: ${o.label} must be i32 with room for ${rows} ids`);
    this.op(OP.ARGMAX, o, o.ptr, l.ptr, colsOf(l), rows);
  }

  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    if (this.submitted) throw new ArgumentError('read: this step was already submitted');
    this.be.own(t);
    return new Promise((resolve, reject) => this.reads.push(() => this.be.read(t, count).then(resolve, reject)));
  }

  submit(): void {
    if (this.submitted) throw new ArgumentError('this step was already submitted');
    this.submitted = true;
    if (this.count > 0) this.be.run(this.words, this.count, this.rows, this.tables, this.tableUses, this.embeds);
    for (const answer of this.reads) answer();
  }
}
