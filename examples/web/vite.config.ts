import { fileURLToPath } from 'node:url';
import { defineConfig, defaultClientConditions } from 'vite';

/**
 * Workspace packages are bundled from their TypeScript sources (the
 * "@rama/source" export condition), so the page needs no prior `pnpm build`.
 */
const conditions = ['@rama/source', ...defaultClientConditions];

/**
 * COOP/COEP make the page cross-origin isolated, which SharedArrayBuffer (the
 * CPU backend's worker threads) requires.
 */
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/**
 * Node-only modules that the packages import lazily (node:fs in the checkpoint
 * and tokenizer readers, Dawn's "webgpu" package, worker_threads): they are
 * only reached in Node, so the browser bundle leaves them as external imports.
 */
const nodeOnly = (id: string) => id.startsWith('node:') || id === 'webgpu' || id === 'worker_threads';

export default defineConfig({
  resolve: { conditions },
  worker: { format: 'es', rollupOptions: { external: nodeOnly } },
  build: {
    target: 'es2022',
    rollupOptions: {
      external: nodeOnly,
      input: { main: fileURLToPath(new URL('./index.html', import.meta.url)), playground: fileURLToPath(new URL('./playground.html', import.meta.url)) },
    },
  },
  optimizeDeps: { exclude: ['webgpu'] },
  server: { headers: isolation },
  preview: { headers: isolation },
});
