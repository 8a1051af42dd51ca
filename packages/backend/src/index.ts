export type { Backend, Step, StepRows, TensorFill, BackendOptions } from './backend.js';
export { contiguousRows } from './backend.js';
export type { DType, DTypes, DTypeKind, DTypeTraits, Tensor, TensorDesc } from './tensor.js';
export { byteLengthOf, checkSupported, dtypeTraits, elementCount, isDType, registerDType, registeredDTypes, rowsOf, colsOf } from './tensor.js';
// The error classes live in @rama/core; re-exported so existing imports keep working.
export { RamaError, FormatError, ArgumentError, BackendError, AbortError, NumericError } from '@rama/core';
export { freqFactorsKey, ropeFrequencies } from './rope.js';
export { checkGatherRows, checkStepRows, checkRowsInCache, kvGeometry, kvOffset, RowFlow } from './rows.js';
export type { CheckedRows, KVGeometry } from './rows.js';
export { bf16ToF32, dequantizeQ4_0, f16Table, f16ToF32, f32ToF16, q4_0Int, q4_0Scale, Q4_0_BLOCK, Q4_0_BYTES } from './elements.js';
export {
  dequantizeQ4_K, dequantizeQ5_K, dequantizeQ6_K, kD, kDmin, kMin, kquantInts, kScale,
  q4_kInt, q5_kInt, q6_kD, q6_kInt, q6_kScale, QK_K, Q4_K_BYTES, Q5_K_BYTES, Q6_K_BYTES,
} from './elements.js';
