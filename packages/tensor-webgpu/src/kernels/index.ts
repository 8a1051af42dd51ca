import type { KernelDef } from './common.js';
import { addKernels } from './add.js';
import { argmaxKernels } from './argmax.js';
import { attentionKernels } from './attention.js';
import { embedKernels } from './embed.js';
import { matmulKernels } from './matmul.js';
import { matmulQ8Kernels } from './matmulQ8.js';
import { matmulKKernels } from './matmulK.js';
import { rmsnormKernels } from './rmsnorm.js';
import { ropeKernels } from './rope.js';
import { storeKVKernels } from './storeKV.js';
import { swigluKernels } from './swiglu.js';

/** Every program the backend compiles at creation (gather, and storeKV into an f32 cache, are buffer copies). */
export function allKernels(packedDot: boolean): KernelDef[] {
  return [
    ...embedKernels,
    ...rmsnormKernels,
    ...matmulKernels,
    ...matmulQ8Kernels(packedDot),
    ...matmulKKernels(packedDot),
    ...ropeKernels,
    ...storeKVKernels,
    ...attentionKernels,
    ...swigluKernels,
    ...addKernels,
    ...argmaxKernels,
  ];
}

export { embed } from './embed.js';
export { rmsnorm } from './rmsnorm.js';
export { matmul } from './matmul.js';
export { rope } from './rope.js';
export { storeKV } from './storeKV.js';
export { attention } from './attention.js';
export { swiglu } from './swiglu.js';
export { add } from './add.js';
export { gather } from './gather.js';
export { argmax } from './argmax.js';
