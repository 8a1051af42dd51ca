export type { Backend, Step, TensorFill, BackendOptions } from './backend.js';
export type { DType, Tensor, TensorDesc } from './tensor.js';
export { byteLengthOf, elementCount, rowsOf, colsOf } from './tensor.js';
export { RamaError, FormatError, ArgumentError, BackendError, AbortError, NumericError } from './errors.js';
