/**
 * GGUF Q4_K_M, Q5_K_M and Q6_K files on WebGPU: their k-quant matrices go up
 * as q4_k, q5_k, q6_k (packed on the device), and the logits
 * - are at least as close to llama.cpp's float64 reference as llama.cpp's own
 *   (gguf.test.ts's criterion, for the first three generated positions);
 * - are the same bits with weights split at 64 KiB and (one file: slow on
 *   SwiftShader) with the workgroup kernels, since every k-quant kernel
 *   computes the same f32 chain.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isCI, missingMessage, sharedFile } from '@rama/testkit';
import { WebGpuBackend, type WebGpuBackendOptions } from '@rama/tensor-webgpu';
import type { Backend, DType } from '@rama/backend';
import { Llama } from './index.js';
import { recordingUploads } from './test-uploads.js';

interface Ref {
  prompt: string;
  prompt_ids: number[];
  gen_ids: number[];
  f64_logits_file: string;
  f64_max_abs_diff_vs_llama_cpp: number;
}

const readJsonl = <T>(path: string): T[] => readFileSync(path, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);

/** A little-endian float32 C-order .npy file: its shape and values. */
function readNpyF32(path: string): { shape: number[]; data: Float32Array } {
  const b = readFileSync(path);
  const headerLen = b[6] === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = b[6] === 1 ? 10 : 12;
  const header = b.toString('latin1', start, start + headerLen);
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header)) throw new Error(`${path}: expected little-endian float32 in C order, got ${header}`);
  const shape = (/'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? '').split(',').filter((s) => s.trim()).map(Number);
  const data = new Float32Array(shape.reduce((a, x) => a * x, 1));
  new Uint8Array(data.buffer).set(b.subarray(start + headerLen, start + headerLen + 4 * data.length));
  return { shape, data };
}

const recording = recordingUploads;

/** The logits after reading `ids`. */
async function logitsAfter(llama: Llama, ids: number[]): Promise<Float32Array> {
  for await (const t of llama.generate(ids, { temperature: 0, maxTokens: 1, steps: 0, logits: true })) if (!t.prompt) return t.logits!;
  throw new Error('no token generated');
}

// The files' matrices by type (llama.cpp's Q4_K_M and Q5_K_M keep attn_v and ffn_down of some layers, and output, in Q6_K).
// `workgroups`: also run the workgroup kernels (slow on SwiftShader: one file, one position).
const CASES: { fixture: string; types: Record<string, DType>; workgroups?: boolean }[] = [
  { fixture: 'synth256-q4_k_m', types: { 'layers.0.wq': 'q4_k', 'layers.0.w2': 'q4_k', 'layers.2.w2': 'q6_k', wcls: 'q6_k' }, workgroups: true },
  { fixture: 'synth256-q5_k_m', types: { 'layers.0.wq': 'q5_k', 'layers.1.w1': 'q5_k', 'layers.3.wv': 'q6_k', wcls: 'q6_k' } },
  { fixture: 'synth256-q6_k', types: { 'layers.0.wq': 'q6_k', 'layers.1.w1': 'q6_k', wcls: 'q6_k' } },
];

/** A WebGPU backend, or undefined (the test skipped) where there is no adapter outside CI. */
async function webgpuOrSkip(opts: WebGpuBackendOptions, skip: (msg: string) => void): Promise<Backend | undefined> {
  try {
    return await WebGpuBackend.create({ maxRows: 32, ...opts });
  } catch (e) {
    if (isCI()) throw e;
    skip(`no WebGPU adapter: ${(e as Error).message}`);
    return undefined;
  }
}

/** Loads `model` on a WebGPU backend made with `opts`, checks the upload types, and runs `fn`. */
async function withModel<T>(model: string, opts: WebGpuBackendOptions, types: Record<string, DType>, skip: (msg: string) => void, fn: (l: Llama) => Promise<T>): Promise<T | undefined> {
  const be = await webgpuOrSkip(opts, skip);
  if (!be) return undefined;
  const rec = recording(be);
  try {
    const llama = await Llama.load({ model, backend: rec.backend });
    try {
      for (const [label, dtype] of Object.entries(types)) expect(rec.uploads.get(label), label).toBe(dtype);
      return await fn(llama);
    } finally {
      llama.dispose();
    }
  } finally {
    be.dispose();
  }
}

describe('GGUF k-quant files on WebGPU: q4_k, q5_k, q6_k on the device', () => {
  for (const { fixture, types, workgroups } of CASES) {
    it(`${fixture}: native k-quant matrices, logits as close to float64 as llama.cpp's, the same bits with split weights${workgroups ? ' and workgroup kernels' : ''}`, async (ctx) => {
      const model = sharedFile(`gguf/${fixture}.gguf`);
      const refsPath = sharedFile(`gguf/refs/${fixture}.jsonl`);
      if (!model || !refsPath) return ctx.skip(missingMessage(`gguf/${fixture}.gguf`));
      const refs = readJsonl<Ref>(refsPath);
      const first = [...refs[0].prompt_ids];
      // The rows kernels (SwiftShader's default) over every prompt: gguf.test.ts's criterion.
      const firstLogits = await withModel(model, { matmulKernels: 'rows' }, types, ctx.skip, async (llama) => {
        let oursMax = 0;
        let theirsMax = 0;
        for (const r of refs) {
          const ref = readNpyF32(sharedFile(`gguf/${r.f64_logits_file}`)!);
          const vocab = ref.shape[1];
          let ours = 0;
          for (let k = 0; k < 3; k++) {
            const logits = await logitsAfter(llama, [...r.prompt_ids, ...r.gen_ids.slice(0, k)]);
            expect(logits.length).toBe(vocab);
            for (let i = 0; i < vocab; i++) ours = Math.max(ours, Math.abs(logits[i] - ref.data[k * vocab + i]));
          }
          const theirs = r.f64_max_abs_diff_vs_llama_cpp;
          expect(ours, `${fixture} "${r.prompt}"`).toBeLessThanOrEqual(Math.max(2 * theirs, theirs + 1e-4));
          oursMax = Math.max(oursMax, ours);
          theirsMax = Math.max(theirsMax, theirs);
        }
        console.log(`${fixture} (webgpu): max |ours - f64| ${oursMax.toExponential(3)}, llama.cpp's ${theirsMax.toExponential(3)}`);
        expect(oursMax, fixture).toBeLessThanOrEqual(Math.max(1.1 * theirsMax, theirsMax + 1e-4));
        return logitsAfter(llama, first);
      });
      if (!firstLogits) return;
      // Weights split at 64 KiB (the classifier and the FFN matrices in two parts each), and the workgroup kernels:
      // every k-quant kernel computes the same f32 chain, so the first prompt's logits are the same bits.
      const others: { name: string; opts: WebGpuBackendOptions }[] = [{ name: '64 KiB bindings', opts: { matmulKernels: 'rows', maxBindingSize: 64 << 10 } }];
      if (workgroups) others.push({ name: 'workgroup kernels', opts: { matmulKernels: 'workgroups' } });
      for (const v of others) {
        const got = await withModel(model, v.opts, types, ctx.skip, (llama) => logitsAfter(llama, first));
        expect(Array.from(got!), `${fixture} (${v.name})`).toEqual(Array.from(firstLogits));
      }
    });
  }
});
