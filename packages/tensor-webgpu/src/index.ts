/// <reference types="@webgpu/types" />
export { WebGpuBackend, type WebGpuBackendOptions } from './backend.js';
export type { MatmulKernels } from './kernels/common.js';
