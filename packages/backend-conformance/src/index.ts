export { describeBackendConformance, compareOutput } from './conformance.js';
export { conformanceCases, rng, type ConformanceCase, type CaseTensor, type Bound } from './cases.js';
