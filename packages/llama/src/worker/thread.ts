/**
 * The engine worker's script: serves one model on the worker's global scope.
 * `createWorkerLlama` starts it as a module worker; a bundler (Vite, webpack)
 * bundles it from the `new Worker(new URL('./thread.js', import.meta.url))`
 * in index.ts.
 */
import { serve, type Endpoint } from './serve.js';

serve(globalThis as unknown as Endpoint);
