export type { Backend, Step, StepRows, TensorFill, BackendOptions } from './backend.js';
export { contiguousRows } from './backend.js';
export type { DType, Tensor, TensorDesc } from './tensor.js';
export { byteLengthOf, elementCount, rowsOf, colsOf } from './tensor.js';
export { RamaError, FormatError, ArgumentError, BackendError, AbortError, NumericError } from './errors.js';
export { checkStepRows, checkRowsInCache, kvGeometry, kvOffset, RowFlow } from './rows.js';
export type { CheckedRows, KVGeometry } from './rows.js';
