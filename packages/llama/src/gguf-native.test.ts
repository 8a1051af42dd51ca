/**
 * GGUF F16 and Q4_0 matrices upload as f16 and q4_0 where the backend
 * supports them (at their own size), and as today's exact conversions (f32,
 * q8_0) where it does not; both give the same logits, since the native
 * kernels compute exactly what the converted ones do (f16 widens exactly;
 * q4_0's blocks are q8_0 groups of 32 with the same activation quantization).
 * Q4_K, Q5_K and Q6_K matrices upload as q4_k, q5_k, q6_k; their kernels
 * quantize the activations in groups of 256 (as llama.cpp does), so their
 * logits are not the conversions' but the same bits on every CPU kernel set.
 * How close those logits are to llama.cpp's float64 reference is gguf.test.ts's.
 * The token embedding table stays in its file's type too (embed decodes the
 * rows it looks up, each value as the f32 conversion gives it), so the
 * logits do not change and the table takes its file's bytes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCI, missingMessage, sharedFile } from '@rama/testkit';
import { CpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from '@rama/tensor-webgpu';
import type { Backend, DType } from '@rama/backend';
import { Llama } from './index.js';
import { encodeGGUF, readGGUFContents } from './test-gguf.js';
import { recordingUploads } from './test-uploads.js';

const PACKED: DType[] = ['f16', 'bf16', 'q4_0'];
const KQUANTS: DType[] = ['q4_k', 'q5_k', 'q6_k'];

/** The embedding table's upload label: tied to the classifier, it is one tensor for both. */
const TABLE = ['tok_embeddings', 'tok_embeddings (and wcls, shared)'];
const tableType = (uploads: Map<string, DType>): DType | undefined => TABLE.map((l) => uploads.get(l)).find((d) => d !== undefined);

const recording = recordingUploads;

async function logits(model: string, backend: Backend, prompt: string): Promise<Float32Array> {
  const llama = await Llama.load({ model, backend });
  try {
    for await (const t of llama.generate(prompt, { temperature: 0, maxTokens: 1, steps: 0, logits: true })) if (!t.prompt) return t.logits!;
    throw new Error('no token generated');
  } finally {
    llama.dispose();
  }
}

const CASES: { fixture: string; native: DType; kinds: ('cpu' | 'webgpu')[] }[] = [
  { fixture: 'aidreams260K-f16', native: 'f16', kinds: ['cpu', 'webgpu'] },
  { fixture: 'aidreams260K-q4_0', native: 'q4_0', kinds: ['cpu', 'webgpu'] },
  { fixture: 'synth256-q4_0', native: 'q4_0', kinds: ['cpu'] },
  { fixture: 'synth256-f16', native: 'f16', kinds: ['cpu'] },
];

describe('GGUF F16 and Q4_0 matrices run natively where the backend supports them', () => {
  for (const { fixture, native, kinds } of CASES) {
    for (const kind of kinds) {
      it(`${fixture} (${kind}): ${native} on the device, the same logits as the converted weights`, async (ctx) => {
        const model = sharedFile(`gguf/${fixture}.gguf`);
        if (!model) return ctx.skip(missingMessage(`gguf/${fixture}.gguf`));
        let be: Backend;
        try {
          be = kind === 'cpu' ? await CpuBackend.create({ maxRows: 16 }) : await WebGpuBackend.create({ maxRows: 16 });
        } catch (e) {
          if (isCI()) throw e;
          return ctx.skip(`no WebGPU adapter: ${(e as Error).message}`);
        }
        try {
          const nat = recording(be, false);
          const conv = recording(be, PACKED);
          const a = await logits(model, nat.backend, 'Once upon a time');
          const b = await logits(model, conv.backend, 'Once upon a time');
          // the file's matrices of that type went up as it; with it hidden, as f32 or q8_0
          expect(nat.uploads.get('layers.0.wq')).toBe(native);
          expect(nat.uploads.get('layers.1.w1')).toBe(native);
          expect(conv.uploads.get('layers.0.wq')).toBe(native === 'f16' ? 'f32' : 'q8_0');
          expect([...conv.uploads.values()].some((d) => PACKED.includes(d))).toBe(false);
          // the embedding table stays in the file's type; converted, f32 (F16) or q8_0 (Q4_0 as Q8_0 groups of 32)
          expect(tableType(nat.uploads)).toBe(native);
          expect(tableType(conv.uploads)).toBe(native === 'f16' ? 'f32' : 'q8_0');
          expect(a.length).toBe(b.length);
          expect(Array.from(a)).toEqual(Array.from(b));
        } finally {
          be.dispose();
        }
      });
    }
  }
});

// The files' matrices by type (llama.cpp's Q4_K_M and Q5_K_M keep attn_v and ffn_down of some layers, and output, in Q6_K).
const K_CASES: { fixture: string; types: Record<string, DType> }[] = [
  { fixture: 'synth256-q4_k_m', types: { 'layers.0.wq': 'q4_k', 'layers.0.w2': 'q4_k', 'layers.2.w2': 'q6_k', wcls: 'q6_k', tok_embeddings: 'q4_k' } },
  { fixture: 'synth256-q5_k_m', types: { 'layers.0.wq': 'q5_k', 'layers.1.w1': 'q5_k', 'layers.3.wv': 'q6_k', wcls: 'q6_k', tok_embeddings: 'q5_k' } },
  { fixture: 'synth256-q6_k', types: { 'layers.0.wq': 'q6_k', 'layers.1.w1': 'q6_k', wcls: 'q6_k', tok_embeddings: 'q6_k' } },
];

describe('GGUF Q4_K, Q5_K and Q6_K matrices run natively on the CPU', () => {
  for (const { fixture, types } of K_CASES) {
    it(`${fixture}: k-quants on the device; WebAssembly (1 and 2 threads) and scalar kernels give the same logits`, async (ctx) => {
      const model = sharedFile(`gguf/${fixture}.gguf`);
      if (!model) return ctx.skip(missingMessage(`gguf/${fixture}.gguf`));
      const runs: Float32Array[] = [];
      for (const opts of [{ kernels: 'wasm', threads: 1 }, { kernels: 'wasm', threads: 2 }, { kernels: 'scalar' }] as const) {
        const be = await CpuBackend.create({ maxRows: 16, ...opts });
        try {
          const nat = recording(be, false);
          runs.push(await logits(model, nat.backend, 'Once upon a time'));
          for (const [label, dtype] of Object.entries(types)) expect(nat.uploads.get(label), `${fixture} ${label} (${opts.kernels})`).toBe(dtype);
          if (opts.kernels === 'scalar') {
            // with the k-quants hidden, today's conversions (Q6_K as q8_0 in groups of 16, Q4_K and Q5_K as f32)
            const conv = recording(be, KQUANTS);
            const c = await logits(model, conv.backend, 'Once upon a time');
            expect(conv.uploads.get('wcls')).toBe('q8_0');
            expect([...conv.uploads.values()].some((d) => KQUANTS.includes(d))).toBe(false);
            // another quantization of the activations, the same model: close, not equal
            let diff = 0, scale = 0;
            for (let i = 0; i < c.length; i++) {
              diff = Math.max(diff, Math.abs(c[i] - runs[0][i]));
              scale = Math.max(scale, Math.abs(c[i]));
            }
            expect(diff).toBeGreaterThan(0);
            expect(diff).toBeLessThan(0.05 * scale);
          }
        } finally {
          be.dispose();
        }
      }
      expect(Array.from(runs[1]), 'wasm, 2 threads').toEqual(Array.from(runs[0]));
      expect(Array.from(runs[2]), 'scalar').toEqual(Array.from(runs[0]));
    });
  }
});

describe('a tied GGUF embedding table in a k-quant', () => {
  it('synth256-q4_k_m without output.weight: the Q4_K table, one q4_k tensor, is looked up and is the classifier', async (ctx) => {
    const path = sharedFile('gguf/synth256-q4_k_m.gguf');
    if (!path) return ctx.skip(missingMessage('gguf/synth256-q4_k_m.gguf'));
    const c = await readGGUFContents(path);
    const dir = mkdtempSync(join(tmpdir(), 'rama-gguf-tied-'));
    try {
      const model = join(dir, 'tied.gguf');
      writeFileSync(model, encodeGGUF({ ...c, tensors: c.tensors.filter((t) => t.name !== 'output.weight') }));
      const runs: Float32Array[] = [];
      for (const kernels of ['wasm', 'scalar'] as const) {
        const be = await CpuBackend.create({ maxRows: 16, kernels });
        try {
          const nat = recording(be, false);
          runs.push(await logits(model, nat.backend, 'Once upon a time'));
          expect(nat.uploads.get('tok_embeddings (and wcls, shared)')).toBe('q4_k');
          expect([...nat.uploads.keys()].filter((l) => l.includes('wcls') || l.includes('tok_embeddings'))).toEqual(['tok_embeddings (and wcls, shared)']);
          if (kernels === 'scalar') {
            // hidden, the classifier is the f32 table itself (no upload of its own): another rounding, the same model
            const conv = recording(be, KQUANTS);
            const c2 = await logits(model, conv.backend, 'Once upon a time');
            expect(conv.uploads.get('tok_embeddings')).toBe('f32');
            expect([...conv.uploads.keys()].some((l) => l.includes('wcls'))).toBe(false);
            let diff = 0, scale = 0;
            for (let i = 0; i < c2.length; i++) {
              diff = Math.max(diff, Math.abs(c2[i] - runs[0][i]));
              scale = Math.max(scale, Math.abs(c2[i]));
            }
            expect(diff).toBeGreaterThan(0);
            expect(diff).toBeLessThan(0.05 * scale);
          }
        } finally {
          be.dispose();
        }
      }
      expect(Array.from(runs[1]), 'scalar').toEqual(Array.from(runs[0]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
