import { defineConfig } from 'vitepress';
import { fileURLToPath } from 'node:url';
import { sourceLinks } from './source-links';

const root = fileURLToPath(new URL('../..', import.meta.url));

const guide = [
  { text: 'The path of one token', link: '/guide/' },
  { text: 'Tokenization', link: '/guide/tokenization' },
  { text: 'Embeddings', link: '/guide/embeddings' },
  { text: 'RMSNorm', link: '/guide/rmsnorm' },
  { text: 'Attention and the causal mask', link: '/guide/attention' },
  { text: 'RoPE', link: '/guide/rope' },
  { text: 'Grouped-query attention', link: '/guide/gqa' },
  { text: 'The KV cache', link: '/guide/kv-cache' },
  { text: 'SwiGLU', link: '/guide/swiglu' },
  { text: 'The residual stream', link: '/guide/residual' },
  { text: 'Logits and sampling', link: '/guide/sampling' },
  { text: 'Q8_0 and k-quants', link: '/guide/quantization' },
  { text: 'Batching, and why decoding is memory-bound', link: '/guide/batching' },
  { text: 'How a GPU runs it (WebGPU)', link: '/guide/webgpu' },
  { text: 'File formats: llama2.c .bin and GGUF', link: '/guide/formats' },
];

const packages = ['core', 'backend', 'checkpoint', 'tokenizer', 'sampler', 'quant-q80', 'tensor-cpu', 'tensor-webgpu', 'llama', 'server', 'hub'];

export default defineConfig({
  title: 'Rama',
  description: 'Llama inference in TypeScript, and how a Llama works',
  cleanUrls: true,
  // The build fails on a link to a page that does not exist (VitePress's default; said here so nobody turns it off by accident).
  ignoreDeadLinks: false,
  srcExclude: ['README.md', 'snippets/**', 'node_modules/**'],
  themeConfig: {
    nav: [
      { text: 'Getting started', link: '/getting-started' },
      { text: 'Guide', link: '/guide/' },
      { text: 'API', link: '/api/' },
      { text: 'Packages', items: packages.map((p) => ({ text: `@rama/${p}`, link: `https://github.com/rama-llama/rama/tree/main/packages/${p}#readme` })) },
    ],
    sidebar: {
      '/guide/': [{ text: 'How a Llama works', items: guide }],
      '/getting-started': [{ text: 'How a Llama works', items: guide }],
    },
    socialLinks: [{ icon: 'github', link: 'https://github.com/rama-llama/rama' }],
    outline: [2, 3],
    search: { provider: 'local' },
  },
  markdown: {
    config: (md) => sourceLinks(md, root),
  },
});
