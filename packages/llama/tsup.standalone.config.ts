import { defineConfig } from 'tsup';

/**
 * dist/worker/thread.standalone.js: the engine worker's script with every
 * dependency inside, for pages without a bundler, given to createWorkerLlama
 * as `worker: url`. Node-only modules stay external: they are only imported
 * in Node.
 */
export default defineConfig({
  entry: { 'worker/thread.standalone': 'src/worker/thread.ts' },
  format: ['esm'],
  platform: 'browser',
  target: 'es2022',
  splitting: false,
  sourcemap: true,
  minify: true,
  clean: false,
  dts: false,
  noExternal: [/./],
  external: ['webgpu', 'worker_threads', /^node:/],
  esbuildOptions(options) {
    // Workspace packages from their sources: this file does not depend on their dist/ being built first.
    options.conditions = ['@rama/source', 'browser', 'import', 'default'];
  },
});
