import { describeBackendConformance } from '@rama/backend-conformance';
import { ScalarCpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from './index.js';

// The scalar CPU backend (the reference kernels) is what every case is compared against.
const reference = async () => new ScalarCpuBackend({ maxRows: 8 });

describeBackendConformance('webgpu', () => WebGpuBackend.create({ maxRows: 8 }), reference);
describeBackendConformance('webgpu, 64 KiB bindings', () => WebGpuBackend.create({ maxRows: 8, maxBindingSize: 64 << 10 }), reference);
// The workgroup matmul kernels (the default on a GPU; SwiftShader defaults to 'rows').
describeBackendConformance('webgpu, workgroup matmuls', () => WebGpuBackend.create({ maxRows: 8, matmulKernels: 'workgroups' }), reference);
describeBackendConformance(
  'webgpu, workgroup matmuls, 64 KiB bindings',
  () => WebGpuBackend.create({ maxRows: 8, maxBindingSize: 64 << 10, matmulKernels: 'workgroups' }),
  reference,
);
