/**
 * A model loaded and disposed 100 times in one process must not grow the
 * process's memory, on either backend (GPU buffers, WASM memories and worker
 * threads all have to go).
 */
import { expect, it } from 'vitest';
import { missingMessage, sharedFile } from '@rama/testkit';
import { Llama, type BackendName } from './index.js';

const MB = 1 << 20;

for (const backend of ['cpu', 'webgpu'] satisfies BackendName[]) {
  it(`loads, generates and disposes a model 100 times (${backend}): RSS stays bounded`, async (ctx) => {
    const model = sharedFile('models/aidreams260K.bin');
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const cycle = async () => {
      const llama = await Llama.load({ model, tokenizer, backend });
      const r = await llama.generate('I dreamed', { steps: 8, temperature: 0 }).result();
      expect(r.tokens.length).toBe(9);
      llama.dispose();
    };
    // Measured after a garbage collection (a WASM memory is freed when collected), every 10 loads.
    // The allocator keeps and returns freed memory as it likes, so single samples move by +-20 MB; a
    // leak only grows. Each load holds ~1.5 MB of weights and KV cache: leaked, the 30 loads between
    // the early samples (loads 20-50) and the late ones (80-100) would add 45 MB to every late sample,
    // so even the lowest late sample would stand above the highest early one.
    const rss: number[] = [];
    for (let i = 1; i <= 100; i++) {
      await cycle();
      if (i % 10 === 0) {
        (globalThis as { gc?: () => void }).gc?.();
        rss[i] = process.memoryUsage().rss / MB;
      }
    }
    const early = Math.max(rss[20], rss[30], rss[40], rss[50]);
    const late = Math.min(rss[80], rss[90], rss[100]);
    console.log(`${backend}: RSS every 10 loads (MB): ${rss.filter((x) => x !== undefined).map((x) => x.toFixed(0)).join(' ')}`);
    expect(late - early).toBeLessThan(30);
  }, 300_000);
}
