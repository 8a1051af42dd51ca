import { defineConfig } from 'tsup';

/**
 * What every package's `tsup <entries> --format esm --sourcemap` build shares
 * (passed as --config): source maps point at the TypeScript in src/, which
 * ships in each tarball, instead of carrying a second copy of it
 * (sourcesContent), so a CPU-only install stays small.
 */
export default defineConfig({
  esbuildOptions(options) {
    options.sourcesContent = false;
  },
});
