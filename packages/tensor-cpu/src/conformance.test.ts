import { vi } from 'vitest';
import { describeBackendConformance } from '@rama/backend-conformance';
import { CpuBackend } from './index.js';

// 3 threads (an odd split) also where the machine has fewer cores: these tests check results, not speed.
vi.mock('./wasm/runtime.js', async (importOriginal) => {
  const runtime = await importOriginal<typeof import('./wasm/runtime.js')>();
  return { ...runtime, hardwareThreads: async () => Math.max(3, await runtime.hardwareThreads()) };
});

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
// Several WebAssembly memories: tensors placed round-robin over three small ones, so every op meets
// operands in other memories (copied in and out of the memory that runs it), on 1 and 2 threads.
describeBackendConformance('cpu wasm, 1 thread, tensors spread over 3 memories', () =>
  CpuBackend.create({ threads: 1, maxRows: 8, maxMemoryBytes: 16 * 65536, spreadAcrossMemories: 3 }), reference);
describeBackendConformance('cpu wasm, 2 threads, tensors spread over 3 memories', () =>
  CpuBackend.create({ threads: 2, maxRows: 8, maxMemoryBytes: 16 * 65536, spreadAcrossMemories: 3 }), reference);
