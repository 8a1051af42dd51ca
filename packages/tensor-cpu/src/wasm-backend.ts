/**
 * The CPU backend at native speed: tensors live in WebAssembly memory,
 * kernels are WebAssembly SIMD (assembly/kernels.ts), and a Step runs on every
 * core. Ops are recorded into programs; `submit` runs them on all threads,
 * so `read` and `write` find every submitted step finished.
 *
 * Models of any size: a 32-bit WebAssembly memory holds at most 4 GiB, so
 * the backend keeps several memories ("spaces"), each with its own kernels
 * instance and worker threads, and places each tensor whole in one of them.
 * An op runs in the space of its big operand (a weight matrix, the KV cache);
 * activations that live elsewhere are copied into that space's I/O block
 * before its program runs and copied back after (see Program). Activations
 * are small (a few rows of dim floats), so this costs little next to reading
 * the weights; a model that fits in one memory uses one space and no copies.
 */
import {
  ArgumentError, BackendError, byteLengthOf, freqFactorsKey, ropeFrequencies, checkGatherRows, checkRowsInCache, checkSupported, checkStepRows, colsOf, elementCount, kvOffset, rowsOf, RowFlow,
  type Backend, type BackendOptions, type CheckedRows, type DType, type Step, type StepRows, type Tensor, type TensorDesc, type TensorFill,
} from '@rama/backend';
import {
  CTL, MAX_PAGES, OP, OP_WORDS, PAGE, WorkerPool, canBlock, createMemory, defaultThreads, hardwareThreads, instantiate,
  kernelsModule, sharedMemoryAvailable, type KernelExports,
} from './wasm/runtime.js';
import { ThreadModeChooser } from './wasm/adaptive.js';

const f32 = Math.fround;
/** Weight types the matmul takes. */
const MATMUL_DTYPES = new Set(['f32', 'q8_0', 'f16', 'bf16', 'q4_0', 'q4_k', 'q5_k', 'q6_k']);
/** An f32's bits, for op words that hold an f32 (rmsnorm's eps). */
const f32Word = (() => {
  const f = new Float32Array(1), i = new Int32Array(f.buffer);
  return (x: number): number => {
    f[0] = x;
    return i[0];
  };
})();
const fmtSize = (bytes: number): string => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`);
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

/** The packed table types embed decodes, as assembly/embed.ts numbers them (f32 rows are copied). */
const EMBED_KINDS: Partial<Record<string, number>> = { f16: 1, bf16: 2, q4_0: 3, q4_k: 4, q5_k: 5, q6_k: 6, q8_0: 7 };

class WasmTensor implements Tensor {
  readonly shape: readonly number[];
  readonly dtype: Tensor['dtype'];
  readonly label: string;
  readonly groupSize?: number;
  readonly colocate?: TensorDesc['colocate'];
  readonly byteLength: number;
  readonly elements: number;
  /** q8_0 stored in blocks of four interleaved rows (see interleaveQ80 in assembly/kernels.ts). */
  blocked = false;
  freed = false;

  constructor(desc: TensorDesc, readonly ptr: number, readonly space: Space, readonly backend: WasmCpuBackend) {
    this.shape = [...desc.shape];
    this.dtype = desc.dtype;
    this.label = desc.label;
    this.groupSize = desc.groupSize;
    this.colocate = desc.colocate;
    this.byteLength = byteLengthOf(desc);
    this.elements = elementCount(desc.shape);
  }

  /** q8_0: where the f32 scales start (the standard layout: values, then scales). */
  get scalesPtr(): number {
    return this.ptr + this.elements;
  }
}

/** First-fit allocator over one memory, with freed blocks merged. */
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

  /** Whether `bytes` more fit (in a free block or above the top) without passing the memory's maximum. */
  fits(bytes: number): boolean {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    return this.free.some((b) => b.size >= size) || this.top + size <= this.maxPages * PAGE;
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
        throw new BackendError(
          `${what}: ${(size / 2 ** 20).toFixed(1)} MiB do not fit in one of the CPU backend's WebAssembly memories ` +
          `(${fmtSize(this.maxPages * PAGE)} each; a 32-bit memory holds at most 4 GiB, and every tensor lies whole in one)`,
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
  constructor(private readonly space: Space, private readonly what: string) {}
  ensure(bytes: number): number {
    if (bytes > this.size) {
      if (this.size) this.space.retire(this.ptr, this.size);
      const size = Math.max(bytes, Math.ceil(this.size * 1.5));
      this.ptr = this.space.heap.alloc(size, this.what);
      this.size = size;
    }
    return this.ptr;
  }
}

/**
 * One WebAssembly memory with its own kernels instance, control block,
 * worker threads, heap and scratch blocks. Space 0 is made with the backend;
 * the others when a tensor no longer fits in the ones there are.
 */
class Space {
  readonly heap: Heap;
  readonly kernels: KernelExports;
  u8!: Uint8Array;
  f32v!: Float32Array;
  i32v!: Int32Array;
  readonly program: Scratch;
  readonly quant: Scratch;
  readonly attScratch: Scratch;
  readonly tables: Scratch;
  /** Copies of activations that live in another space (see Program). */
  readonly io: Scratch;
  private retired: { at: number; size: number }[] = [];
  /** A program's op words, kept for the next program here (a decoding step records ~100 ops every token). */
  private spareWords: Int32Array | undefined;
  private pool: WorkerPool | undefined;
  /** Resolves once the worker threads run (at once when there are none). */
  readonly ready: Promise<void>;
  private poolError: unknown;

  constructor(
    readonly index: number,
    private readonly memory: WebAssembly.Memory,
    maxPages: number,
    module: WebAssembly.Module,
    private readonly threads: number,
    canWait: number,
  ) {
    this.kernels = instantiate(module, memory);
    this.refreshViews();
    this.heap = new Heap(memory, maxPages, () => this.refreshViews());
    this.program = new Scratch(this, 'step program');
    this.quant = new Scratch(this, 'quantized activations');
    this.attScratch = new Scratch(this, 'attention scores');
    this.tables = new Scratch(this, 'step tables (RoPE, attention rows)');
    this.io = new Scratch(this, 'activations copied from another memory');
    const c = CTL_ADDR >>> 2;
    this.i32v[c + (CTL.NTHREADS >>> 2)] = threads;
    this.i32v[c + (CTL.IDLE_SPIN >>> 2)] = IDLE_SPIN;
    this.i32v[c + (CTL.BAR_SPIN >>> 2)] = BAR_SPIN;
    this.i32v[c + (CTL.EXP_FLAG >>> 2)] = expMatchesHost(this.kernels) ? 0 : 1;
    this.canWait = canWait;
    this.ready = threads > 1
      ? WorkerPool.start(module, memory, CTL_ADDR, threads - 1).then((p) => { this.pool = p; }, (e) => { this.poolError = e; })
      : Promise.resolve();
  }

  private readonly canWait: number;

  refreshViews(): void {
    const buf = this.memory.buffer;
    this.u8 = new Uint8Array(buf);
    this.f32v = new Float32Array(buf);
    this.i32v = new Int32Array(buf);
  }

  /** Op words for a new program: the last program's, or new ones. */
  takeWords(): Int32Array {
    const w = this.spareWords ?? new Int32Array(OP_WORDS * 64);
    this.spareWords = undefined;
    return w;
  }

  /** Gives a program's op words back once it has run. */
  giveWords(w: Int32Array): void {
    this.spareWords = w;
  }

  /** Frees a replaced scratch block once the work that may use it has run. */
  retire(at: number, size: number): void {
    this.retired.push({ at, size });
  }

  releaseRetired(): void {
    for (const r of this.retired) this.heap.release(r.at, r.size);
    this.retired = [];
  }

  /**
   * Runs a program already in this memory. `solo`: on the caller's thread
   * alone; also while this space's workers are still starting.
   */
  launch(prog: number, count: number, solo: boolean): void {
    if (this.poolError) throw this.poolError instanceof BackendError ? this.poolError : new BackendError(String(this.poolError), { cause: this.poolError });
    this.kernels.launch(CTL_ADDR, prog, count, solo || (this.threads > 1 && !this.pool) ? 1 : 0, this.canWait);
    if (Atomics.load(this.i32v, (CTL_ADDR + CTL.FAILED) >>> 2) !== 0) {
      throw new BackendError(`a CPU backend worker thread failed${this.pool?.error ? `: ${this.pool.error}` : ''}`);
    }
  }

  shutdown(): void {
    if (!this.pool) return;
    const c = CTL_ADDR >>> 2;
    Atomics.store(this.i32v, c + (CTL.SHUTDOWN >>> 2), 1);
    Atomics.add(this.i32v, c + (CTL.EPOCH >>> 2), 1);
    Atomics.notify(this.i32v, c + (CTL.EPOCH >>> 2));
    this.pool.terminate();
  }
}

/** Options of `WasmCpuBackend.create`. */
export interface WasmCpuBackendOptions extends BackendOptions {
  /**
   * Threads including the caller's, at most the hardware threads. Given, every
   * step runs on exactly that many. Default: every core, but each step runs
   * on the caller's thread alone while that has been faster lately (when
   * other processes keep the cores busy).
   */
  threads?: number;
  /**
   * The largest size of each WebAssembly memory, in bytes (a multiple of
   * 64 KiB, at least 128 KiB; default and most: 4 GiB). Tensors past one
   * memory go to another. Smaller values exercise the multi-memory path with
   * small models (tests).
   */
  maxMemoryBytes?: number;
  /**
   * Tests: place tensors round-robin over this many memories instead of
   * filling one before the next, so every op meets operands in other memories.
   */
  spreadAcrossMemories?: number;
}

/** The types this backend stores and multiplies by (f32 and i32 activations; every matrix type). */
const SUPPORTED: readonly DType[] = ['f32', 'i32', 'q8_0', 'f16', 'bf16', 'q4_0', 'q4_k', 'q5_k', 'q6_k'];

/** How many memories one backend may make: 64 x 4 GiB is past any machine this runs on. */
const MAX_SPACES = 64;

/**
 * The CPU backend: WebAssembly SIMD kernels (assembly/kernels.ts) on a pool of threads sharing
 * one memory, with llama2.c's numerics. `CpuBackend.create()` makes one.
 */
export class WasmCpuBackend implements Backend {
  readonly name = 'cpu';
  readonly description: string;
  readonly maxRows: number;
  /** Threads that run each step, the caller's included. */
  readonly threads: number;
  /** Most bytes all tensors together can take: every memory this backend may make, less their control pages. */
  readonly memoryLimit: number;
  /** The most one tensor can take: one memory, less its control page. */
  readonly maxTensorBytes: number;
  /** Room weights leave in a memory for step scratch (programs, quantized activations, copies). */
  private readonly scratchReserve: number;
  private readonly tensors = new Set<WasmTensor>();
  private disposed = false;
  /** The WebAssembly memories holding the tensors (one until a memory is full). */
  readonly spaces: Space[] = [];
  private nextSpread = 0;
  /** Where each colocated group lives (TensorDesc.colocate), while it has members. */
  private readonly groups = new Map<string, { space: Space; members: number }>();
  /** Whether a program runs on every thread or the caller's alone (default thread count only). */
  readonly modes: ThreadModeChooser | undefined;

  private constructor(
    private readonly module: WebAssembly.Module,
    private readonly shared: boolean,
    private readonly maxPages: number,
    threads: number,
    adaptive: boolean,
    maxRows: number,
    private readonly spread: number,
  ) {
    this.threads = threads;
    this.maxRows = maxRows;
    this.maxTensorBytes = maxPages * PAGE - HEAP_BASE;
    this.scratchReserve = Math.min(16 * 2 ** 20, (maxPages * PAGE) / 4);
    this.memoryLimit = MAX_SPACES * this.maxTensorBytes;
    this.modes = adaptive && threads > 1 ? new ThreadModeChooser() : undefined;
    const count = `${this.modes ? 'up to ' : ''}${threads} thread${threads === 1 ? '' : 's'}`;
    this.description = `CPU (WebAssembly SIMD, ${count}${shared ? '' : ', no SharedArrayBuffer'})`;
  }

  /** Compiles the kernels and starts `threads - 1` workers; an ArgumentError for a bad option. */
  static async create(opts: WasmCpuBackendOptions = {}): Promise<WasmCpuBackend> {
    const maxRows = opts.maxRows ?? 64;
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new ArgumentError(`maxRows must be an integer >= 1, got ${maxRows}`);
    let threads = opts.threads ?? (await defaultThreads());
    if (!Number.isInteger(threads) || threads < 1) throw new ArgumentError(`threads must be an integer >= 1, got ${opts.threads}`);
    const cores = await hardwareThreads();
    if (threads > cores) {
      throw new ArgumentError(`threads must be at most ${cores}, the hardware threads of this machine, got ${threads} (more threads than cores only slow each step down)`);
    }
    const maxBytes = opts.maxMemoryBytes ?? MAX_PAGES * PAGE;
    if (!Number.isInteger(maxBytes) || maxBytes % PAGE !== 0 || maxBytes < 2 * PAGE || maxBytes > MAX_PAGES * PAGE) {
      throw new ArgumentError(`maxMemoryBytes must be a multiple of 64 KiB from 128 KiB to 4 GiB, got ${opts.maxMemoryBytes}`);
    }
    const spread = opts.spreadAcrossMemories ?? 1;
    if (!Number.isInteger(spread) || spread < 1 || spread > MAX_SPACES) {
      throw new ArgumentError(`spreadAcrossMemories must be an integer from 1 to ${MAX_SPACES}, got ${opts.spreadAcrossMemories}`);
    }
    const shared = sharedMemoryAvailable();
    if (!shared) threads = 1; // no SharedArrayBuffer (a page without cross-origin isolation): one thread, still SIMD
    const module = await kernelsModule(shared);
    // The first memory tells how large a maximum this runtime grants (a browser may not reserve 4 GiB).
    const { memory, maxPages } = createMemory(shared, HEAP_BASE / PAGE, maxBytes / PAGE);
    const be = new WasmCpuBackend(module, shared, maxPages, threads, opts.threads === undefined, maxRows, spread);
    const first = be.addSpace(memory);
    await first.ready;
    return be;
  }

  private addSpace(memory?: WebAssembly.Memory): Space {
    if (this.spaces.length >= MAX_SPACES) throw new BackendError(`the CPU backend already holds ${MAX_SPACES} WebAssembly memories, its most`);
    const mem = memory ?? createMemory(this.shared, HEAP_BASE / PAGE, this.maxPages).memory;
    const space = new Space(this.spaces.length, mem, this.maxPages, this.module, this.threads, this.threads > 1 && canBlock() ? 1 : 0);
    this.spaces.push(space);
    return space;
  }

  /**
   * The space for a new tensor: the first with room (weights loaded after the
   * activations and KV cache fill memory 0, then the next), or a new one. A
   * colocated group's members follow its first; that one goes where the whole
   * group fits.
   */
  private place(desc: TensorDesc, bytes: number, upload: boolean): Space {
    const group = desc.colocate ? this.groups.get(desc.colocate.group) : undefined;
    if (group) {
      if (!group.space.heap.fits(bytes)) {
        throw new BackendError(`${desc.label}: no room left beside the rest of its group "${desc.colocate!.group}" in one WebAssembly memory (${fmtSize(this.maxTensorBytes)})`);
      }
      return group.space;
    }
    const need = Math.max(bytes, desc.colocate?.bytes ?? 0);
    if (need > this.maxTensorBytes) {
      const what = desc.colocate ? `${desc.label} and the rest of its group "${desc.colocate.group}"` : desc.label;
      throw new BackendError(
        `${what}: ${(need / 2 ** 20).toFixed(1)} MiB do not fit in one of the CPU backend's WebAssembly memories ` +
        `(${fmtSize(this.maxTensorBytes)} each; a 32-bit memory holds at most 4 GiB, and ${desc.colocate ? 'a group' : 'every tensor'} lies whole in one)`,
      );
    }
    // Weights (uploads, after the activations) leave room in a memory for the scratch blocks steps allocate later.
    const room = upload ? need + this.scratchReserve : need;
    let space: Space | undefined;
    if (this.spread > 1) {
      const i = this.nextSpread++ % this.spread;
      while (this.spaces.length <= i) this.addSpace();
      if (this.spaces[i].heap.fits(room)) space = this.spaces[i];
    }
    space ??= this.spaces.find((s) => s.heap.fits(room)) ?? this.addSpace();
    return space;
  }

  private live(): void {
    if (this.disposed) throw new BackendError('the CPU backend was disposed');
  }

  /** f32, i32, llama2.c's q8_0, f16, bf16 and GGUF's q4_0, q4_k, q5_k, q6_k: the types these kernels handle (see Backend.supports). */
  supports(dtype: DType): boolean {
    return SUPPORTED.includes(dtype);
  }

  private make(desc: TensorDesc, zero: boolean): WasmTensor {
    this.live();
    checkSupported(this, desc);
    const bytes = byteLengthOf(desc);
    const space = this.place(desc, bytes, !zero);
    // an upload overwrites it all: only alloc needs zeros
    const ptr = space.heap.alloc(bytes, desc.label, zero);
    const t = new WasmTensor(desc, ptr, space, this);
    this.tensors.add(t);
    if (desc.colocate) {
      const g = this.groups.get(desc.colocate.group);
      if (g) g.members++;
      else this.groups.set(desc.colocate.group, { space, members: 1 });
    }
    return t;
  }

  async upload(desc: TensorDesc, data: ArrayBufferView | TensorFill): Promise<Tensor> {
    const t = this.make(desc, false);
    try {
      await t.space.ready;
      if (typeof data === 'function') await data(new Uint8Array(t.space.u8.buffer, t.ptr, t.byteLength));
      else {
        if (data.byteLength !== t.byteLength) {
          throw new ArgumentError(`upload ${desc.label}: ${data.byteLength} bytes given, ${t.byteLength} expected`);
        }
        t.space.u8.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), t.ptr);
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
   * f16, bf16, q4_0 and the k-quants stay in the file's layout: their kernels
   * read each row in order already (q4_0's 18-byte blocks with unaligned
   * loads, which WebAssembly allows; the k-quants' nibbles unpack into runs of
   * consecutive elements as they are, see assembly/kquants.ts), and the bytes
   * go from the file straight into memory.
   */
  private arrange(t: WasmTensor): void {
    if (t.dtype !== 'q8_0' || t.shape.length !== 2) return;
    const [d, n] = t.shape;
    const gs = t.groupSize!;
    if (gs % 16 !== 0 || d < 4) return;
    const groups = n / gs;
    const tmpBytes = 4 * n + 16 * groups;
    const tmp = t.space.heap.alloc(tmpBytes, `${t.label} (rearranging)`);
    try {
      t.space.kernels.interleaveQ80(t.ptr, t.scalesPtr, n, d, gs, tmp);
    } finally {
      t.space.heap.release(tmp, tmpBytes);
    }
    t.blocked = true;
  }

  alloc(desc: TensorDesc): Tensor {
    return this.make(desc, true);
  }

  write(t: Tensor, data: Float32Array | Int32Array, offset = 0): void {
    const c = this.own(t);
    if (c.dtype !== 'f32' && c.dtype !== 'i32') throw new ArgumentError(`write ${c.label}: only f32 and i32 tensors can be written, it is ${c.dtype}`);
    if (offset < 0 || offset + data.length > c.elements) {
      throw new ArgumentError(`write ${c.label}: ${data.length} elements at ${offset} past its ${c.elements}`);
    }
    const at = (c.ptr >>> 2) + offset;
    if (c.dtype === 'i32') c.space.i32v.set(data instanceof Int32Array ? data : Int32Array.from(data), at);
    else c.space.f32v.set(data instanceof Float32Array ? data : Float32Array.from(data), at);
  }

  async read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    const c = this.own(t);
    if (c.dtype !== 'f32' && c.dtype !== 'i32') throw new ArgumentError(`read ${c.label}: only f32 and i32 tensors can be read, it is ${c.dtype}`);
    const n = Math.min(count ?? c.elements, c.elements);
    const at = c.ptr >>> 2;
    return c.dtype === 'i32' ? c.space.i32v.slice(at, at + n) : c.space.f32v.slice(at, at + n);
  }

  free(t: Tensor): void {
    const c = this.own(t);
    c.freed = true;
    this.tensors.delete(c);
    c.space.heap.release(c.ptr, c.byteLength);
    const g = c.colocate && this.groups.get(c.colocate.group);
    if (g && --g.members === 0) this.groups.delete(c.colocate!.group);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.tensors) t.freed = true;
    this.tensors.clear();
    for (const s of this.spaces) s.shutdown();
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

  /** Runs a step's programs in order, each on every thread of its space; returns when all are done. */
  run(programs: readonly Program[], rows: number, embeds: readonly { tokens: WasmTensor; rows: number; vocab: number }[]): void {
    this.live();
    // Token ids are checked here, when they are known (argmax may have written them).
    for (const e of embeds) {
      for (let r = 0; r < e.rows; r++) {
        const id = e.tokens.space.i32v[(e.tokens.ptr >>> 2) + r];
        if (!(id >= 0 && id < e.vocab)) throw new ArgumentError(`token id ${id} outside the vocabulary (0..${e.vocab - 1})`);
      }
    }
    try {
      for (const p of programs) {
        if (p.count === 0) continue;
        const kind = `${p.space.index}:${p.count}:${rows}`;
        const mode = this.modes?.pick(kind) ?? 'all';
        const t0 = performance.now();
        p.run(mode === 'solo');
        this.modes?.record(kind, mode, performance.now() - t0);
      }
    } catch (e) {
      this.disposed = true;
      for (const s of this.spaces) s.shutdown();
      throw e;
    } finally {
      for (const s of this.spaces) s.releaseRetired();
    }
  }
}

/**
 * An operand's place in a program's I/O block is recorded as IO_TAG x (entry
 * + 1) + offset within it (so address arithmetic on it works) and patched at
 * run, once every entry's size is known.
 */
const IO_TAG = 2 ** 32;

/**
 * The ops of a step that run in one space, in order. Operands that live in
 * another space get a place in this space's I/O block: those read are copied
 * in before the program runs, those written are copied back after.
 */
class Program {
  /** The op records, OP_WORDS each (words of a record that its op does not use are 0: the last is a work counter). */
  words: Int32Array;
  count = 0;
  /** Per-program data the kernels read (RoPE (cos, sin) tables, attention row tables); their addresses are patched in at run. */
  private tables: (Float32Array | Int32Array)[] = [];
  private tableUses: { slot: number; table: number }[] = [];
  private tableCache = new Map<string, number>();
  private io = new Map<WasmTensor, { index: number; size: number; copyIn: number; copyOut: number }>();
  private ioUses: { slot: number; at: number }[] = [];

  constructor(readonly space: Space) {
    this.words = space.takeWords();
  }

  /**
   * The address of `t` for an op of this program: its own where it lives
   * here, else its place in the I/O block. Read `bytes` from its start are
   * copied in (unless this program wrote them first); written ones copied out.
   * An op asks for what it reads before what it writes.
   */
  addr(t: WasmTensor, bytes: number, access: 'read' | 'write'): number {
    if (t.space === this.space) return t.ptr;
    let e = this.io.get(t);
    if (!e) {
      e = { index: this.io.size, size: 0, copyIn: 0, copyOut: 0 };
      this.io.set(t, e);
      if (access === 'read') e.copyIn = bytes;
    } else if (access === 'read' && e.copyOut === 0) e.copyIn = Math.max(e.copyIn, bytes);
    if (access === 'write') e.copyOut = Math.max(e.copyOut, bytes);
    e.size = Math.max(e.size, bytes);
    return IO_TAG * (e.index + 1);
  }

  /** Appends one op record; returns its first word's index. */
  op(code: number, args: readonly number[]): number {
    if ((this.count + 1) * OP_WORDS > this.words.length) {
      const w = new Int32Array(this.words.length * 2);
      w.set(this.words);
      this.words = w;
    }
    const base = this.count * OP_WORDS;
    this.words.fill(0, base, base + OP_WORDS); // the words may be a previous program's
    this.words[base] = code;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a >= IO_TAG) this.ioUses.push({ slot: base + 1 + i, at: a });
      else this.words[base + 1 + i] = a;
    }
    this.count++;
    return base;
  }

  /** A per-program table, made once per key; `slot` is the op word that receives its address at run. */
  useTable(key: string, slot: number, make: () => Float32Array | Int32Array): void {
    let table = this.tableCache.get(key);
    if (table === undefined) {
      table = this.tables.length;
      this.tables.push(make());
      this.tableCache.set(key, table);
    }
    this.tableUses.push({ slot, table });
  }

  /** Lays out tables and I/O, copies operands in, runs, copies results out. */
  run(solo: boolean): void {
    const sp = this.space;
    let tableBytes = 0;
    for (const t of this.tables) tableBytes += Math.ceil(t.byteLength / 16) * 16;
    const offsets: number[] = [];
    let ioBytes = 0;
    for (const e of this.io.values()) {
      offsets[e.index] = ioBytes;
      ioBytes += Math.ceil(e.size / ALIGN) * ALIGN;
    }
    const tablePtr = tableBytes ? sp.tables.ensure(tableBytes) : 0;
    const ioPtr = ioBytes ? sp.io.ensure(ioBytes) : 0;
    const prog = sp.program.ensure(this.count * OP_WORDS * 4);
    // Allocation may have grown the memory: views are read after it.
    const addrs: number[] = [];
    let at = tablePtr;
    for (const t of this.tables) {
      sp.u8.set(new Uint8Array(t.buffer, t.byteOffset, t.byteLength), at);
      addrs.push(at);
      at += Math.ceil(t.byteLength / 16) * 16;
    }
    for (const u of this.tableUses) this.words[u.slot] = addrs[u.table];
    for (const u of this.ioUses) {
      const entry = Math.floor(u.at / IO_TAG) - 1;
      this.words[u.slot] = ioPtr + offsets[entry] + (u.at % IO_TAG);
    }
    for (const [t, e] of this.io) {
      if (e.copyIn) sp.u8.set(t.space.u8.subarray(t.ptr, t.ptr + e.copyIn), ioPtr + offsets[e.index]);
    }
    sp.i32v.set(this.words.subarray(0, this.count * OP_WORDS), prog >>> 2);
    sp.launch(prog, this.count, solo);
    sp.giveWords(this.words);
    for (const [t, e] of this.io) {
      const from = ioPtr + offsets[e.index];
      if (e.copyOut) t.space.u8.set(sp.u8.subarray(from, from + e.copyOut), t.ptr);
    }
  }
}

/**
 * One step's ops, recorded into programs (a new one each time the space an
 * op runs in changes) and run by `submit`. RoPE (cos, sin) tables are made
 * once per program for each (rows, period, head size, theta).
 */
class WasmStep implements Step {
  private programs: Program[] = [];
  private embeds: { tokens: WasmTensor; rows: number; vocab: number }[] = [];
  private submitted = false;
  /** Reads to answer once the programs have run. */
  private reads: (() => void)[] = [];
  /** The activation tensor whose quantized copy is in the current program's quant scratch, and how. */
  private quantized: { p: Program; t: WasmTensor; rows: number; gs: number; xq: number; xs: number; sums: number } | undefined;

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

  /** The program for an op that runs in `space`: the current one, or a new one. */
  private in(space: Space): Program {
    if (this.submitted) throw new ArgumentError('this step was already submitted');
    const last = this.programs[this.programs.length - 1];
    if (last?.space === space) return last;
    const p = new Program(space);
    this.programs.push(p);
    return p;
  }

  /** Appends one op record to `p`; `writes` is the tensor the op modifies. */
  private op(p: Program, code: number, writes: WasmTensor | undefined, ...args: number[]): number {
    const base = p.op(code, args);
    if (this.quantized && this.quantized.t === writes) this.quantized = undefined;
    return base;
  }

  /** Copies row runs: consecutive rows whose destinations are consecutive too become one copy. */
  private copyRows(p: Program, dst: WasmTensor, rowBytes: number, pieces: { dst: number; src: number }[]): void {
    for (let i = 0; i < pieces.length; ) {
      let j = i + 1;
      while (j < pieces.length && pieces[j].dst === pieces[j - 1].dst + rowBytes && pieces[j].src === pieces[j - 1].src + rowBytes) j++;
      this.op(p, OP.COPY, dst, pieces[i].dst, pieces[i].src, (j - i) * rowBytes);
      i = j;
    }
  }

  private f32(t: Tensor, what: string): WasmTensor {
    const c = this.be.own(t);
    if (c.dtype !== 'f32') throw new ArgumentError(`${what}: ${c.label} must be f32, is ${c.dtype}`);
    return c;
  }

  embed(out: Tensor, table: Tensor, tokens: Tensor): void {
    const o = this.f32(out, 'embed'), tab = this.be.own(table), tok = this.be.own(tokens);
    const kind = EMBED_KINDS[tab.dtype];
    if (tab.dtype !== 'f32' && kind === undefined) {
      throw new ArgumentError(`embed: ${tab.label} must be f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k, is ${tab.dtype}`);
    }
    const dim = colsOf(tab), vocab = rowsOf(tab), rows = this.rows;
    if (colsOf(o) !== dim) throw new ArgumentError(`embed: ${o.label} has ${colsOf(o)} columns, the table ${dim}`);
    this.rowFlow.set(o, rows, 'embed');
    this.embeds.push({ tokens: tok, rows, vocab });
    const p = this.in(tab.space);
    const tokAt = p.addr(tok, rows * 4, 'read');
    const oAt = p.addr(o, rows * dim * 4, 'write');
    if (kind === undefined) this.op(p, OP.EMBED, o, oAt, tab.ptr, tokAt, dim, rows);
    // a packed table: the looked-up rows are decoded (assembly/embed.ts)
    else this.op(p, OP.EMBED_PACKED, o, oAt, tab.ptr, tab.dtype === 'q8_0' ? tab.scalesPtr : 0, tokAt, dim, rows, kind, tab.groupSize ?? 0, vocab, tab.blocked ? 1 : 0);
  }

  rmsnorm(out: Tensor, x: Tensor, weight: Tensor, eps: number): void {
    const o = this.f32(out, 'rmsnorm'), xi = this.f32(x, 'rmsnorm'), w = this.f32(weight, 'rmsnorm');
    const n = colsOf(xi), rows = this.rowFlow.flow(o, xi, 'rmsnorm');
    const p = this.in(o.space);
    const xAt = p.addr(xi, rows * n * 4, 'read'), wAt = p.addr(w, n * 4, 'read');
    this.op(p, OP.RMSNORM, o, p.addr(o, rows * n * 4, 'write'), xAt, wAt, n, rows, f32Word(eps));
  }

  matmul(out: Tensor, x: Tensor, w: Tensor): void {
    const o = this.f32(out, 'matmul'), xi = this.f32(x, 'matmul'), wt = this.be.own(w);
    const [d, n] = wt.shape;
    if (colsOf(xi) !== n || colsOf(o) !== d) {
      throw new ArgumentError(`matmul: ${wt.label} is [${d}, ${n}], x ${xi.label} has ${colsOf(xi)} columns, out ${o.label} ${colsOf(o)}`);
    }
    const rows = this.rowFlow.flow(o, xi, 'matmul');
    if (!MATMUL_DTYPES.has(wt.dtype)) {
      throw new ArgumentError(`matmul: ${wt.label} must be f32, q8_0, f16, bf16, q4_0, q4_k, q5_k or q6_k, is ${wt.dtype}`);
    }
    // The weights' memory runs it: x comes to them (rows x n floats), not the matrix to x.
    const p = this.in(wt.space);
    if (wt.dtype === 'f32' || wt.dtype === 'f16' || wt.dtype === 'bf16') {
      const xAt = p.addr(xi, rows * n * 4, 'read');
      const oAt = p.addr(o, rows * d * 4, 'write');
      if (wt.dtype === 'f32') this.op(p, OP.MATMUL_F32, o, oAt, xAt, wt.ptr, n, d, rows);
      else this.op(p, OP.MATMUL_HALF, o, oAt, xAt, wt.ptr, n, d, rows, wt.dtype === 'bf16' ? 1 : 0);
      return;
    }
    // q8_0, q4_0 and the k-quants: x quantized to q8_0 in the weight's groups (q4_0: its blocks of 32;
    // k-quants: their super-blocks of 256, with each 32 values' sum, which q4_k and q5_k need).
    const kquant = wt.dtype === 'q4_k' || wt.dtype === 'q5_k' || wt.dtype === 'q6_k';
    const gs = wt.dtype === 'q4_0' ? 32 : kquant ? 256 : wt.groupSize!;
    let q = this.quantized;
    if (!q || q.p !== p || q.t !== xi || q.rows !== rows || q.gs !== gs || (kquant && !q.sums)) {
      const groups = (rows * n) / gs;
      const xqBytes = Math.ceil((rows * n * 2) / 64) * 64;
      const xsBytes = Math.ceil((groups * 4) / 64) * 64;
      const base = p.space.quant.ensure(xqBytes + xsBytes + (kquant ? (rows * n) / 16 : 0));
      q = { p, t: xi, rows, gs, xq: base, xs: base + xqBytes, sums: kquant ? base + xqBytes + xsBytes : 0 };
      const xAt = p.addr(xi, rows * n * 4, 'read');
      if (kquant) this.op(p, OP.QUANTIZE_K, undefined, xAt, n, rows, q.xq, q.xs, q.sums);
      else this.op(p, OP.QUANTIZE, undefined, xAt, n, rows, gs, q.xq, q.xs);
      this.quantized = q;
    }
    const oAt = p.addr(o, rows * d * 4, 'write');
    if (wt.dtype === 'q4_k' || wt.dtype === 'q5_k') {
      this.op(p, wt.dtype === 'q4_k' ? OP.MATMUL_Q4K : OP.MATMUL_Q5K, o, oAt, q.xq, q.xs, q.sums, wt.ptr, n, d, rows);
    } else if (wt.dtype === 'q6_k') this.op(p, OP.MATMUL_Q6K, o, oAt, q.xq, q.xs, wt.ptr, n, d, rows);
    else if (wt.dtype === 'q4_0') this.op(p, OP.MATMUL_Q40, o, oAt, q.xq, q.xs, wt.ptr, n, d, rows);
    else this.op(p, OP.MATMUL_Q80, o, oAt, q.xq, q.xs, wt.ptr, wt.scalesPtr, n, d, rows, gs, wt.blocked ? 1 : 0);
  }

  rope(x: Tensor, headSize: number, theta: number, freqFactors?: Float32Array): void {
    const t = this.f32(x, 'rope');
    const n = colsOf(t), rows = this.rowFlow.flow(t, t, 'rope');
    const p = this.in(t.space);
    const at = p.addr(t, rows * n * 4, 'read');
    p.addr(t, rows * n * 4, 'write');
    // (cos, sin) per pair depends on the pair's index within its head: one head's worth per row,
    // or the whole row when heads have an odd size. Row r turns by its own position.
    const period = headSize % 2 === 0 ? headSize / 2 : n / 2;
    const base = this.op(p, OP.ROPE, t, at, n, rows, 0, period);
    if (freqFactors && headSize % 2 !== 0) throw new ArgumentError(`rope: frequency factors need an even head size, got ${headSize}`);
    p.useTable(`rope,${rows},${period},${headSize},${theta},${freqFactorsKey(freqFactors)}`, base + 4, () => {
      const freqs = headSize % 2 === 0 ? ropeFrequencies(headSize, theta, freqFactors) : undefined;
      const tab = new Float32Array(rows * period * 2);
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < period; i++) {
          const headDim = (2 * i) % headSize;
          const freq = freqs ? freqs[headDim / 2] : f32(1 / f32(Math.pow(theta, f32(headDim / headSize))));
          const angle = f32(this.positions[r] * freq);
          tab[(r * period + i) * 2] = Math.cos(angle);
          tab[(r * period + i) * 2 + 1] = Math.sin(angle);
        }
      }
      return tab;
    });
  }

  storeKV(cache: Tensor, layer: number, src: Tensor): void {
    const c = this.kvCache(cache, 'storeKV'), s = this.f32(src, 'storeKV');
    const g = checkRowsInCache(c, layer, this.layout, 'storeKV');
    const rowBytes = g.kvDim * 4;
    const eb = c.dtype === 'f16' ? 2 : 4;
    const p = this.in(c.space);
    const srcAt = p.addr(s, this.rows * rowBytes, 'read');
    const pieces = this.positions.map((pos, r) => ({ dst: c.ptr + (kvOffset(g, layer, this.slots[r]) + pos * g.kvDim) * eb, src: srcAt + r * rowBytes }));
    if (eb === 4) {
      this.copyRows(p, c, rowBytes, pieces);
      return;
    }
    // f16: one rounding op per run of rows that lie one after another in both tensors.
    for (let i = 0; i < pieces.length; ) {
      let j = i + 1;
      while (j < pieces.length && pieces[j].dst === pieces[j - 1].dst + g.kvDim * 2 && pieces[j].src === pieces[j - 1].src + rowBytes) j++;
      this.op(p, OP.STORE_F16, c, pieces[i].dst, pieces[i].src, (j - i) * g.kvDim);
      i = j;
    }
  }

  /** A KV cache: f32, or f16 (each value the nearest f16: half the memory). */
  private kvCache(t: Tensor, what: string): WasmTensor {
    const c = this.be.own(t);
    if (c.dtype !== 'f32' && c.dtype !== 'f16') throw new ArgumentError(`${what}: ${c.label} must be an f32 or f16 KV cache, is ${c.dtype}`);
    return c;
  }

  attention(out: Tensor, q: Tensor, keys: Tensor, values: Tensor, layer: number, headSize: number): void {
    const o = this.f32(out, 'attention'), qi = this.f32(q, 'attention');
    const kc = this.kvCache(keys, 'attention'), vc = this.kvCache(values, 'attention');
    if (vc.dtype !== kc.dtype) throw new ArgumentError(`attention: ${kc.label} is ${kc.dtype} but ${vc.label} is ${vc.dtype}`);
    const g = checkRowsInCache(kc, layer, this.layout, 'attention');
    const dim = colsOf(qi);
    const rows = this.rowFlow.flow(o, qi, 'attention');
    const nHeads = dim / headSize, nKv = g.kvDim / headSize;
    if (!Number.isInteger(nHeads) || !Number.isInteger(nKv) || nHeads % nKv !== 0) {
      throw new ArgumentError(`attention: head size ${headSize} does not fit dim ${dim} and kv_dim ${g.kvDim}`);
    }
    if (kc.space !== vc.space) {
      throw new BackendError(`attention: ${kc.label} and ${vc.label} lie in different WebAssembly memories; give them the same TensorDesc.colocate group`);
    }
    const eb = kc.dtype === 'f16' ? 2 : 4;
    const p = this.in(kc.space);
    const stride = Math.ceil((g.seqLen * 4) / 64) * 64 + 64;
    const scratch = p.space.attScratch.ensure(stride * this.be.threads);
    const layerOff = kvOffset(g, layer, 0) * eb;
    const qAt = p.addr(qi, rows * dim * 4, 'read');
    const base = this.op(p, OP.ATTENTION, o, p.addr(o, rows * dim * 4, 'write'), qAt, kc.ptr + layerOff, vc.ptr + layerOff, 0, rows, nHeads, nKv, headSize, scratch, stride, eb === 2 ? 1 : 0);
    // Per row: the last position it attends to, and its slot's byte offset from slot 0.
    p.useTable(`attention-rows,${g.seqLen},${g.kvDim},${eb},${rows}`, base + 5, () => {
      const tab = new Int32Array(rows * 2);
      for (let r = 0; r < rows; r++) {
        tab[2 * r] = this.positions[r];
        tab[2 * r + 1] = this.slots[r] * g.seqLen * g.kvDim * eb;
      }
      return tab;
    });
  }

  swiglu(out: Tensor, gate: Tensor, up: Tensor): void {
    const o = this.f32(out, 'swiglu');
    const g = this.f32(gate, 'swiglu'), u = this.f32(up, 'swiglu');
    const count = this.rowFlow.flow(o, g, 'swiglu') * colsOf(o);
    const p = this.in(o.space);
    const gAt = p.addr(g, count * 4, 'read'), uAt = p.addr(u, count * 4, 'read');
    this.op(p, OP.SWIGLU, o, p.addr(o, count * 4, 'write'), gAt, uAt, count);
  }

  add(out: Tensor, a: Tensor, b: Tensor): void {
    const o = this.f32(out, 'add');
    const x = this.f32(a, 'add'), y = this.f32(b, 'add');
    const count = this.rowFlow.flow(o, x, 'add') * colsOf(o);
    const p = this.in(o.space);
    const xAt = p.addr(x, count * 4, 'read'), yAt = p.addr(y, count * 4, 'read');
    this.op(p, OP.ADD, o, p.addr(o, count * 4, 'write'), xAt, yAt, count);
  }

  gather(out: Tensor, x: Tensor, rows: ArrayLike<number>): void {
    const o = this.f32(out, 'gather'), xi = this.f32(x, 'gather');
    const n = colsOf(xi);
    if (colsOf(o) !== n) throw new ArgumentError(`gather: ${o.label} has ${colsOf(o)} columns, ${xi.label} ${n}`);
    const from = this.rowFlow.of(xi);
    const which = checkGatherRows(rows, from, rowsOf(o), o.label);
    if (o === xi && which.some((r, i) => r !== i)) throw new ArgumentError('gather: out may not alias x unless the rows stay in place');
    this.rowFlow.set(o, which.length, 'gather');
    const p = this.in(o.space);
    const xAt = p.addr(xi, from * n * 4, 'read');
    const oAt = p.addr(o, which.length * n * 4, 'write');
    this.copyRows(p, o, n * 4, which.map((r, i) => ({ dst: oAt + i * n * 4, src: xAt + r * n * 4 })));
  }

  argmax(out: Tensor, logits: Tensor): void {
    const o = this.be.own(out), l = this.f32(logits, 'argmax');
    const rows = this.rowFlow.of(l);
    if (o.dtype !== 'i32' || o.elements < rows) throw new ArgumentError(`argmax: ${o.label} must be i32 with room for ${rows} ids`);
    const p = this.in(l.space);
    const lAt = p.addr(l, rows * colsOf(l) * 4, 'read');
    this.op(p, OP.ARGMAX, o, p.addr(o, rows * 4, 'write'), lAt, colsOf(l), rows);
  }

  read(t: Tensor, count?: number): Promise<Float32Array | Int32Array> {
    if (this.submitted) throw new ArgumentError('read: this step was already submitted');
    this.be.own(t);
    return new Promise((resolve, reject) => this.reads.push(() => this.be.read(t, count).then(resolve, reject)));
  }

  submit(): void {
    if (this.submitted) throw new ArgumentError('this step was already submitted');
    this.submitted = true;
    if (this.programs.length > 0) this.be.run(this.programs, this.rows, this.embeds);
    for (const answer of this.reads) answer();
  }
}
