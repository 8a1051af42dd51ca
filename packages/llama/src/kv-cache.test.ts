/**
 * The f16 KV cache (Llama.load's kvCacheType: 'f16'): keys and values stored
 * as the nearest f16, so the logits move by that rounding only. On the greedy
 * goldens of the two shared tiny models each token's logits must stay within
 * a small bound of the f32 cache's, and greedy decoding must pick the same
 * tokens, except at a near tie that the rounding can flip.
 */
import { describe, expect, it } from 'vitest';
import { generateGoldens, goldenModelPath, isCI, missingMessage, sharedFile } from '@rama/testkit';
import { CpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from '@rama/tensor-webgpu';
import type { Backend } from '@rama/backend';
import { ArgumentError, BackendError, Llama, type KvCacheType } from './index.js';

/** Greedy generation: each generated token with the logits it was picked from. */
async function run(model: string, tokenizer: string, prompt: string, steps: number, kvCacheType: KvCacheType, backend?: Backend) {
  const llama = await Llama.load({ model, tokenizer, kvCacheType, ...(backend ? { backend } : { threads: 1 }) });
  try {
    expect(llama.kvCacheType).toBe(kvCacheType);
    const picked: { id: number; logits: Float32Array }[] = [];
    const gen = llama.generate(prompt, { steps, temperature: 0, logits: true });
    for await (const t of gen) if (t.logits) picked.push({ id: t.id, logits: t.logits });
    return { tokens: (await gen.result()).tokens, picked };
  } finally {
    llama.dispose();
  }
}

/**
 * Bound on max_j |l16_j - l32_j| / max_j |l32_j| for each token's logits. f16
 * keeps 11 significant bits: each key and value moves by at most 2^-11 =
 * 4.9e-4 of itself. Measured through the layers: 5.7e-4 (aidreams260K) and
 * 2.4e-3 (stories260K); 5e-3 is about 10x the per-value rounding.
 */
const BOUND = 5e-3;

/** The goldens whose greedy tokens the f16 cache keeps all of (stories260K's part at a near tie: 5.6203 vs 5.6174). */
const SAME_TOKENS = /^aidreams/;

describe('kvCacheType f16 on the greedy goldens: logits within 5e-3 of the f32 cache, the same tokens but at a near tie', () => {
  for (const g of generateGoldens().filter((g) => g.temperature === 0 && /^(aidreams|stories260K)/.test(g.id))) {
    it(g.id, async (ctx) => {
      const model = goldenModelPath(g);
      const tokenizer = sharedFile(`models/${g.tokenizer}`);
      if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
      const f32 = await run(model, tokenizer, g.prompt, g.steps, 'f32');
      const f16 = await run(model, tokenizer, g.prompt, g.steps, 'f16');
      let moved = false;
      let parted = -1;
      // Token k's logits are comparable while the tokens before it agree (then both runs read the same
      // history), the first differing one included.
      for (let k = 0; k < Math.min(f32.picked.length, f16.picked.length); k++) {
        const a = f32.picked[k], b = f16.picked[k];
        let scale = 0, diff = 0;
        for (let j = 0; j < a.logits.length; j++) {
          scale = Math.max(scale, Math.abs(a.logits[j]));
          diff = Math.max(diff, Math.abs(a.logits[j] - b.logits[j]));
        }
        moved ||= diff > 0;
        expect(diff / scale, `token ${k}`).toBeLessThan(BOUND);
        if (a.id !== b.id) {
          // A near tie: under the f32 cache the f16 run's pick is within the bound's reach of the best.
          expect(a.logits[a.id] - a.logits[b.id], `token ${k}: ${a.id} vs ${b.id}`).toBeLessThan(2 * BOUND * scale);
          parted = k;
          break;
        }
      }
      expect(moved).toBe(true); // the cache really is f16: its rounding shows in the logits
      if (SAME_TOKENS.test(g.id)) {
        expect(parted).toBe(-1);
        expect(f16.tokens).toEqual(f32.tokens);
      }
    });
  }
});

/** max over tokens of max_j |a_j - b_j| / max_j |a_j|. */
function worstRelative(a: { logits: Float32Array }[], b: { logits: Float32Array }[]): number {
  let worst = 0;
  for (let k = 0; k < a.length; k++) {
    let scale = 0, diff = 0;
    for (let j = 0; j < a[k].logits.length; j++) {
      scale = Math.max(scale, Math.abs(a[k].logits[j]));
      diff = Math.max(diff, Math.abs(a[k].logits[j] - b[k].logits[j]));
    }
    worst = Math.max(worst, diff / scale);
  }
  return worst;
}

describe('kvCacheType f16 on WebGPU', () => {
  // WebGPU's f32 arithmetic rounds differently from the CPU's (its matmul sums in another order): a
  // key or value a few f32 ulps off can land on the other side of an f16 rounding boundary and move by
  // one f16 ulp (2^-11 of itself), so the two backends' f16 caches differ by more than their f32 ones
  // (measured: 4.5e-5 against 4.5e-7; the CPU's scalar and WASM kernels differ the same way, 4.5e-5).
  // Bound: 5e-4, about one f16 ulp.
  it('aidreams-greedy-prompt: the CPU f16 cache\'s tokens, logits within 5e-4 of its', async (ctx) => {
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt')!;
    const model = goldenModelPath(g);
    const tokenizer = sharedFile(`models/${g.tokenizer}`);
    if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
    let gpu: Backend;
    try {
      gpu = await WebGpuBackend.create({ maxRows: 32 });
    } catch (e) {
      if (isCI()) throw e;
      return ctx.skip(`no WebGPU adapter: ${(e as Error).message}`);
    }
    try {
      const cpu = await run(model, tokenizer, g.prompt, g.steps, 'f16');
      const webgpu = await run(model, tokenizer, g.prompt, g.steps, 'f16', gpu);
      expect(webgpu.tokens).toEqual(cpu.tokens);
      const d = worstRelative(cpu.picked, webgpu.picked);
      expect(d).toBeGreaterThan(0); // two backends' arithmetic, not one
      expect(d).toBeLessThan(5e-4);
    } finally {
      gpu.dispose();
    }
  });
});

describe('kvCacheType: the option', () => {
  it('halves the KV cache on the backend, and a wrong value is an ArgumentError naming it', async (ctx) => {
    const model = sharedFile('models/stories260K.bin');
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage(model ? 'models/tok512-aidreams.bin' : 'models/stories260K.bin'));
    const kvBytes = async (kvCacheType: KvCacheType) => {
      const backend = await CpuBackend.create({ kernels: 'scalar', maxRows: 8 });
      const allocs: { label: string; dtype: string; bytes: number }[] = [];
      const alloc = backend.alloc.bind(backend);
      backend.alloc = (desc) => {
        const t = alloc(desc);
        allocs.push({ label: desc.label, dtype: desc.dtype, bytes: t.byteLength });
        return t;
      };
      const llama = await Llama.load({ model, tokenizer, backend, kvCacheType });
      llama.dispose();
      backend.dispose();
      return allocs.filter((a) => /^(key|value)_cache\.\d+$/.test(a.label));
    };
    const f32 = await kvBytes('f32');
    const f16 = await kvBytes('f16');
    // one key and one value tensor per layer (stories260K: 5 layers)
    expect(f32.map((a) => a.dtype)).toEqual(Array(10).fill('f32'));
    expect(f16.map((a) => a.dtype)).toEqual(Array(10).fill('f16'));
    expect(f16.map((a) => 2 * a.bytes)).toEqual(f32.map((a) => a.bytes));
    for (const bad of ['q8_0', 'F16', 16, null]) {
      await expect(Llama.load({ model, tokenizer, kvCacheType: bad as KvCacheType })).rejects.toThrow(ArgumentError);
      await expect(Llama.load({ model, tokenizer, kvCacheType: bad as KvCacheType })).rejects.toThrow(/kvCacheType must be 'f32' or 'f16'/);
    }
  });

  it('a backend without f16 tensors refuses it with a BackendError naming the option', async (ctx) => {
    const model = sharedFile('models/stories260K.bin');
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage(model ? 'models/tok512-aidreams.bin' : 'models/stories260K.bin'));
    const backend = await CpuBackend.create({ kernels: 'scalar', maxRows: 8 });
    const supports = backend.supports.bind(backend);
    backend.supports = (d) => d !== 'f16' && supports(d);
    try {
      const err = await Llama.load({ model, tokenizer, backend, kvCacheType: 'f16' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect((err as Error).message).toMatch(/kvCacheType 'f16'.*backend does not support/);
      // f32 still loads there
      (await Llama.load({ model, tokenizer, backend })).dispose();
    } finally {
      backend.dispose();
    }
  });
});
