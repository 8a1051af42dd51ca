import { defineConfig } from 'tsup';

// dist/rama.js is the `rama` executable (src/rama.ts starts with its
// #!/usr/bin/env node line, which esbuild keeps and tsup makes executable);
// dist/index.js exports the same pieces as a module. @rama/* stay external:
// they are dependencies, resolved from their own builds.
export default defineConfig({
  entry: { rama: 'src/rama.ts', index: 'src/index.ts' },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  dts: { entry: { index: 'src/index.ts' } },
  clean: true,
});
