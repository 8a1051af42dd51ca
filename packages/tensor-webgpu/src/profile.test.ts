/// <reference types="@webgpu/types" />
/**
 * Kernel profiling with timestamp queries (`profile: true`): a generation
 * records GPU time under the names of the pipelines it ran, in the numbers
 * the forward pass dispatches them; a backend without it writes no queries.
 */
import { BackendError } from '@rama/backend';
import { generateGoldens, goldenModelPath, missingMessage, sharedFile } from '@rama/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebGpuBackend } from './index.js';
import { allKernels } from './kernels/index.js';
// The engine from its sources, by relative path: a test-only import (@rama/llama depends on this package).
import { Llama } from '../../llama/src/index.js';

// tiny-gqa (2 layers, 8 heads over 2 KV heads, unshared classifier): every kind of dispatch, in seconds on SwiftShader.
const golden = generateGoldens().find((g) => g.id === 'tiny-gqa-unshared-v0-greedy');
const LAYERS = 2;

/** Counts compute passes that carry timestamp writes, and query sets created, on every encoder and device. */
function spyOnQueries(device: GPUDevice): { passes: number; sets: number; restore(): void } {
  const counts = { passes: 0, sets: 0, restore: () => {} };
  const proto = (globalThis as unknown as { GPUCommandEncoder: { prototype: GPUCommandEncoder } }).GPUCommandEncoder.prototype;
  const begin = proto.beginComputePass;
  proto.beginComputePass = function (this: GPUCommandEncoder, d?: GPUComputePassDescriptor) {
    if (d?.timestampWrites) counts.passes++;
    return begin.call(this, d);
  };
  const createQuerySet = device.createQuerySet;
  device.createQuerySet = function (this: GPUDevice, d: GPUQuerySetDescriptor) {
    counts.sets++;
    return createQuerySet.call(this, d);
  };
  counts.restore = () => {
    proto.beginComputePass = begin;
    device.createQuerySet = createQuerySet;
  };
  return counts;
}

async function generate(backend: WebGpuBackend, steps: number): Promise<number[]> {
  const model = goldenModelPath(golden!)!;
  const llama = await Llama.load({ model, tokenizer: sharedFile(`models/${golden!.tokenizer}`)!, backend });
  try {
    const gen = llama.generate(golden!.prompt, { steps, temperature: 0 });
    for await (const _ of gen);
    return (await gen.result()).tokens;
  } finally {
    llama.dispose();
  }
}

describe('kernel profiling', () => {
  let plain: WebGpuBackend;
  let profiled: WebGpuBackend;
  beforeAll(async () => {
    plain = await WebGpuBackend.create({ maxRows: 8 });
    profiled = await WebGpuBackend.create({ maxRows: 8, profile: true });
  });
  afterAll(() => {
    plain?.dispose();
    profiled?.dispose();
  });

  it('times every dispatch of a generation under its pipeline name', async (ctx) => {
    if (!golden || !sharedFile(`models/${golden.tokenizer}`)) return ctx.skip(missingMessage('goldens/generate.jsonl'));
    const spy = spyOnQueries(profiled.device);
    let tokens: number[];
    try {
      tokens = await generate(profiled, 24);
    } finally {
      spy.restore();
    }
    // Profiling changes how passes are split, never what is computed (steps positions: BOS and 24 more tokens).
    expect(tokens).toEqual(golden.tokens.slice(0, 25));
    expect(spy.passes).toBeGreaterThan(0);
    expect(spy.sets).toBeGreaterThan(0);

    const times = await profiled.kernelTimes();
    const names = new Set(allKernels(profiled.packedDot).map((k) => k.name));
    expect(times.length).toBeGreaterThan(0);
    for (const t of times) {
      expect(names.has(t.kernel), t.kernel).toBe(true);
      expect(t.count).toBeGreaterThan(0);
      expect(Number.isFinite(t.ms) && t.ms >= 0).toBe(true);
    }
    expect(times.reduce((s, t) => s + t.ms, 0)).toBeGreaterThan(0);
    // Every timed pass is one dispatch, and the forward pass's shape fixes their numbers:
    // one embed per step, an attention per layer, an rmsnorm per layer twice plus the final one.
    const count = (re: RegExp) => times.filter((t) => re.test(t.kernel)).reduce((s, t) => s + t.count, 0);
    expect(times.reduce((s, t) => s + t.count, 0)).toBe(spy.passes);
    const embeds = count(/^embed$/);
    expect(embeds).toBeGreaterThan(0);
    expect(count(/^attention/)).toBe(LAYERS * embeds);
    expect(count(/^rmsnorm/)).toBe((2 * LAYERS + 1) * embeds);
    expect(count(/^matmul/)).toBeGreaterThanOrEqual(7 * LAYERS * embeds + embeds);

    profiled.resetKernelTimes();
    expect(await profiled.kernelTimes()).toEqual([]);
  });

  it('a backend without profile writes no timestamps and has no kernel times', async (ctx) => {
    if (!golden || !sharedFile(`models/${golden.tokenizer}`)) return ctx.skip(missingMessage('goldens/generate.jsonl'));
    const spy = spyOnQueries(plain.device);
    try {
      expect(await generate(plain, 12)).toEqual(golden.tokens.slice(0, 13));
    } finally {
      spy.restore();
    }
    expect(spy.passes).toBe(0);
    expect(spy.sets).toBe(0);
    await expect(plain.kernelTimes()).rejects.toThrow(BackendError);
  });
});
