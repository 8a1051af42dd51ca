import { describeBackendConformance } from '@rama/backend/testing';
import { CpuBackend } from './index.js';

const reference = () => CpuBackend.create({ kernels: 'scalar', maxRows: 8 });

describeBackendConformance('cpu wasm, 1 thread', () => CpuBackend.create({ threads: 1, maxRows: 8 }), reference);
describeBackendConformance('cpu wasm, 2 threads', () => CpuBackend.create({ threads: 2, maxRows: 8 }), reference);
describeBackendConformance('cpu wasm, 3 threads', () => CpuBackend.create({ threads: 3, maxRows: 8 }), reference);
// Every tensor, program and scratch above 2 GiB, where addresses no longer fit a signed int32.
describeBackendConformance('cpu wasm, 2 threads, above 2 GiB', async () => {
  const be = await CpuBackend.create({ threads: 2, maxRows: 8 });
  be.alloc({ shape: [2 ** 29], dtype: 'f32', label: 'the first 2 GiB (never touched: address space, not memory)' });
  return be;
}, reference);
