/**
 * A model's token embedding table stays in its file's packed type on the
 * backend (embed decodes only the rows it looks up): the looked-up rows are,
 * bit for bit, the rows of the table converted to f32 (what the model used
 * before), and the table takes its file's bytes, as memoryNeeds counts them.
 */
import { statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { contiguousRows, type Backend, type DType, type Tensor } from '@rama/backend';
import { isCI, missingMessage, sharedFile } from '@rama/testkit';
import { CpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from '@rama/tensor-webgpu';
import { openModel } from './gguf.js';
import { memoryNeeds, uploadWeights } from './weights.js';

/** Bytes per element of each table type, as the file stores it (q8_0: llama2.c's, an f32 scale per 32, not GGUF's f16). */
const BYTES: Partial<Record<DType, number>> = { f16: 2, bf16: 2, q4_0: 18 / 32, q4_k: 144 / 256, q5_k: 176 / 256, q6_k: 210 / 256, q8_0: 36 / 32 };

const CASES: { fixture: string; table: DType; kinds: ('wasm' | 'scalar' | 'webgpu')[] }[] = [
  { fixture: 'synth256-q4_k_m', table: 'q4_k', kinds: ['wasm', 'scalar', 'webgpu'] },
  { fixture: 'synth256-q5_k_m', table: 'q5_k', kinds: ['wasm', 'scalar'] },
  { fixture: 'synth256-q6_k', table: 'q6_k', kinds: ['wasm', 'scalar', 'webgpu'] },
  { fixture: 'synth256-q4_0', table: 'q4_0', kinds: ['wasm', 'webgpu'] },
  { fixture: 'synth256-f16', table: 'f16', kinds: ['wasm', 'webgpu'] },
  // GGUF Q8_0: converted to llama2.c's q8_0 (as every Q8_0 matrix is), no longer widened to f32
  { fixture: 'synth256-q8_0', table: 'q8_0', kinds: ['wasm', 'scalar', 'webgpu'] },
];

async function backendOf(kind: 'wasm' | 'scalar' | 'webgpu'): Promise<Backend | undefined> {
  if (kind !== 'webgpu') return CpuBackend.create({ maxRows: 16, kernels: kind });
  try {
    return await WebGpuBackend.create({ maxRows: 16 });
  } catch (e) {
    if (isCI()) throw e;
    return undefined;
  }
}

describe('the token embedding table in its file type', () => {
  for (const { fixture, table, kinds } of CASES) {
    for (const kind of kinds) {
      it(`${fixture} (${kind}): a ${table} table; embedded rows equal the f32 conversion's, bit for bit`, async (ctx) => {
        const path = sharedFile(`gguf/${fixture}.gguf`);
        if (!path) return ctx.skip(missingMessage(`gguf/${fixture}.gguf`));
        const be = await backendOf(kind);
        if (!be) return ctx.skip('no WebGPU adapter');
        const model = await openModel(path);
        try {
          const uploaded: Tensor[] = [];
          const w = await uploadWeights(be, model.weights, {}, (t) => (uploaded.push(t), t));
          const [vocab, dim] = w.tokenEmbedding.shape;
          expect(w.tokenEmbedding.dtype).toBe(table);
          expect(w.tokenEmbedding.byteLength).toBe(Math.round(vocab * dim * BYTES[table]!));
          if (model.config.sharedClassifier) expect(w.classifier).toBe(w.tokenEmbedding);

          // memoryNeeds counts what the load allocates (the packed table, once): about the file's size
          // (GGUF Q8_0's f16 scales take f32 ones here: 36 bytes a block of 32 instead of 34)
          const needs = await memoryNeeds(model.weights, {}, model.spec, { rows: 16, context: 8, sessions: 1 });
          expect(needs.weights).toBe(uploaded.reduce((a, t) => a + t.byteLength, 0));
          expect(needs.weights).toBeLessThanOrEqual(statSync(path).size * (table === 'q8_0' ? 36 / 34 : 1));

          // every row of the table once (16 at a time), against the converted table (the old f32 upload's values)
          const conv = await model.weights.read('tok_embeddings');
          const want = conv instanceof Float32Array ? conv : Float32Array.from(conv.q, (q, i) => q * conv.scales[Math.floor(i / (conv.q.length / conv.scales.length))]);
          const out = be.alloc({ shape: [16, dim], dtype: 'f32', label: 'x' });
          const tokens = be.alloc({ shape: [16], dtype: 'i32', label: 'tokens' });
          for (let t0 = 0; t0 < vocab; t0 += 16) {
            const rows = Math.min(16, vocab - t0);
            be.write(tokens, Int32Array.from({ length: rows }, (_, r) => vocab - 1 - (t0 + r)));
            const step = be.begin(contiguousRows(0, rows));
            step.embed(out, w.tokenEmbedding, tokens);
            step.submit();
            const got = (await be.read(out, rows * dim)) as Float32Array;
            for (let r = 0; r < rows; r++) {
              const id = vocab - 1 - (t0 + r);
              const row = got.subarray(r * dim, (r + 1) * dim);
              // Object.is per element: bit for bit (also the sign of a zero)
              const bad = Array.from(row).findIndex((v, c) => !Object.is(v, want[id * dim + c]));
              expect(bad, `token ${id}, column ${bad}: got ${row[bad]}, want ${want[id * dim + bad]}`).toBe(-1);
            }
          }
        } finally {
          await model.close();
          be.dispose();
        }
      });
    }
  }
});
