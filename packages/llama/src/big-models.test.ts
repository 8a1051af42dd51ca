/**
 * Issue #12, big models on the CPU:
 * - llama2.c v2 (q80) files whose rows straddle Q8_0 groups (hidden_dim not a
 *   multiple of the group size, as stories42M's 1376 with groups of 64) load,
 *   and every weight is multiplied with its own group's scale: the logits
 *   match a float64 forward pass of the dequantized model, on every backend.
 * - a model that cannot fit (weights + KV cache) is refused before anything
 *   is allocated, with a BackendError naming the file, the bytes and the limit.
 */
import { describe, expect, it } from 'vitest';
import { BackendError, FormatError } from '@rama/core';
import { contiguousRows, type Backend, type Tensor } from '@rama/backend';
import { openCheckpoint, parseHeader, MAGIC, type Checkpoint, type Q80Data } from '@rama/checkpoint';
import { quantizeActivations } from '@rama/quant-q80';
import { missingMessage, sharedFile, synthModel, trackAllocations } from '@rama/testkit';
import { CpuBackend, WasmCpuBackend, ScalarCpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from '@rama/tensor-webgpu';
import { Llama } from './index.js';
import { llama2cSpec } from './spec.js';
import { allocState } from './state.js';
import { checkFits, memoryLimits, memoryNeeds, uploadWeights, type WeightPlan } from './weights.js';

const TINY = '--dim 64 --layers 2 --heads 8 --kv-heads 2 --vocab 512 --seq 64 --seed 11';
/** hidden 160: w2's rows straddle groups of 64 (regrouped to 32); hidden 168: to 8 (not a multiple of 16). */
const STRADDLING = [
  { name: 'straddle-h160.q80.bin', args: `${TINY} --hidden 160 --format q80`, group: 32 },
  { name: 'straddle-h168-unshared.q80.bin', args: `${TINY} --hidden 168 --format q80 --unshared`, group: 8 },
];

// ---- a float64 reference forward pass of the dequantized model ----

interface RefModel {
  dim: number; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number;
  t: Map<string, Float64Array>;
}

/** Every tensor in float64; q8_0 dequantized with the file's flat groups: element i has scale i / group_size. */
async function loadReference(path: string): Promise<RefModel> {
  const ck = await openCheckpoint(path);
  try {
    const t = new Map<string, Float64Array>();
    for (const [name, e] of ck.tensors) {
      const data = await ck.read(name);
      if (data instanceof Float32Array) t.set(name, Float64Array.from(data));
      else {
        const { q, scales } = data as Q80Data;
        t.set(name, Float64Array.from(q, (v, i) => v * scales[Math.floor(i / e.groupSize!)]));
      }
    }
    const c = ck.config;
    return { dim: c.dim, hidden: c.hiddenDim, layers: c.nLayers, heads: c.nHeads, kvHeads: c.nKvHeads, vocab: c.vocabSize, t };
  } finally {
    await ck.close();
  }
}

function matvec(w: Float64Array, x: Float64Array, rows: number): Float64Array {
  const n = x.length, out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += w[i * n + j] * x[j];
    out[i] = s;
  }
  return out;
}

function rmsnorm(x: Float64Array, w: Float64Array): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const k = 1 / Math.sqrt(ss / x.length + 1e-5);
  return x.map((v, i) => w[i] * v * k);
}

function rope(v: Float64Array, pos: number, headSize: number): void {
  for (let i = 0; i < v.length; i += 2) {
    const angle = pos / Math.pow(10000, (i % headSize) / headSize);
    const [a, b] = [v[i], v[i + 1]];
    v[i] = a * Math.cos(angle) - b * Math.sin(angle);
    v[i + 1] = a * Math.sin(angle) + b * Math.cos(angle);
  }
}

/** llama2.c's forward() in float64, for each position of `tokens`: the logits after each token. */
function referenceLogits(m: RefModel, tokens: number[]): Float64Array[] {
  const { dim, hidden, heads, kvHeads, vocab, t } = m;
  const hs = dim / heads, kvDim = kvHeads * hs;
  const keys: Float64Array[][] = Array.from({ length: m.layers }, () => []);
  const values: Float64Array[][] = Array.from({ length: m.layers }, () => []);
  const out: Float64Array[] = [];
  tokens.forEach((token, pos) => {
    let x = t.get('tok_embeddings')!.slice(token * dim, (token + 1) * dim);
    for (let l = 0; l < m.layers; l++) {
      const w = (s: string) => t.get(`layers.${l}.${s}`)!;
      let xb = rmsnorm(x, w('rms_att'));
      const q = matvec(w('wq'), xb, dim), k = matvec(w('wk'), xb, kvDim), v = matvec(w('wv'), xb, kvDim);
      rope(q, pos, hs);
      rope(k, pos, hs);
      keys[l].push(k);
      values[l].push(v);
      const att = new Float64Array(dim);
      for (let h = 0; h < heads; h++) {
        const kvh = Math.floor(h / (heads / kvHeads));
        const scores = keys[l].map((kt) => {
          let s = 0;
          for (let i = 0; i < hs; i++) s += q[h * hs + i] * kt[kvh * hs + i];
          return s / Math.sqrt(hs);
        });
        const max = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - max));
        const sum = e.reduce((a, b) => a + b, 0);
        values[l].forEach((vt, ti) => {
          for (let i = 0; i < hs; i++) att[h * hs + i] += (e[ti] / sum) * vt[kvh * hs + i];
        });
      }
      const o = matvec(w('wo'), att, dim);
      x = x.map((xi, i) => xi + o[i]);
      xb = rmsnorm(x, w('rms_ffn'));
      const h1 = matvec(w('w1'), xb, hidden), h3 = matvec(w('w3'), xb, hidden);
      const hb = h1.map((a, i) => (a / (1 + Math.exp(-a))) * h3[i]);
      const down = matvec(w('w2'), hb, dim);
      x = x.map((xi, i) => xi + down[i]);
    }
    out.push(matvec(t.get('wcls') ?? t.get('tok_embeddings')!, rmsnorm(x, t.get('rms_final')!), vocab));
  });
  return out;
}

/**
 * runq.c's reading of a straddling w2 ([rows, n] with flat groups of gs):
 * each row is walked in chunks of gs from the row's start, each chunk takes
 * the scale of the group holding its first element, and the last n % gs
 * elements are dropped.
 */
function runqReading({ q, scales }: Q80Data, rows: number, n: number, gs: number): Float64Array {
  const w = new Float64Array(q.length);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j + gs <= n; j += gs) {
      for (let k = 0; k < gs; k++) w[i * n + j + k] = q[i * n + j + k] * scales[Math.floor((i * n + j) / gs)];
    }
  }
  return w;
}

/** The reference model with every w2 read as runq.c reads it. */
async function withRunqW2(path: string, m: RefModel): Promise<RefModel> {
  const ck = await openCheckpoint(path);
  try {
    const t = new Map(m.t);
    for (let l = 0; l < m.layers; l++) {
      t.set(`layers.${l}.w2`, runqReading((await ck.read(`layers.${l}.w2`)) as Q80Data, m.dim, m.hidden, ck.groupSize!));
    }
    return { ...m, t };
  } finally {
    await ck.close();
  }
}

/** Largest |a - b| over the logits of every position, relative to the largest |b|. */
function relDiff(a: ArrayLike<number>[], b: Float64Array[]): number {
  let d = 0, scale = 0;
  b.forEach((row, p) => {
    for (let i = 0; i < row.length; i++) {
      d = Math.max(d, Math.abs(a[p][i] - row[i]));
      scale = Math.max(scale, Math.abs(row[i]));
    }
  });
  return d / scale;
}

/**
 * Bounds. The end-to-end logits differ from the float64 reference by the
 * int8 rounding of every matmul's activations (runq.c's scheme): measured
 * 1.5-2% of the largest logit; runq.c's reading of w2 is 39-54% off. They
 * cannot be compared tighter: one activation that rounds the other way (a
 * value within f32 rounding of a tie, of which these runs have some) changes
 * every later rounding, and the logits move by up to ~1% (measured). The
 * tight check is per matmul, on the backend's own input rows: the loaded w2
 * must give the float64 product of the file's weights with the quantized
 * activations up to f32 accumulation (the backend conformance bound).
 */
const LOOSE = 0.05;
const RUNQ_OFF = 0.2;
const EPS = 2 ** -23;

const PROMPT = [1, 20, 300, 41, 77];
const STEPS = 16;

/** Rama's logits for every position from the last prompt token on, and the tokens they were read with. */
async function ramaLogits(model: string, tokenizer: string, backend: Backend): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const llama = await Llama.load({ model, tokenizer, backend });
  try {
    const logits: Float32Array[] = [];
    const tokens = [...PROMPT];
    for await (const tok of llama.session().generate(PROMPT, { steps: STEPS, temperature: 0, logits: true })) {
      if (tok.prompt) continue;
      logits.push(tok.logits!);
      tokens.push(tok.id);
    }
    return { tokens, logits };
  } finally {
    llama.dispose();
  }
}

const backends: { name: string; make: () => Promise<Backend> }[] = [
  { name: 'cpu (WASM)', make: () => CpuBackend.create({ maxRows: 8 }) },
  { name: 'cpu (scalar kernels)', make: () => CpuBackend.create({ maxRows: 8, kernels: 'scalar' }) },
  { name: 'webgpu (SwiftShader)', make: () => WebGpuBackend.create({ maxRows: 8 }) },
];

describe('q80 files whose rows straddle groups', () => {
  for (const f of STRADDLING) {
    describe(f.name, () => {
      it(`regroups w2 to groups of ${f.group} at load (bit-identical weights), the other matrices keep 64`, async (ctx) => {
        const path = synthModel(f.name, f.args);
        if (!path) return ctx.skip(missingMessage('tools/synth-model.mjs'));
        const ck = await openCheckpoint(path);
        try {
          expect(ck.groupSize).toBe(64);
          const backend = new ScalarCpuBackend({ maxRows: 1 });
          const w = await uploadWeights(backend, ck, {}, (t) => t);
          expect(w.layers[0].w2.groupSize).toBe(f.group);
          expect(w.layers[0].w1.groupSize).toBe(64);
          expect(w.classifier.groupSize).toBe(64);
          // the scalar backend keeps the uploaded q8_0 tensor as values + scales: dequantized, they are the file's
          const own = w.layers[1].w2 as unknown as { q: Int8Array; scales: Float32Array };
          const file = (await ck.read('layers.1.w2')) as Q80Data;
          for (let i = 0; i < file.q.length; i++) {
            expect(own.q[i] * own.scales[Math.floor(i / f.group)]).toBe(file.q[i] * file.scales[Math.floor(i / 64)]);
          }
          backend.dispose();
        } finally {
          await ck.close();
        }
      });

      for (const b of backends) {
        it(`every row of the loaded w2 is multiplied exactly, each weight with its own group's scale (${b.name})`, async (ctx) => {
          const path = synthModel(f.name, f.args);
          if (!path) return ctx.skip(missingMessage('tools/synth-model.mjs'));
          const ck = await openCheckpoint(path);
          const backend = await b.make();
          try {
            const { dim, hiddenDim: n, nLayers } = ck.config;
            const spec = llama2cSpec(ck.config);
            const w = await uploadWeights(backend, ck, {}, (t) => t);
            const s = allocState(backend, spec, 8, 8, 1, (t) => t);
            // the FFN's input rows as the model makes them: silu(w1 x) * w3 x for 5 embedded tokens
            const tokens = [1, 20, 300, 41, 77], R = tokens.length;
            backend.write(s.tokens, Int32Array.from(tokens));
            const step = backend.begin(contiguousRows(0, R));
            step.embed(s.x, w.tokenEmbedding, s.tokens);
            step.rmsnorm(s.xb, s.x, w.layers[0].rmsFfn, spec.normEps);
            step.matmul(s.hb, s.xb, w.layers[0].w1);
            step.matmul(s.hb2, s.xb, w.layers[0].w3);
            step.swiglu(s.hb, s.hb, s.hb2);
            const outs = [s.xb2, s.q]; // one [rows, dim] output per layer's w2
            for (let l = 0; l < nLayers; l++) step.matmul(outs[l], s.hb, w.layers[l].w2);
            const hbRead = step.read(s.hb, R * n);
            const outReads = outs.map((o) => step.read(o, R * dim));
            step.submit();
            const hb = (await hbRead) as Float32Array;
            for (let l = 0; l < nLayers; l++) {
              const got = (await outReads[l]) as Float32Array;
              const file = (await ck.read(`layers.${l}.w2`)) as Q80Data;
              const runq = runqReading(file, dim, n, 64);
              let worstRunq = 0;
              for (let r = 0; r < R; r++) {
                // the activations quantized as runq.c's quantize() does, in the groups of the loaded tensor
                const xq = new Int8Array(n), xs = new Float32Array(n / f.group);
                quantizeActivations(hb, r * n, n, f.group, xq, xs);
                for (let i = 0; i < dim; i++) {
                  let want = 0, mag = 0, off = 0;
                  for (let j = 0; j < n; j++) {
                    const x = xq[j] * xs[Math.floor(j / f.group)];
                    const p = file.q[i * n + j] * file.scales[Math.floor((i * n + j) / 64)] * x; // the file's flat groups
                    want += p;
                    mag += Math.abs(p);
                    off += runq[i * n + j] * x;
                  }
                  expect(Math.abs(got[r * dim + i] - want), `layer ${l}, row ${r}, output ${i}`).toBeLessThanOrEqual(4 * Math.sqrt(n / f.group) * EPS * mag + 1e-30);
                  worstRunq = Math.max(worstRunq, Math.abs(off - want) / (4 * Math.sqrt(n / f.group) * EPS * mag + 1e-30));
                }
              }
              // runq.c's reading misses that bound by orders of magnitude on these rows
              expect(worstRunq).toBeGreaterThan(1e4);
            }
          } finally {
            backend.dispose();
            await ck.close();
          }
        });

        it(`logits match a float64 forward pass of the dequantized model (${b.name})`, async (ctx) => {
          const path = synthModel(f.name, f.args);
          const tokenizer = sharedFile('models/tok512-aidreams.bin');
          if (!path || !tokenizer) return ctx.skip(missingMessage(path ? 'models/tok512-aidreams.bin' : 'tools/synth-model.mjs'));
          const backend = await b.make();
          let got: Awaited<ReturnType<typeof ramaLogits>>;
          try {
            got = await ramaLogits(path, tokenizer, backend);
          } finally {
            backend.dispose();
          }
          expect(got.logits.length).toBeGreaterThan(0); // STEPS - PROMPT.length + 1 unless BOS is sampled
          const ref = await loadReference(path);
          const want = referenceLogits(ref, got.tokens.slice(0, -1)).slice(PROMPT.length - 1);
          expect(relDiff(got.logits, want)).toBeLessThan(LOOSE);
          // runq.c's reading of w2 is far outside the bound: the test tells the two apart.
          const runq = referenceLogits(await withRunqW2(path, ref), got.tokens.slice(0, -1)).slice(PROMPT.length - 1);
          expect(relDiff(runq, want)).toBeGreaterThan(RUNQ_OFF);
        });
      }
    });
  }
});

// ---- memory ----

const GIB4 = 2 ** 32;

describe('a model that cannot fit is refused before anything is allocated', () => {
  it('memoryNeeds counts exactly the bytes a load allocates (fp32, q80: true, v2 shared and unshared, straddling)', async (ctx) => {
    const files = [
      ...STRADDLING.map((f) => ({ path: synthModel(f.name, f.args), plan: {} as WeightPlan })),
      { path: synthModel('mem-h160.v1.bin', `${TINY} --hidden 160 --format v1`), plan: {} },
      { path: synthModel('mem-h160.v1.bin', `${TINY} --hidden 160 --format v1`), plan: { quantizeGroupSize: 32 } },
      { path: synthModel('mem-h160-unshared.v0.bin', `${TINY} --hidden 160 --unshared`), plan: { quantizeGroupSize: 32 } },
    ];
    for (const { path, plan } of files) {
      if (!path) return ctx.skip(missingMessage('tools/synth-model.mjs'));
      const ck = await openCheckpoint(path);
      const spec = llama2cSpec(ck.config);
      const shape = { rows: 4, context: 48, sessions: 3 };
      const needs = await memoryNeeds(ck, plan, spec, shape);
      const backend = new ScalarCpuBackend({ maxRows: 4 });
      const weights = new Set<Tensor>(), state = new Set<Tensor>();
      await uploadWeights(backend, ck, plan, (t) => (weights.add(t), t));
      const s = allocState(backend, spec, shape.rows, shape.context, shape.sessions, (t) => (state.add(t), t));
      const bytes = (ts: Set<Tensor>) => [...ts].reduce((a, t) => a + t.byteLength, 0);
      expect(needs.weights, path).toBe(bytes(weights));
      const kvBytes = (r: typeof s) => [...r.keyCache, ...r.valueCache].reduce((a, t) => a + t.byteLength, 0);
      expect(s.keyCache.length).toBe(spec.nLayers);
      expect(needs.kvCache).toBe(kvBytes(s));
      expect(needs.kvCache).toBe(2 * 2 * 3 * 48 * 16 * 4);
      expect(needs.total).toBe(bytes(weights) + bytes(state));
      // an f16 KV cache: 2 bytes per key and value, counted as allocated
      const needs16 = await memoryNeeds(ck, plan, spec, { ...shape, kvCacheType: 'f16' });
      const s16 = allocState(backend, spec, shape.rows, shape.context, shape.sessions, (t) => t, 'f16');
      expect(needs16.kvCache).toBe(kvBytes(s16));
      expect(needs16.kvCache).toBe(needs.kvCache / 2);
      expect(needs16.total).toBe(needs.total - needs.kvCache / 2);
      backend.dispose();
      await ck.close();
    }
  });

  it('a Llama-2 7B header (fp32, 27 GB): needs counted from the header alone, refused for the 4 GiB WebAssembly memory', async () => {
    const head = new Uint8Array(256);
    const dv = new DataView(head.buffer);
    dv.setUint32(0, MAGIC, true);
    dv.setInt32(4, 1, true);
    [4096, 11008, 32, 32, 32, 32000, 4096].forEach((v, i) => dv.setInt32(8 + 4 * i, v, true));
    head[36] = 0;
    const size = 256 + 4 * (32 * 2 * 4096 + 4096) + 4 * (2 * 32000 * 4096 + 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008));
    const layout = parseHeader(head, size, '7b.bin');
    // uploadWeights reads nothing when the backend calls no fill: the header's layout is enough.
    const ckpt = { ...layout, source: '7b.bin', fileSize: size } as unknown as Checkpoint;
    const shape = { rows: 32, context: 4096, sessions: 1 };
    const needs = await memoryNeeds(ckpt, {}, llama2cSpec(layout.config), shape);
    expect(needs.weights).toBe(size - 256);
    expect(needs.kvCache).toBe(2 * 32 * 4096 * 4096 * 4); // 4 GiB
    const limit = { bytes: GIB4 - 65536, what: 'the CPU backend' };
    expect(() => checkFits('7b.bin', needs, shape, [limit])).toThrow(BackendError);
    expect(() => checkFits('7b.bin', needs, shape, [limit])).toThrow(
      /^7b\.bin: the model needs at least 31,\d{3},\d{3},\d{3} bytes \(29\.\d\d GiB: weights 26,953,662,464, KV cache 4,294,967,296 for 1 session of 4096 positions, .*more than the CPU backend: 4,294,901,760 bytes \(4\.00 GiB\)/,
    );
    // the tightest of several limits is named
    expect(() => checkFits('7b.bin', needs, shape, [{ bytes: 2 ** 40, what: 'A' }, limit, { bytes: 2 ** 33, what: 'B' }])).toThrow(/more than the CPU backend/);
    expect(() => checkFits('7b.bin', needs, shape, [{ bytes: 2 ** 40, what: 'A' }])).not.toThrow();
    // Each layer's keys and values lie in one memory (4 GiB of f32 in all: 128 MiB a layer, which
    // fits), the layers spread over several; 33 sessions make one layer's 4.1 GiB, which does not
    // fit a 4 GiB WebAssembly memory (less its first page). The refusal names the remedy.
    const oneMemory = GIB4 - 65536;
    expect(() => checkFits('7b.bin', needs, shape, [], oneMemory)).not.toThrow();
    const shape33 = { ...shape, sessions: 33 };
    const needs33 = await memoryNeeds(ckpt, {}, llama2cSpec(layout.config), shape33);
    expect(() => checkFits('7b.bin', needs33, shape33, [], oneMemory)).toThrow(
      /^7b\.bin: one layer's KV cache \(its keys and values lie in one memory\) takes 4,429,185,024 bytes \(4\.13 GiB\), more than one memory of this backend holds: .*kvCacheType: 'f16' \(half the KV cache\)/,
    );
    const shape16 = { ...shape33, kvCacheType: 'f16' as const };
    const needs16 = await memoryNeeds(ckpt, {}, llama2cSpec(layout.config), shape16);
    expect(needs16.kvCache).toBe(33 * 2 * 32 * 4096 * 4096 * 2); // 66 GiB, 2.06 GiB a layer
    expect(needs16.total).toBe(needs33.total - needs33.kvCache / 2);
    expect(() => checkFits('7b.bin', needs16, shape16, [], oneMemory)).not.toThrow();
    // an f16 cache's refusal does not suggest f16
    expect(() => checkFits('7b.bin', needs16, shape16, [limit])).toThrow(/KV cache 70,866,960,384 for 33 sessions/);
    expect(() => checkFits('7b.bin', needs16, shape16, [limit])).not.toThrow(/kvCacheType/);
  });

  it('a KV cache too big for one 4 GiB WebAssembly memory (sessions): a BackendError, nothing allocated', async (ctx) => {
    const model = synthModel(STRADDLING[0].name, STRADDLING[0].args);
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/tok512-aidreams.bin'));
    const backend = (await CpuBackend.create({ maxRows: 8, threads: 1 })) as WasmCpuBackend;
    const used = () => backend.spaces.map((s) => s.heap.used);
    try {
      expect(backend.maxTensorBytes).toBeLessThanOrEqual(GIB4);
      const sessions = 600_000; // 8 KiB of keys and values a layer each: 4.6 GiB a layer, which attention reads from one memory
      const before = used();
      const err = await Llama.load({ model, tokenizer, backend, sessions }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect((err as Error).message).toMatch(
        new RegExp(`^${model.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: one layer's KV cache \\(its keys and values lie in one memory\\) takes 4,915,200,000 bytes \\(4\\.58 GiB\\), more than one memory of this backend holds: [\\d,]+ bytes`),
      );
      expect(used()).toEqual(before);
      // the same model with one session loads on that backend
      const llama = await Llama.load({ model, tokenizer, backend });
      expect((await llama.session().generate(PROMPT, { steps: 8, temperature: 0 }).result()).tokens.length).toBeGreaterThan(0);
      llama.dispose();
    } finally {
      backend.dispose();
    }
    // a backend Llama makes itself is disposed, and the same error comes out
    await expect(Llama.load({ model, tokenizer, sessions: 600_000, threads: 1 })).rejects.toThrow(BackendError);
  });

  /**
   * aidreams260K greedy from PROMPT ('Once upon a time', 40 steps) on a backend whose memories hold 1 MiB
   * and on one with a single memory; `check` gets each backend's `run` (load options in, tokens out).
   */
  async function onSmallAndOneMemory(
    skip: (msg: string) => void,
    check: (run: (backend: WasmCpuBackend, opts: { kvCacheType?: 'f32' | 'f16'; sessions?: number }) => Promise<number[]>, small: WasmCpuBackend, one: WasmCpuBackend) => Promise<void>,
  ): Promise<void> {
    const model = sharedFile('models/aidreams260K.bin');
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return skip(missingMessage(model ? 'models/tok512-aidreams.bin' : 'models/aidreams260K.bin'));
    const run = async (backend: WasmCpuBackend, opts: { kvCacheType?: 'f32' | 'f16'; sessions?: number }) => {
      const llama = await Llama.load({ model, tokenizer, backend, ...opts });
      try {
        return (await llama.session().generate('Once upon a time', { steps: 40, temperature: 0 }).result()).tokens;
      } finally {
        llama.dispose();
      }
    };
    const small = (await CpuBackend.create({ maxRows: 8, threads: 2, maxMemoryBytes: 1 << 20 })) as WasmCpuBackend;
    const one = (await CpuBackend.create({ maxRows: 8, threads: 2 })) as WasmCpuBackend;
    try {
      await check(run, small, one);
    } finally {
      small.dispose();
      one.dispose();
    }
  }

  it('weights past one WebAssembly memory: a forced 1 MiB per memory spreads aidreams260K over several, with the same tokens (f32 and f16 KV caches)', (ctx) =>
    onSmallAndOneMemory((m) => ctx.skip(m), async (run, small, one) => {
      const tokens = await run(small, {});
      // activations and the KV cache in the first memory, the weights over it and the next ones
      expect(small.spaces.length).toBeGreaterThanOrEqual(2);
      expect(tokens).toEqual(await run(one, {}));
      expect(one.spaces.length).toBe(1);
      // an f16 KV cache there too: the same tokens as on one memory (the same kernels, bit for bit)
      const tokens16 = await run(small, { kvCacheType: 'f16' });
      expect(tokens16).toEqual(await run(one, { kvCacheType: 'f16' }));
      expect(tokens16.length).toBeGreaterThan(20);
    }));

  it('a KV cache past one memory: with 1 MiB memories, 5 sessions of aidreams260K (320 KiB of keys and values a layer, 1.25 MiB in all) spread over several, with the same tokens', (ctx) =>
    onSmallAndOneMemory((m) => ctx.skip(m), async (run, small, one) => {
      const tokens = await run(small, { sessions: 5 });
      // A memory holds the keys of several layers but not all their values too: each layer's
      // values must take the room kept beside its keys.
      expect(small.spaces.length).toBeGreaterThanOrEqual(3);
      expect(tokens).toEqual(await run(one, { sessions: 5 }));
      expect(tokens.length).toBeGreaterThan(20);
    }));

  it('a small file whose header claims huge dimensions is refused by size validation, reading only the header', async (ctx) => {
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!tokenizer) return ctx.skip(missingMessage('models/tok512-aidreams.bin'));
    const file = new Uint8Array(4096);
    const dv = new DataView(file.buffer);
    dv.setUint32(0, MAGIC, true);
    dv.setInt32(4, 2, true);
    [8192, 28672, 80, 64, 8, 32000, 4096].forEach((v, i) => dv.setInt32(8 + 4 * i, v, true)); // Llama-2 70B
    file[36] = 0;
    dv.setInt32(37, 64, true);
    const { settled, log } = await trackAllocations(() => Llama.load({ model: file, tokenizer }));
    expect(settled.status).toBe('rejected');
    const err = (settled as PromiseRejectedResult).reason as Error;
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/^<buffer>: header \(dim 8192, hidden_dim 28672, n_layers 80.*implies ~?[\d,.e+]+ bytes but the file has 4,096/);
    expect(log.largest).toBeLessThan(1 << 20);
  });
});
