/**
 * GGUF files with `rope_freqs.weight` (Llama 3.1 / 3.2: per-pair RoPE
 * frequency factors): the stories260K fixture with the tensor added. Factors
 * of 1 give the original logits bit for bit; other factors change them as the
 * spec says (checked end to end against a float64 forward pass in
 * safetensors.test.ts, and per op in the backend conformance suite); a
 * tensor of the wrong size or type is a FormatError naming it.
 */
import { describe, expect, it } from 'vitest';
import { FormatError } from '@rama/core';
import { missingMessage, sharedFile } from '@rama/testkit';
import { Llama } from './index.js';
import { encodeGGUF, readGGUFContents, type GGUFContents } from './test-gguf.js';

const FIXTURE = 'gguf/stories260K-f32.gguf';
const TOKENIZER = 'models/tok512-aidreams.bin';

const withFactors = (c: GGUFContents, factors: Float32Array, type = c.tensors.find((t) => t.name === 'output_norm.weight')!.type): Uint8Array =>
  encodeGGUF({ ...c, tensors: [...c.tensors, { name: 'rope_freqs.weight', ne: [factors.length], type, data: new Uint8Array(factors.buffer.slice(0)) }] });

async function logits(model: string | Uint8Array, backend: 'cpu' | 'webgpu' = 'cpu'): Promise<Float32Array[]> {
  const llama = await Llama.load({ model, backend, threads: 1 });
  try {
    const out: Float32Array[] = [];
    for await (const t of llama.generate([1, 200, 300, 400, 50], { temperature: 0, steps: 8, logits: true })) if (t.logits) out.push(t.logits);
    return out;
  } finally {
    llama.dispose();
  }
}

describe('GGUF rope_freqs.weight', () => {
  it('factors of 1 change nothing; others are read into the spec and change the logits; bad ones are refused', async (ctx) => {
    const path = sharedFile(FIXTURE);
    if (!path || !sharedFile(TOKENIZER)) return ctx.skip(missingMessage(FIXTURE));
    const c = await readGGUFContents(path);
    const original = await logits(path);
    const pairs = 4; // stories260K: head size 8
    expect(await logits(withFactors(c, new Float32Array(pairs).fill(1)))).toEqual(original);

    const factors = Float32Array.from([1, 1.5, 4, 8]);
    const file = withFactors(c, factors);
    const llama = await Llama.load({ model: file, threads: 1 });
    expect(Array.from(llama.spec.rope.freqFactors!)).toEqual(Array.from(factors));
    llama.dispose();
    const scaled = await logits(file);
    expect(scaled.some((l, i) => l.some((v, j) => v !== original[i][j]))).toBe(true);
    // the same on WebGPU, within the f32 rounding of its kernels
    const gpu = await logits(file, 'webgpu');
    for (let i = 0; i < scaled.length; i++) for (let j = 0; j < scaled[i].length; j++) expect(Math.abs(gpu[i][j] - scaled[i][j])).toBeLessThan(1e-3);

    await expect(Llama.load({ model: withFactors(c, new Float32Array(3).fill(1)) })).rejects.toThrow(FormatError);
    await expect(Llama.load({ model: withFactors(c, new Float32Array(3).fill(1)) })).rejects.toThrow(/rope_freqs\.weight is F32 with 3 elements, expected F32 with 4/);
    await expect(Llama.load({ model: withFactors(c, Float32Array.from([1, 1, 0, 1])) })).rejects.toThrow(/not a positive number/);
  });
});
