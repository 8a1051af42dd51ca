export { Rng } from './rng.js';
export { Sampler, argmax, softmax, checkFinite, checkSamplerOptions } from './sampler.js';
export type { SamplerOptions } from './sampler.js';
