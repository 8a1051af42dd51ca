export { Rng } from './rng.js';
export { Sampler, argmax, softmax } from './sampler.js';
export type { SamplerOptions } from './sampler.js';
