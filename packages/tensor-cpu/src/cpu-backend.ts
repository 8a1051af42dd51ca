import { ArgumentError } from '@rama/backend';
import { ScalarCpuBackend } from './scalar-backend.js';
import { inBrowser, isolationNotice, onBrowserMainThread, probeBlobWorkers, wasmBlockedNotice } from './wasm/isolation.js';
import { hardwareThreads, sharedMemoryAvailable } from './wasm/runtime.js';
import { WasmCpuBackend, type WasmCpuBackendOptions } from './wasm-backend.js';

/** Options of `CpuBackend.create`: the WebAssembly backend's, plus which kernels. */
export interface CpuBackendOptions extends WasmCpuBackendOptions {
  /**
   * Threads that run each step, the caller's included (default: every core,
   * os.availableParallelism() or navigator.hardwareConcurrency, which is also
   * the most it may be). Without SharedArrayBuffer (a page that is not
   * cross-origin isolated) it is 1.
   */
  threads?: number;
  /**
   * "wasm" (default): WebAssembly SIMD kernels on a thread pool.
   * "scalar": the plain TypeScript reference kernels, one thread.
   */
  kernels?: 'wasm' | 'scalar';
}

/** Makes the CPU backend: WebAssembly SIMD on every core, or the scalar reference. */
export const CpuBackend = {
  /**
   * The WebAssembly backend (or the scalar one with `kernels: 'scalar'`). In a browser that cannot run
   * threads or WebAssembly, it falls back (one thread, or the scalar kernels) and says why in `notice`.
   */
  async create(opts: CpuBackendOptions = {}): Promise<WasmCpuBackend | ScalarCpuBackend> {
    const { kernels = 'wasm', ...rest } = opts;
    if (kernels === 'scalar') return new ScalarCpuBackend(rest);
    if (kernels !== 'wasm') throw new ArgumentError(`kernels must be "wasm" or "scalar", got ${JSON.stringify(kernels)}`);
    // In a browser, what threads need (cross-origin isolation, a CSP that allows blob: workers) is checked
    // first: when it is missing the backend runs on one thread and says why, instead of failing.
    let notice: string | undefined;
    let threads = rest.threads;
    if (inBrowser()) {
      const wanted = threads ?? (onBrowserMainThread() ? 1 : await hardwareThreads());
      if (wanted > 1 && !sharedMemoryAvailable()) notice = isolationNotice();
      else if (wanted > 1) {
        notice = await probeBlobWorkers();
        if (notice) threads = 1;
      }
    }
    let backend: WasmCpuBackend | ScalarCpuBackend;
    try {
      backend = await WasmCpuBackend.create({ ...rest, threads });
    } catch (e) {
      const blocked = inBrowser() ? wasmBlockedNotice(e) : undefined;
      if (!blocked) throw e;
      backend = new ScalarCpuBackend({ maxRows: rest.maxRows });
      notice = blocked;
    }
    if (notice) Object.defineProperty(backend, 'notice', { value: notice, enumerable: true });
    return backend;
  },
};
