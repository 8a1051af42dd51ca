import { defineConfig } from 'tsup';

// dist/rama-serve.js is the `rama-serve` executable (its #!/usr/bin/env node
// line is kept and made executable by tsup); dist/index.js is the module.
// @rama/* stay external: dependencies, resolved from their own builds.
// Declarations come from tsc (tsconfig.build.json), with declaration maps.
export default defineConfig({
  entry: { 'rama-serve': 'src/rama-serve.ts', index: 'src/index.ts' },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  // maps point at src/, which ships: no second copy of the sources inside them
  esbuildOptions(options) {
    options.sourcesContent = false;
  },
  clean: true,
});
