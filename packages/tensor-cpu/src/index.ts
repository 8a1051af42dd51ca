export { CpuBackend } from './cpu-backend.js';
export type { CpuBackendOptions } from './cpu-backend.js';
