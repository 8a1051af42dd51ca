/**
 * The WebAssembly side of the CPU backend: compiling the kernels, the shared
 * memory, and the worker pool that runs them on every core.
 *
 * Threads: the calling thread is thread 0; `threads - 1` workers each
 * instantiate the same module over the same shared memory and sit in the
 * module's `workerLoop` (spinning briefly, then sleeping in atomic.wait).
 * A Step's ops go into the memory as one program; `launch` wakes the workers
 * and every thread runs the program, with a barrier between ops.
 */
import { BackendError } from '@rama/backend';
import { KERNELS_MEMORY_FLAGS_AT, KERNELS_SHARED_WASM_GZIP } from '../generated/kernels.wasm.js';
import { workersRefusedNotice } from './isolation.js';

/** The module's exports (see assembly/kernels.ts). */
export interface KernelExports {
  launch(ctl: number, program: number, count: number, solo: number, canWait: number): void;
  workerLoop(ctl: number, tid: number, epoch: number): void;
  interleaveQ80(wq: number, ws: number, cols: number, d: number, gs: number, tmp: number): void;
  wasmExp(x: number): number;
}

/** Control block layout, as assembly/kernels.ts defines it. */
export const CTL = {
  EPOCH: 0,
  SLEEPERS: 4,
  SHUTDOWN: 8,
  NTHREADS: 12,
  PROGRAM: 16,
  FAILED: 20,
  IDLE_SPIN: 24,
  BAR_SPIN: 28,
  COUNT: 32,
  EXP_FLAG: 36,
  BAR_GEN: 128,
  BYTES: 192,
} as const;

export const OP_WORDS = 16;
export const OP = {
  COPY: 1, EMBED: 2, RMSNORM: 3, QUANTIZE: 4, MATMUL_F32: 5, MATMUL_Q80: 6,
  ROPE: 7, ATTENTION: 8, SWIGLU: 9, ADD: 10, ARGMAX: 11, MATMUL_HALF: 12, MATMUL_Q40: 13,
  STORE_F16: 20, EMBED_PACKED: 18,
  MATMUL_Q4K: 14, MATMUL_Q5K: 15, MATMUL_Q6K: 16, QUANTIZE_K: 17,
} as const;

/** WebAssembly pages are 64 KiB; 32-bit memories hold at most 65536 of them (4 GiB). */
export const PAGE = 65536;
export const MAX_PAGES = 65536;

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

function decodeBase64(b64: string): Uint8Array<ArrayBuffer> {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Inflates gzip bytes with the platform's DecompressionStream (browsers, workers, Node 18+). */
async function gunzip(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  const inflated = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(inflated).arrayBuffer());
}

const modules = new Map<boolean, Promise<WebAssembly.Module>>();

/** The compiled kernels, shared-memory flavour or not (compiled once per process). */
export function kernelsModule(shared: boolean): Promise<WebAssembly.Module> {
  let m = modules.get(shared);
  if (!m) {
    m = gunzip(decodeBase64(KERNELS_SHARED_WASM_GZIP)).then((bytes) => {
      // The unshared kernels are the same bytes with the memory import's limits flags 0x01 instead of 0x03.
      if (!shared) bytes[KERNELS_MEMORY_FLAGS_AT] = 0x01;
      return WebAssembly.compile(bytes);
    });
    modules.set(shared, m);
  }
  return m;
}

/** Whether this thread may block in Atomics.wait (not a browser's main thread). */
export function canBlock(): boolean {
  if (typeof SharedArrayBuffer === 'undefined') return false;
  try {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether shared WebAssembly memory is available (Node, or a cross-origin isolated page). */
export function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer === 'undefined') return false;
  if (!isNode && (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === false) return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

/**
 * The hardware threads this machine offers (os.availableParallelism() in Node,
 * navigator.hardwareConcurrency in a browser): the most threads a backend may
 * use. More only slow each step down (a thread without a core holds the others
 * at every barrier) and cost memory.
 */
export async function hardwareThreads(): Promise<number> {
  if (isNode) {
    const os = await import('node:os');
    return Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
  }
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return Math.max(1, n ?? 1);
}

/**
 * The default thread count: every core. On a browser's main thread it is 1:
 * that thread cannot sleep in Atomics.wait, so as thread 0 it would spin at
 * every barrier, freezing the page (and, measured in Chromium, running the
 * first generation far slower than one thread does). Pass `threads`
 * explicitly, or run the model in a Web Worker, to use every core there.
 */
export async function defaultThreads(): Promise<number> {
  if (!isNode && !canBlock()) return 1;
  return hardwareThreads();
}

/**
 * Makes a memory: as large as 32-bit WebAssembly allows (or `maxPages`),
 * committed as it grows. Returns it with its maximum size in pages.
 */
export function createMemory(shared: boolean, initialPages: number, maxPages = MAX_PAGES): { memory: WebAssembly.Memory; maxPages: number } {
  let lastError: unknown;
  // A smaller maximum where a browser will not reserve 4 GiB of address space.
  for (const maximum of [...new Set([maxPages, 32768, 16384].map((m) => Math.min(m, maxPages)))]) {
    try {
      return { memory: new WebAssembly.Memory({ initial: initialPages, maximum, shared }), maxPages: maximum };
    } catch (e) {
      lastError = e;
    }
  }
  throw new BackendError('cannot create the WebAssembly memory for the CPU backend', { cause: lastError });
}

export function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const instance = new WebAssembly.Instance(module, { env: { memory, exp: Math.exp } });
  return instance.exports as unknown as KernelExports;
}

/**
 * The worker's code, run from a string (no file to resolve, so it works the
 * same from sources, from dist/, and in a browser via a Blob URL). It
 * instantiates the module over the shared memory and stays in workerLoop
 * until the backend shuts it down. A trap sets FAILED so that no thread waits
 * for it forever.
 */
const WORKER_SOURCE = `
function start(d, post) {
  const { module, memory, ctl, tid, epoch } = d;
  let exports;
  try {
    exports = new WebAssembly.Instance(module, { env: { memory, exp: Math.exp } }).exports;
  } catch (e) {
    post({ error: String((e && e.stack) || e) });
    return;
  }
  post({ ready: true });
  try {
    exports.workerLoop(ctl, tid, epoch);
  } catch (e) {
    const i32 = new Int32Array(memory.buffer);
    Atomics.store(i32, (ctl + ${CTL.FAILED}) >>> 2, 1);
    Atomics.notify(i32, (ctl + ${CTL.BAR_GEN}) >>> 2);
    post({ error: String((e && e.stack) || e) });
  }
}
if (!(typeof process !== 'undefined' && process.versions && process.versions.node)) {
  self.onmessage = (ev) => start(ev.data, (m) => self.postMessage(m));
} else {
  // import(), not require: this also runs where the code is parsed as an ES module
  import('node:worker_threads').then(({ parentPort, workerData }) => start(workerData, (m) => parentPort.postMessage(m)));
}
`;

interface PoolWorker {
  terminate(): void;
}

/** The workers of one backend. */
export class WorkerPool {
  private workers: PoolWorker[] = [];
  /** The first error a worker reported (a trap in a kernel: a bug). */
  error: string | undefined;

  static async start(module: WebAssembly.Module, memory: WebAssembly.Memory, ctl: number, count: number): Promise<WorkerPool> {
    const pool = new WorkerPool();
    try {
      const ready: Promise<void>[] = [];
      for (let tid = 1; tid <= count; tid++) ready.push(pool.spawn({ module, memory, ctl, tid, epoch: 0 }));
      await Promise.all(ready);
    } catch (e) {
      pool.terminate();
      throw e instanceof BackendError ? e : new BackendError(`cannot start the CPU backend's worker threads: ${String(e)}`, { cause: e });
    }
    return pool;
  }

  private async spawn(data: { module: WebAssembly.Module; memory: WebAssembly.Memory; ctl: number; tid: number; epoch: number }): Promise<void> {
    const onMessage = (m: { ready?: boolean; error?: string }, resolve: () => void, reject: (e: Error) => void): void => {
      if (m.ready) resolve();
      else if (m.error) {
        this.error ??= m.error;
        reject(new BackendError(`CPU backend worker ${data.tid} failed: ${m.error}`));
      }
    };
    if (isNode) {
      const { Worker } = await import('node:worker_threads');
      // Not the parent's execArgv (the default): its module type (--input-type=module made this
      // source an ES module), loaders and preloads are for the app's code, not this self-contained script.
      const w = new Worker(WORKER_SOURCE, { eval: true, workerData: data, execArgv: [] });
      this.workers.push(w);
      await new Promise<void>((resolve, reject) => {
        // Once started, a worker never keeps the process alive (unref after
        // the listeners: adding one refs the port again).
        w.on('message', (m) => onMessage(m, () => (w.unref(), resolve()), reject));
        w.on('error', (e) => {
          this.error ??= String(e);
          reject(e);
        });
      });
    } else {
      const url = URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
      const w = new Worker(url);
      this.workers.push(w);
      await new Promise<void>((resolve, reject) => {
        w.onmessage = (ev) => onMessage(ev.data, resolve, reject);
        // A worker the browser refuses (a CSP without blob: in worker-src) fires an error event with no message.
        w.onerror = (ev) => reject(new BackendError(`CPU backend worker ${data.tid} failed: ${ev.message || workersRefusedNotice([])}`));
        w.postMessage(data);
      });
      URL.revokeObjectURL(url);
    }
  }

  terminate(): void {
    for (const w of this.workers) w.terminate();
    this.workers = [];
  }
}
