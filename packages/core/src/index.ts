/**
 * @rama/core: what several Rama packages share and no backend owns, so that
 * dependencies point one way (core <- backend <- backends, core <- checkpoint,
 * tokenizer, sampler, quant-q80 <- llama). Browser-safe; Node-only code is in
 * `@rama/core/node`.
 */
export { RamaError, FormatError, ArgumentError, BackendError, AbortError, NumericError } from './errors.js';
export { softmax } from './numerics.js';
export { DEFAULT_CHUNK, checkChunkSize, fmtBytes, type ByteSource } from './bytes.js';
