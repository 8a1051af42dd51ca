/// <reference types="@webgpu/types" preserve="true" />
export { WebGpuBackend, type WebGpuBackendOptions } from './backend.js';
export type { MatmulKernels } from './kernels/common.js';
export type { KernelTime } from './profiler.js';
