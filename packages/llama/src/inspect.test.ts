/**
 * generate's `inspect` on the CPU and on WebGPU (SwiftShader), checked against
 * independent references: llama2.c's forward pass written out here in
 * float64 from the checkpoint's weights (attention weights of a head,
 * residual norms, logits), llama2.c's own top-10 logits at position 0 (the
 * golden file), a plain sort of the logits, and the golden token ids
 * (inspecting must not change what is generated). A spy on the backend shows
 * that a generation without `inspect` records nothing extra.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint } from '@rama/checkpoint';
import { comparableOutput, generateGoldens, goldenExpectation, goldenModelPath, missingMessage, sharedFile, type BackendKind, type GenerateGolden } from '@rama/testkit';
import { CpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from '@rama/tensor-webgpu';
import type { Backend, Step, Tensor, TensorDesc } from '@rama/backend';
import { ArgumentError, Llama, samplingDistribution, type GeneratedToken } from './index.js';

const MODEL = 'models/aidreams260K.bin';
const TOKENIZER = 'models/tok512-aidreams.bin';
const modelPath = sharedFile(MODEL);
const tokenizerPath = sharedFile(TOKENIZER);
const skip = !modelPath ? missingMessage(MODEL) : !tokenizerPath ? missingMessage(TOKENIZER) : undefined;
const golden = (id: string): GenerateGolden => {
  const g = generateGoldens().find((x) => x.id === id);
  if (!g) throw new Error(`no golden ${id}`);
  return g;
};

// ---- llama2.c's forward() in float64, recording what inspect reports ----------

interface Ref {
  dim: number; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number;
  t: Map<string, Float64Array>;
}

async function loadRef(path: string): Promise<Ref> {
  const ck = await openCheckpoint(path);
  try {
    const t = new Map<string, Float64Array>();
    for (const name of ck.tensors.keys()) t.set(name, Float64Array.from((await ck.read(name)) as Float32Array));
    const c = ck.config;
    return { dim: c.dim, hidden: c.hiddenDim, layers: c.nLayers, heads: c.nHeads, kvHeads: c.nKvHeads, vocab: c.vocabSize, t };
  } finally {
    await ck.close();
  }
}

const matvec = (w: Float64Array, x: Float64Array, rows: number) =>
  Float64Array.from({ length: rows }, (_, i) => x.reduce((s, xj, j) => s + w[i * x.length + j] * xj, 0));

function rmsnorm(x: Float64Array, w: Float64Array): Float64Array {
  const k = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + 1e-5);
  return x.map((v, i) => w[i] * v * k);
}

function rope(v: Float64Array, pos: number, hs: number): void {
  for (let i = 0; i < v.length; i += 2) {
    const a = pos * Math.pow(10000, -(i % hs) / hs);
    const [x, y] = [v[i], v[i + 1]];
    v[i] = x * Math.cos(a) - y * Math.sin(a);
    v[i + 1] = x * Math.sin(a) + y * Math.cos(a);
  }
}

interface RefStep {
  logits: Float64Array;
  /** [layer][head] -> weights over 0..pos */
  attention: number[][][];
  /** ||x|| after each layer */
  norms: number[];
}

/** Every position of `tokens`: logits, every head's attention weights, residual norms. */
function reference(m: Ref, tokens: readonly number[]): RefStep[] {
  const { dim, hidden, heads, kvHeads, vocab, t } = m;
  const hs = dim / heads, kvDim = kvHeads * hs;
  const keys: Float64Array[][] = Array.from({ length: m.layers }, () => []);
  const values: Float64Array[][] = Array.from({ length: m.layers }, () => []);
  return tokens.map((token, pos) => {
    let x = t.get('tok_embeddings')!.slice(token * dim, (token + 1) * dim);
    const attention: number[][][] = [];
    const norms: number[] = [];
    for (let l = 0; l < m.layers; l++) {
      const w = (s: string) => t.get(`layers.${l}.${s}`)!;
      let xb = rmsnorm(x, w('rms_att'));
      const q = matvec(w('wq'), xb, dim), k = matvec(w('wk'), xb, kvDim), v = matvec(w('wv'), xb, kvDim);
      rope(q, pos, hs);
      rope(k, pos, hs);
      keys[l].push(k);
      values[l].push(v);
      const att = new Float64Array(dim);
      attention.push([]);
      for (let h = 0; h < heads; h++) {
        const g = Math.floor(h / (heads / kvHeads));
        const s = keys[l].map((kt) => {
          let d = 0;
          for (let i = 0; i < hs; i++) d += q[h * hs + i] * kt[g * hs + i];
          return d / Math.sqrt(hs);
        });
        const max = Math.max(...s);
        const e = s.map((v) => Math.exp(v - max));
        const sum = e.reduce((a, b) => a + b, 0);
        const p = e.map((v) => v / sum);
        attention[l].push(p);
        values[l].forEach((vt, ti) => {
          for (let i = 0; i < hs; i++) att[h * hs + i] += p[ti] * vt[g * hs + i];
        });
      }
      const o = matvec(w('wo'), att, dim);
      x = x.map((xi, i) => xi + o[i]);
      xb = rmsnorm(x, w('rms_ffn'));
      const h1 = matvec(w('w1'), xb, hidden), h3 = matvec(w('w3'), xb, hidden);
      const down = matvec(w('w2'), h1.map((a, i) => (a / (1 + Math.exp(-a))) * h3[i]), dim);
      x = x.map((xi, i) => xi + down[i]);
      norms.push(Math.sqrt(x.reduce((s, v) => s + v * v, 0)));
    }
    return { logits: matvec(t.get('wcls') ?? t.get('tok_embeddings')!, rmsnorm(x, t.get('rms_final')!), vocab), attention, norms };
  });
}

const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

// ---- a backend that counts what steps record ------------------------------------

interface Counts { gathers: number; reads: number; allocs: number; steps: number }

/** Wraps a backend, counting step gathers and reads and tensor allocations. */
function spy(inner: Backend): { backend: Backend; counts: Counts } {
  const counts: Counts = { gathers: 0, reads: 0, allocs: 0, steps: 0 };
  const backend = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'alloc') return (d: TensorDesc) => (counts.allocs++, target.alloc(d));
      if (prop === 'begin') {
        return (rows: Parameters<Backend['begin']>[0]) => {
          counts.steps++;
          const step = target.begin(rows);
          return new Proxy(step, {
            get(s, p) {
              if (p === 'gather') return (o: Tensor, x: Tensor, r: ArrayLike<number>) => (counts.gathers++, s.gather(o, x, r));
              if (p === 'read') return (t: Tensor, n?: number) => (counts.reads++, s.read(t, n));
              const v = Reflect.get(s, p, s) as unknown;
              return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(s) : v;
            },
          }) as Step;
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { backend, counts };
}

// ---- the tests -----------------------------------------------------------------

const backends: { name: string; kind: BackendKind; make: () => Promise<Backend> }[] = [
  { name: 'cpu', kind: 'cpu', make: () => CpuBackend.create({ maxRows: 4, threads: 1 }) },
  { name: 'webgpu', kind: 'webgpu', make: () => WebGpuBackend.create({ maxRows: 4 }) },
];

let ref: Ref;
beforeAll(async () => {
  if (!skip) ref = await loadRef(modelPath!);
});

for (const b of backends) {
  describe(`inspect (${b.name})`, () => {
    let backend: Backend;
    let llama: Llama;
    let counts: Counts;
    beforeAll(async () => {
      if (skip) return;
      const s = spy(await b.make());
      backend = s.backend;
      counts = s.counts;
      // batchSize 4: the prompt's keys arrive over several steps.
      llama = await Llama.load({ model: modelPath!, tokenizer: tokenizerPath!, backend, batchSize: 4, sessions: 2 });
    });
    afterAll(() => {
      llama?.dispose();
      backend?.dispose();
    });

    it('greedy: the golden tokens unchanged; attention, norms and top-k equal the float64 reference', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const g = golden('aidreams-greedy-prompt');
      const { nHeads, nKvHeads, nLayers } = llama.spec;
      // A head past the first KV group, so the query-to-KV head mapping is exercised.
      const layer = nLayers - 1, head = nKvHeads < nHeads ? nHeads - 1 : 1;
      const gen = llama.generate(g.prompt, { steps: 40, temperature: 0, logits: true, inspect: { attention: [layer, head], topK: 10, residualNorms: true } });
      const sampled: GeneratedToken[] = [];
      for await (const t of gen) if (!t.prompt && t.inspect) sampled.push(t);
      const r = await gen.result();
      const want = goldenExpectation(g, b.kind);
      expect(r.tokens).toEqual(want.tokens.slice(0, r.tokens.length));
      expect(sampled.length).toBe(r.generatedTokens);

      const steps = reference(ref, r.tokens.slice(0, r.tokens.length - 1));
      const promptLength = r.promptTokens;
      let worstAtt = 0, worstNorm = 0;
      sampled.forEach((t, i) => {
        const ins = t.inspect!;
        expect(ins.position).toBe(promptLength - 1 + i);
        const rs = steps[ins.position];
        // attention: a distribution over 0..position, equal to the reference's
        const att = ins.attention!;
        expect(att.length).toBe(ins.position + 1);
        expect(Math.abs(att.reduce((a, v) => a + v, 0) - 1)).toBeLessThan(1e-12);
        worstAtt = Math.max(worstAtt, maxAbs(att, rs.attention[layer][head]));
        // residual norms, relative
        expect(ins.residualNorms!.length).toBe(nLayers);
        ins.residualNorms!.forEach((n, l) => (worstNorm = Math.max(worstNorm, Math.abs(n - rs.norms[l]) / rs.norms[l])));
        // top-k: a plain sort of the token's logits, probabilities their softmax; greedy puts all on the first
        const logits = Array.from(t.logits!);
        const sorted = logits.map((v, id) => ({ v, id })).sort((x, y) => y.v - x.v || x.id - y.id).slice(0, 10);
        expect(ins.topK!.map((c) => c.id)).toEqual(sorted.map((s) => s.id));
        const max = sorted[0].v;
        const z = logits.reduce((a, v) => a + Math.exp(v - max), 0);
        ins.topK!.forEach((c, j) => {
          expect(c.logit).toBe(sorted[j].v);
          expect(c.prob).toBeCloseTo(Math.exp(c.logit - max) / z, 12);
          expect(c.sampledProb).toBe(j === 0 ? 1 : 0);
          expect(c.text).toBe(new TextDecoder().decode(llama.tokenizer.decodePiece(r.tokens[ins.position], c.id)));
        });
        expect(ins.topK![0].id).toBe(t.id);
        // and the logits themselves are the reference's
        expect(maxAbs(logits, rs.logits)).toBeLessThan(2e-3);
      });
      expect(worstAtt).toBeLessThan(1e-4);
      expect(worstNorm).toBeLessThan(1e-4);
    });

    it("the first token's top 10 are llama2.c's (golden logits at position 0)", async (ctx) => {
      if (skip) return ctx.skip(skip);
      const g = golden('aidreams-greedy-bos');
      const top = (g as GenerateGolden & { logits_pos0_top10: [number, number][] }).logits_pos0_top10;
      const gen = llama.generate('', { steps: 2, temperature: 0, inspect: { topK: 10 } });
      let first: GeneratedToken | undefined;
      for await (const t of gen) first ??= t;
      expect(first!.inspect!.topK!.map((c) => c.id)).toEqual(top.map(([id]) => id));
      first!.inspect!.topK!.forEach((c, i) => expect(c.logit).toBeCloseTo(top[i][1], 3));
      expect(first!.inspect!.attention).toBeUndefined();
      expect(first!.inspect!.residualNorms).toBeUndefined();
    });

    it('sampling (temperature, top-p, seed): the golden tokens unchanged; sampledProb is the sampler distribution', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const g = golden('aidreams-topp-seed42');
      const opts = { steps: 60, temperature: g.temperature, topp: g.topp, seed: g.seed };
      const gen = llama.generate(g.prompt, { ...opts, logits: true, inspect: { attention: [0, 0], topK: 20 } });
      const sampled: GeneratedToken[] = [];
      for await (const t of gen) if (t.inspect) sampled.push(t);
      const r = await gen.result();
      expect(r.tokens).toEqual(goldenExpectation(g, b.kind).tokens.slice(0, r.tokens.length));
      for (const t of sampled) {
        const dist = samplingDistribution(t.logits!, { temperature: g.temperature, topp: g.topp });
        for (const c of t.inspect!.topK!) expect(c.sampledProb).toBe(dist[c.id]);
        // what was drawn was in the nucleus
        expect(dist[t.id]).toBeGreaterThan(0);
      }
      // without inspect: the same run
      const plain = await llama.generate(g.prompt, opts).result();
      expect(plain.tokens).toEqual(r.tokens);
      expect(comparableOutput(g, plain, b.kind)).toEqual(comparableOutput(g, r, b.kind));
    });

    it('beside another session in the same steps: its numbers are its own', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const other = llama.session();
      try {
        const prompt = 'I dreamed of a big red ball';
        const inspect = { attention: [1, 2] as [number, number], residualNorms: true };
        const alone: GeneratedToken[] = [];
        for await (const t of llama.generate(prompt, { steps: 24, temperature: 0, inspect })) if (t.inspect) alone.push(t);
        const together: GeneratedToken[] = [];
        const run = (async () => {
          for await (const t of llama.generate(prompt, { steps: 24, temperature: 0, inspect })) if (t.inspect) together.push(t);
        })();
        // The other session inspects another layer: each gets its own layer's numbers.
        const otherTokens: GeneratedToken[] = [];
        const otherRun = (async () => {
          for await (const t of other.generate('The sun', { steps: 30, temperature: 0, inspect: { attention: [3, 0], topK: 3 } })) if (t.inspect) otherTokens.push(t);
        })();
        await Promise.all([run, otherRun]);
        const otherAlone: GeneratedToken[] = [];
        for await (const t of other.generate('The sun', { steps: 30, temperature: 0, inspect: { attention: [3, 0], topK: 3 } })) if (t.inspect) otherAlone.push(t);
        expect(otherTokens.map((t) => t.id)).toEqual(otherAlone.map((t) => t.id));
        otherTokens.forEach((t, i) => expect(maxAbs(t.inspect!.attention!, otherAlone[i].inspect!.attention!)).toBeLessThan(1e-6));
        expect(together.map((t) => t.id)).toEqual(alone.map((t) => t.id));
        together.forEach((t, i) => {
          expect(maxAbs(t.inspect!.attention!, alone[i].inspect!.attention!)).toBeLessThan(1e-6);
          expect(maxAbs(t.inspect!.residualNorms!, alone[i].inspect!.residualNorms!)).toBeLessThan(1e-4);
        });
      } finally {
        other.dispose();
      }
    });

    it('no inspect: no extra gathers, reads or tensors; inspect: copies in the same steps', async (ctx) => {
      if (skip) return ctx.skip(skip);
      const measure = async (opts: object) => {
        const before = { ...counts };
        await llama.generate('I dreamed of', { steps: 20, temperature: 0, ...opts }).result();
        return { gathers: counts.gathers - before.gathers, reads: counts.reads - before.reads, allocs: counts.allocs - before.allocs, steps: counts.steps - before.steps };
      };
      const plain = await measure({});
      // One gather (the rows whose logits are wanted) and at most one read (the argmax) per step.
      expect(plain.gathers).toBeLessThanOrEqual(plain.steps);
      expect(plain.reads).toBeLessThanOrEqual(plain.steps);
      expect(plain.allocs).toBe(0);
      const inspected = await measure({ inspect: { attention: [0, 0], residualNorms: true } });
      // (WebGPU may run one step more without inspect: a greedy step submitted ahead and dropped at the end.)
      expect(inspected.gathers).toBeGreaterThan(plain.gathers + plain.steps);
      expect(inspected.allocs).toBe(0); // allocated by the earlier tests, reused
      const again = await measure({});
      expect(again).toEqual(plain);
    });

    it('bad inspect options are ArgumentErrors naming them', (ctx) => {
      if (skip) return ctx.skip(skip);
      const { nLayers, nHeads } = llama.spec;
      const bad = (inspect: unknown, re: RegExp) => {
        const err = (() => {
          try {
            llama.generate('x', { inspect } as never);
          } catch (e) {
            return e;
          }
        })();
        expect(err).toBeInstanceOf(ArgumentError);
        expect((err as Error).message).toMatch(re);
      };
      bad({ attention: [nLayers, 0] }, new RegExp(`generate: inspect: attention's layer \\(the model has ${nLayers}\\) must be an integer in 0..${nLayers - 1}, got ${nLayers}`));
      bad({ attention: [0, nHeads] }, /attention's head .* got/);
      bad({ attention: 3 }, /inspect.attention must be \[layer, head\], got 3/);
      bad({ topK: 0 }, /topK must be an integer in 1\.\./);
      bad({ residualNorms: 'yes' }, /residualNorms must be true or false/);
      bad({ heads: 1 }, /unknown option "heads"/);
      bad('all', /options must be an object/);
      expect(() => llama.chat('hi', { inspect: {} } as never)).toThrow(/chat: unknown option "inspect"/);
    });
  });
}

describe('inspect with grouped-query attention (tiny-gqa: 8 query heads, 2 KV heads)', () => {
  it('every head of every layer equals the float64 reference; the golden tokens unchanged', async (ctx) => {
    const g = golden('tiny-gqa-unshared-v1-greedy');
    const model = goldenModelPath(g);
    const tokenizer = sharedFile(`models/${g.tokenizer}`);
    if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
    const gqaRef = await loadRef(model);
    expect(gqaRef.kvHeads).toBeLessThan(gqaRef.heads);
    const llama = await Llama.load({ model, tokenizer, backend: 'cpu', threads: 1, batchSize: 4 });
    try {
      for (let layer = 0; layer < gqaRef.layers; layer++) {
        for (let head = 0; head < gqaRef.heads; head++) {
          const gen = llama.generate(g.prompt, { steps: 16, temperature: 0, inspect: { attention: [layer, head] } });
          const sampled: GeneratedToken[] = [];
          for await (const t of gen) if (t.inspect) sampled.push(t);
          const r = await gen.result();
          expect(r.tokens).toEqual(g.tokens.slice(0, r.tokens.length));
          const steps = reference(gqaRef, r.tokens);
          for (const t of sampled) expect(maxAbs(t.inspect!.attention!, steps[t.inspect!.position].attention[layer][head])).toBeLessThan(1e-4);
        }
      }
    } finally {
      llama.dispose();
    }
  });
});

describe('samplingDistribution', () => {
  it('temperature, then top-k, min-p and top-p over the sorted probabilities, renormalized', () => {
    const logits = [1, 3, 2, 0, 3];
    const e = logits.map((v) => Math.exp(v));
    const z = e.reduce((a, b) => a + b, 0);
    const p = e.map((v) => v / z); // order: 1, 4 (tie: lower id first), 2, 0, 3
    expect(Array.from(samplingDistribution(logits, { topp: 1 }))).toEqual(p.map((v) => expect.closeTo(v, 15)));
    // top-p 0.8: 1 and 4 hold 2 * 0.392 < 0.8; with 2 (0.144) the total passes it
    const kept = p[1] + p[4] + p[2];
    expect(p[1] + p[4]).toBeLessThan(0.8);
    expect(Array.from(samplingDistribution(logits, { topp: 0.8 }))).toEqual([0, p[1] / kept, p[2] / kept, 0, p[4] / kept].map((v) => expect.closeTo(v, 15)));
    expect(Array.from(samplingDistribution(logits, { topp: 0.7 }))).toEqual([0, 0.5, 0, 0, 0.5].map((v) => expect.closeTo(v, 15)));
    expect(Array.from(samplingDistribution(logits, { topk: 2, topp: 0 }))).toEqual([0, 0.5, 0, 0, 0.5].map((v) => expect.closeTo(v, 15)));
    // min-p 0.5: tokens within half the best (e^2/e^3 = 0.37 is not)
    expect(Array.from(samplingDistribution(logits, { minp: 0.5, topp: 1 }))).toEqual([0, 0.5, 0, 0, 0.5].map((v) => expect.closeTo(v, 15)));
    expect(Array.from(samplingDistribution(logits, { temperature: 0 }))).toEqual([0, 1, 0, 0, 0]);
    // temperature 2 halves the logits
    const e2 = logits.map((v) => Math.exp(v / 2));
    const z2 = e2.reduce((a, b) => a + b, 0);
    expect(Array.from(samplingDistribution(logits, { temperature: 2, topp: 1 }))).toEqual(e2.map((v) => expect.closeTo(v / z2, 15)));
  });
});
