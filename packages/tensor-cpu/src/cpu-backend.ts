import { ArgumentError, type BackendOptions } from '@rama/backend';
import { ScalarCpuBackend } from './scalar-backend.js';
import { WasmCpuBackend } from './wasm-backend.js';

export interface CpuBackendOptions extends BackendOptions {
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
  async create(opts: CpuBackendOptions = {}): Promise<WasmCpuBackend | ScalarCpuBackend> {
    const { kernels = 'wasm', ...rest } = opts;
    if (kernels === 'scalar') return new ScalarCpuBackend(rest);
    if (kernels !== 'wasm') throw new ArgumentError(`kernels must be "wasm" or "scalar", got ${JSON.stringify(kernels)}`);
    return WasmCpuBackend.create(rest);
  },
};
