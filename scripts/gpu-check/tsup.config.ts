import { resolve } from 'node:path';
import { defineConfig } from 'tsup';

/**
 * .gpu-pack/runner.mjs: the WebGPU check's runner with every workspace package
 * inside (pnpm's node_modules are symlinks, which do not travel to the GPU
 * machine). Only `webgpu` (Dawn, a native addon) stays outside: the pack puts
 * it in .gpu-pack/node_modules. Run from the repository root.
 */
const root = process.cwd();
export default defineConfig({
  entry: { runner: 'scripts/gpu-check/runner.ts' },
  outDir: '.gpu-pack',
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  splitting: false,
  sourcemap: false,
  minify: false,
  clean: false,
  dts: false,
  noExternal: [/./],
  external: ['webgpu'],
  outExtension: () => ({ js: '.mjs' }),
  // Bundled CommonJS modules call require() for Node's built-ins.
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  esbuildOptions(options) {
    // Workspace packages from their sources (no dist/ build needed); what they import resolves from where they are.
    options.conditions = ['@rama/source', 'node', 'import', 'default'];
    options.alias = Object.fromEntries(['llama', 'tensor-webgpu', 'tensor-cpu', 'testkit'].map((p) => [`@rama/${p}`, resolve(root, 'packages', p, 'src/index.ts')]));
  },
});
