export { WebGpuBackend, type WebGpuBackendOptions } from './backend.js';
