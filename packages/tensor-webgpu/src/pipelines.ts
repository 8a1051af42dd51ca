/// <reference types="@webgpu/types" />
import { BackendError } from '@rama/backend';
import type { KernelDef } from './kernels/common.js';

export interface Compiled {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

const COMPUTE = 0x4;

function numbered(src: string): string {
  return src
    .split('\n')
    .map((l, i) => `${String(i + 1).padStart(4)}| ${l}`)
    .join('\n');
}

/** Compiles one kernel; a WGSL error throws a BackendError carrying the messages and the numbered source. */
export async function compileKernel(device: GPUDevice, def: KernelDef): Promise<Compiled> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: def.wgsl, label: def.name });
  const scope = device.popErrorScope();
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  const scopeError = await scope;
  if (errors.length || scopeError) {
    const msgs = errors.length
      ? errors.map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}`).join('\n')
      : `  ${scopeError!.message}`;
    throw new BackendError(`WebGPU: kernel "${def.name}" failed to compile:\n${msgs}\nWGSL source:\n${numbered(def.wgsl)}`);
  }
  const layout = device.createBindGroupLayout({
    label: def.name,
    entries: [
      // The step buffer (rows, positions, slots: see STEP_WGSL), then the dispatch's params.
      { binding: 0, visibility: COMPUTE, buffer: { type: 'read-only-storage' } },
      { binding: 1, visibility: COMPUTE, buffer: { type: 'uniform' } },
      ...def.storage.map((a, i) => ({
        binding: i + 2,
        visibility: COMPUTE,
        buffer: { type: a === 'read' ? ('read-only-storage' as const) : ('storage' as const) },
      })),
    ],
  });
  try {
    const pipeline = await device.createComputePipelineAsync({
      label: def.name,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    return { pipeline, layout };
  } catch (e) {
    throw new BackendError(`WebGPU: pipeline "${def.name}" failed: ${(e as Error).message}\nWGSL source:\n${numbered(def.wgsl)}`, { cause: e });
  }
}
