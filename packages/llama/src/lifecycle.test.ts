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
    // Measured after a garbage collection (a WASM memory is freed when collected).
    // The allocator keeps some freed memory, so RSS may rise at first; a leak keeps rising. Each load holds ~1.5 MB of
    // weights and KV cache: 50 leaked loads would add 75 MB in the second half.
    const rss = [];
    for (let i = 0; i < 100; i++) {
      await cycle();
      if (i === 49 || i === 99) {
        (globalThis as { gc?: () => void }).gc?.();
        rss.push(process.memoryUsage().rss / MB);
      }
    }
    console.log(`${backend}: RSS after 50 loads ${rss[0].toFixed(0)} MB, after 100 ${rss[1].toFixed(0)} MB`);
    expect(rss[1] - rss[0]).toBeLessThan(30);
  }, 300_000);
}
