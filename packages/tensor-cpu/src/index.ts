export { CpuBackend } from './cpu-backend.js';
export type { CpuBackendOptions } from './cpu-backend.js';
export { WasmCpuBackend } from './wasm-backend.js';
export type { WasmCpuBackendOptions } from './wasm-backend.js';
export { ScalarCpuBackend } from './scalar-backend.js';
