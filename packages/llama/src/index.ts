export { Llama } from './llama.js';
export type { LoadOptions, GenerateOptions, ChatOptions, ModelSource } from './llama.js';
export { Generation } from './generation.js';
export { Session } from './session.js';
export type { GeneratedToken, GenerationResult, GenerationTiming, StopReason } from './generation.js';
export type { BackendChoice, BackendName } from './backends.js';
export { forward } from './forward.js';
export { RamaError, FormatError, ArgumentError, BackendError, AbortError, NumericError } from '@rama/core';
export type { Backend } from '@rama/backend';
