/**
 * Turns the `backend` option into a Backend: a name, "auto", or an instance
 * the caller made (and keeps owning).
 *
 * @rama/tensor-webgpu is an optional peer dependency (it pulls in Dawn, the
 * `webgpu` package, for Node): it is imported only when WebGPU is asked for,
 * and when it is not installed "webgpu" is a BackendError saying so and
 * "auto" runs on the CPU.
 */
import type { Backend } from '@rama/backend';
import { ArgumentError, BackendError } from '@rama/core';
import { CpuBackend } from '@rama/tensor-cpu';

/** Backends by name: `auto` is WebGPU when an adapter exists, else the CPU. */
export type BackendName = 'cpu' | 'webgpu' | 'auto';
/** A backend by name, or one you made (shared between models, or with your own options). */
export type BackendChoice = BackendName | Backend;

/** What createBackend needs of @rama/tensor-webgpu. */
export interface WebGpuModule {
  WebGpuBackend: { create(opts: Record<string, unknown>): Promise<Backend> };
}

export interface BackendSettings {
  /** Positions per batch when reading a prompt. */
  maxRows: number;
  /** CPU worker threads (CPU backend only; default: every core). */
  threads?: number;
  /** Passed to WebGpuBackend.create (e.g. a GPUDevice, or a forced binding limit). */
  webgpu?: Record<string, unknown>;
  /** Loads @rama/tensor-webgpu (default: a dynamic import). Tests replace it to play a missing package. */
  importWebGpu?: () => Promise<WebGpuModule>;
}

export const WEBGPU_PACKAGE = '@rama/tensor-webgpu';

// Loaded on demand so CPU-only apps never load the WebGPU package.
const importWebGpuPackage = (): Promise<WebGpuModule> => import('@rama/tensor-webgpu') as Promise<WebGpuModule>;

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

/** Whether an import failed because the package itself is not installed (not because something inside it failed to load). */
export function isMissingPackage(e: unknown, pkg: string): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  const message = typeof err?.message === 'string' ? err.message : String(e);
  if (!message.includes(pkg)) return false;
  // Node: ERR_MODULE_NOT_FOUND / MODULE_NOT_FOUND; Vite/Vitest and bundlers: "Failed to resolve import", "Cannot find module/package".
  return (
    err?.code === 'ERR_MODULE_NOT_FOUND' ||
    err?.code === 'MODULE_NOT_FOUND' ||
    /Cannot find (module|package)|Failed to (resolve|load)|Could not resolve/i.test(message)
  );
}

async function createWebGpu(s: BackendSettings): Promise<Backend> {
  let mod: WebGpuModule;
  try {
    mod = await (s.importWebGpu ?? importWebGpuPackage)();
  } catch (e) {
    if (isMissingPackage(e, WEBGPU_PACKAGE)) {
      throw new BackendError(
        `the WebGPU backend needs the ${WEBGPU_PACKAGE} package, which is not installed (it is an optional peer dependency of @rama/llama): install it (npm install ${WEBGPU_PACKAGE}), or use backend: "cpu"`,
        { cause: e },
      );
    }
    throw new BackendError(`cannot load ${WEBGPU_PACKAGE}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  return mod.WebGpuBackend.create({ maxRows: s.maxRows, ...s.webgpu });
}
