/// <reference types="@webgpu/types" />
import { BackendError } from '@rama/backend';

/** What the backend needs from the environment: a device and what it can do. */
export interface AcquiredDevice {
  device: GPUDevice;
  description: string;
  /** Whether WGSL's dot4I8Packed may be used. */
  packedDot: boolean;
  /** Whether the adapter is a CPU implementation (SwiftShader, or a fallback adapter): picks the matmul kernels. */
  cpuAdapter: boolean;
}

/**
 * A CPU implementation of WebGPU: SwiftShader (vendor "google", architecture
 * "swiftshader"), or any adapter that says it is a fallback adapter (the
 * attribute moved from GPUAdapter to GPUAdapterInfo; both are checked).
 */
export function isCpuAdapter(info: Partial<GPUAdapterInfo> | undefined, adapter?: GPUAdapter): boolean {
  if (!info && !adapter) return false;
  const fallback = (adapter as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter || info?.isFallbackAdapter;
  const text = `${info?.vendor ?? ''} ${info?.architecture ?? ''} ${info?.device ?? ''} ${info?.description ?? ''}`.toLowerCase();
  return !!fallback || text.includes('swiftshader') || (info?.vendor === 'google' && info?.architecture === 'swiftshader');
}

// The object `create()` returns in Node must outlive every device made from it,
// or Dawn crashes (see shared NOTES.md). One per process, never released.
let nodeGpu: GPU | undefined;

const isNode = (): boolean =>
  typeof process !== 'undefined' && typeof process.versions === 'object' && !!process.versions?.node;

const NO_ADAPTER =
  'WebGPU: no adapter found (needs a GPU, or in Node a Vulkan driver such as SwiftShader: set VK_ICD_FILENAMES)';

// A variable specifier keeps bundlers from resolving Node-only modules in a browser build.
const importNode = <T>(spec: string): Promise<T> => import(/* @vite-ignore */ /* webpackIgnore: true */ spec) as Promise<T>;

/**
 * Asks a child process whether Dawn finds an adapter. Without one, Dawn
 * writes the Vulkan loader's complaints and its own (with a C++ source line)
 * straight to file descriptor 2, which JavaScript cannot redirect around a
 * call; a child's stderr can be captured instead. Returns what Dawn printed
 * there when it found no adapter, null when it found one, and undefined when
 * the child could not answer (then the caller asks Dawn in this process).
 */
async function dawnLogWithoutAdapter(spec: string): Promise<string | null | undefined> {
  try {
    const { spawn } = await importNode<typeof import('node:child_process')>('node:child_process');
    const { createRequire } = await importNode<typeof import('node:module')>('node:module');
    const { pathToFileURL } = await importNode<typeof import('node:url')>('node:url');
    const entry = pathToFileURL(createRequire(import.meta.url).resolve(spec)).href;
    const code = `const { create } = await import(${JSON.stringify(entry)});
const adapter = await create([]).requestAdapter();
process.stdout.write(adapter ? 'adapter' : 'none', () => process.exit(0));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let log = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
    // A child that hangs must not hang the caller: it is then asked in-process, as before.
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const exit = await new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(null));
      child.on('close', resolve);
    });
    clearTimeout(timer);
    if (exit !== 0) return undefined;
    return out === 'none' ? log : out === 'adapter' ? null : undefined;
  } catch {
    return undefined;
  }
}

async function gpuEntryPoint(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (isNode()) {
    if (!nodeGpu) {
      const spec = 'webgpu';
      const dawnLog = await dawnLogWithoutAdapter(spec);
      if (typeof dawnLog === 'string') throw new BackendError(NO_ADAPTER, { cause: new Error(dawnLog.trim()) });
      let mod: { create: (flags: string[]) => GPU; globals: object };
      try {
        mod = await importNode(spec);
      } catch (e) {
        throw new BackendError(`WebGPU: cannot load the "webgpu" package (Dawn for Node): ${(e as Error).message}`, { cause: e });
      }
      Object.assign(globalThis, mod.globals);
      // Exact kernel timestamps (Dawn rounds them to ~65 us by default, a browser's privacy measure).
      nodeGpu = mod.create(['disable-dawn-features=timestamp_quantization']);
    }
    return nodeGpu;
  }
  throw new BackendError('WebGPU: this environment has no navigator.gpu and is not Node; pass a GPUDevice');
}

const WANTED_LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage'] as const;

// Backends made without a device share one per power preference: creating and
// destroying a Dawn device leaks ~15 MB each time (SwiftShader, measured), and
// sharing lets them share compiled pipelines too. A lost device is forgotten.
const shared = new Map<string, Promise<AcquiredDevice>>();

export async function acquireDevice(opts: {
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
}): Promise<AcquiredDevice> {
  if (opts.device) return requestOrWrap(opts);
  const key = opts.powerPreference ?? '';
  let p = shared.get(key);
  if (!p) {
    p = requestOrWrap(opts);
    shared.set(key, p);
    p.then(
      (a) => a.device.lost.then(() => shared.get(key) === p && shared.delete(key)),
      () => shared.get(key) === p && shared.delete(key),
    );
  }
  return p;
}

async function requestOrWrap(opts: { device?: GPUDevice; powerPreference?: GPUPowerPreference }): Promise<AcquiredDevice> {
  if (opts.device) {
    const wgsl = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu?.wgslLanguageFeatures ?? nodeGpu?.wgslLanguageFeatures;
    return {
      device: opts.device,
      description: `WebGPU (caller's device${opts.device.label ? `: ${opts.device.label}` : ''})`,
      packedDot: !!wgsl?.has('packed_4x8_integer_dot_product'),
      // GPUDevice.adapterInfo is newer than some implementations: without it, assume a GPU.
      cpuAdapter: isCpuAdapter((opts.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo),
    };
  }
  const gpu = await gpuEntryPoint();
  const adapter = await gpu.requestAdapter(opts.powerPreference ? { powerPreference: opts.powerPreference } : undefined);
  if (!adapter) throw new BackendError(NO_ADAPTER);
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) requiredLimits[k] = adapter.limits[k];
  // Timestamp queries cost nothing until used; a backend with `profile: true` uses them.
  const requiredFeatures: GPUFeatureName[] = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (e) {
    throw new BackendError(`WebGPU: requestDevice failed: ${(e as Error).message}`, { cause: e });
  }
  const info = adapter.info;
  const name = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ');
  return {
    device,
    description: `WebGPU (${name || 'unknown adapter'})`,
    packedDot: gpu.wgslLanguageFeatures?.has('packed_4x8_integer_dot_product') ?? false,
    cpuAdapter: isCpuAdapter(info, adapter),
  };
}
