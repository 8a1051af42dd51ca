import { defineConfig } from 'tsup';

// dist/rama.js is the `rama` executable (src/rama.ts starts with its
// #!/usr/bin/env node line, which esbuild keeps and tsup makes executable);
// dist/index.js exports the same pieces as a module. @rama/* stay external:
// they are dependencies, resolved from their own builds. Declarations (with
// declaration maps) come from tsc (tsconfig.build.json): tsup's dts bundler
// writes no .d.ts.map.
export default defineConfig({
  entry: { rama: 'src/rama.ts', index: 'src/index.ts' },
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
