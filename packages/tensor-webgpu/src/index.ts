/// <reference types="@webgpu/types" />
export { WebGpuBackend, type WebGpuBackendOptions } from './backend.js';
