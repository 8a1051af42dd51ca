import { describeBackendConformance } from '@rama/backend/testing';
import { CpuBackend } from './index.js';

const reference = () => CpuBackend.create({ kernels: 'scalar', maxRows: 8 });

describeBackendConformance('cpu wasm, 1 thread', () => CpuBackend.create({ threads: 1, maxRows: 8 }), reference);
describeBackendConformance('cpu wasm, 2 threads', () => CpuBackend.create({ threads: 2, maxRows: 8 }), reference);
describeBackendConformance('cpu wasm, 3 threads', () => CpuBackend.create({ threads: 3, maxRows: 8 }), reference);
