#!/usr/bin/env node
// First tokens of one model on each backend, greedy, compared: the check that
// a big model (Llama-2-7B-shape q80, past one 4 GiB WebAssembly memory on the
// CPU, split buffers on WebGPU) runs the same on both. Slow on SwiftShader
// (a CPU implementation of WebGPU: minutes per 7B token), so not in CI.
//
//   pnpm build && node examples/bench/src/first-tokens.mjs --model FILE.bin
//        [--tokenizer tokenizer.bin] [--steps 8] [--context 16] [--backends cpu,webgpu]
//   (VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json for WebGPU without a GPU)
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string' }, tokenizer: { type: 'string' }, steps: { type: 'string', default: '8' },
    context: { type: 'string', default: '16' }, backends: { type: 'string', default: 'cpu,webgpu' },
  },
});
if (!a.model) {
  console.error('first-tokens: --model FILE is required');
  process.exit(2);
}
const { Llama } = await import('@rama/llama');
const testkit = await import('@rama/testkit');
const tokenizer = a.tokenizer ?? testkit.sharedFile('models/tokenizer.bin');
const results = [];
for (const backend of a.backends.split(',')) {
  const t0 = performance.now();
  try {
    const llama = await Llama.load({ model: a.model, tokenizer, backend, contextLength: Number(a.context) });
    const loadMs = performance.now() - t0;
    const r = await llama.generate('Once upon a time', { steps: Number(a.steps), temperature: 0 }).result();
    results.push({ backend, tokens: r.tokens });
    console.log(`${backend}: ${llama.backend.description}; load ${(loadMs / 1e3).toFixed(1)} s; ${r.timing.tokensPerSecond.toFixed(3)} tok/s`);
    console.log(`  tokens ${r.tokens.join(',')} ${JSON.stringify(r.text)}`);
    llama.dispose();
  } catch (e) {
    console.log(`${backend}: ${e.name}: ${e.message}`);
  }
  console.log(`  peak RSS so far ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
}
if (results.length > 1) {
  const same = results.every((r) => r.tokens.join() === results[0].tokens.join());
  console.log(same ? 'same tokens on every backend' : 'TOKENS DIFFER');
  process.exitCode = same ? 0 : 1;
}
