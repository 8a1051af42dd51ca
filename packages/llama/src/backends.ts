/**
 * Turns the `backend` option into a Backend: a name, "auto", or an instance
 * the caller made (and keeps owning).
 */
import { ArgumentError, BackendError, type Backend } from '@rama/backend';
import { CpuBackend } from '@rama/tensor-cpu';

export type BackendName = 'cpu' | 'webgpu' | 'auto';
export type BackendChoice = BackendName | Backend;

export interface BackendSettings {
  /** Positions per batch when reading a prompt. */
  maxRows: number;
  /** CPU worker threads (CPU backend only; default: every core). */
  threads?: number;
  /** Passed to WebGpuBackend.create (e.g. a GPUDevice, or a forced binding limit). */
  webgpu?: Record<string, unknown>;
}

export async function createBackend(choice: BackendChoice, s: BackendSettings): Promise<{ backend: Backend; owned: boolean }> {
  if (typeof choice === 'object' && choice !== null) return { backend: choice, owned: false };
  switch (choice) {
    case 'cpu':
      return { backend: await CpuBackend.create({ maxRows: s.maxRows, threads: s.threads } as never), owned: true };
    case 'webgpu':
      return { backend: await createWebGpu(s), owned: true };
    case 'auto':
      try {
        return { backend: await createWebGpu(s), owned: true };
      } catch (e) {
        if (!(e instanceof BackendError)) throw e;
        return createBackend('cpu', s);
      }
    default:
      throw new ArgumentError(`backend must be "cpu", "webgpu", "auto" or a Backend instance, got ${JSON.stringify(choice)}`);
  }
}

async function createWebGpu(s: BackendSettings): Promise<Backend> {
  // Loaded on demand so CPU-only apps never load the WebGPU package.
  const { WebGpuBackend } = await import('@rama/tensor-webgpu');
  return WebGpuBackend.create({ maxRows: s.maxRows, ...s.webgpu });
}
