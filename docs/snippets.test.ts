/**
 * Runs every "try it" snippet of the site (docs/snippets/*.mjs) against the
 * shared tiny models and checks what it shows against references that do not
 * come from our code: llama2.c's goldens, the byte-fallback rule, the GGUF
 * fixtures' README, and the math of each method.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { encodeGoldens, generateGoldens, goldenExpectation, missingMessage, sharedDir, sharedFile } from '@rama/testkit';
import { sharedPaths } from './snippets/run.mjs';

const need = (...rels: string[]) => rels.find((r) => !sharedFile(r));
const paths = () => sharedPaths(sharedDir());

describe('try-it snippets', () => {
  it('generate: greedy tokens and text equal llama2.c\'s', async (ctx) => {
    const missing = need('models/aidreams260K.bin', 'models/tok512-aidreams.bin', 'goldens/generate.jsonl');
    if (missing) return ctx.skip(missingMessage(missing));
    const golden = generateGoldens().find((g) => g.id === 'aidreams-greedy-prompt')!;
    expect(golden.prompt).toBe('I dreamed of');
    expect(golden.steps).toBe(100);
    const { tryIt } = await import('./snippets/generate.mjs');
    const out = await tryIt(paths());
    expect(out.reason).toBe('steps');
    expect({ tokens: out.tokens, text: out.text }).toEqual(goldenExpectation(golden));
  });

  it('tokenize: llama2.c\'s ids, and byte fallback for a character with no piece', async (ctx) => {
    const missing = need('models/tokenizer.bin', 'goldens/encode.jsonl');
    if (missing) return ctx.skip(missingMessage(missing));
    const { tryIt } = await import('./snippets/tokenize.mjs');
    const out = await tryIt(paths());
    const golden = encodeGoldens().find((g) => g.tokenizer === 'tokenizer.bin' && g.text === 'I believe the meaning of life is' && g.bos)!;
    expect(out.words.ids).toEqual(golden.tokens);
    expect(out.words.back).toBe('I believe the meaning of life is');
    // byte b is token b + 3 (after <unk>, <s>, </s>); sentencepiece adds a leading space piece first
    const bytes = [...new TextEncoder().encode('🦙')];
    expect(out.emoji.ids.slice(-4)).toEqual(bytes.map((b) => b + 3));
    expect(out.emoji.back).toBe('🦙');
  });

  it('sampling: each filter keeps the tokens its rule says', async () => {
    const { tryIt } = await import('./snippets/sampling.mjs');
    const out: Record<string, number[]> = tryIt();
    // softmax(l / T) by hand, in f64
    const ref = (t: number) => {
      const e = [2.0, 1.5, 1.0, 0.0, -1.0].map((l) => Math.exp(l / t));
      const s = e.reduce((a, b) => a + b);
      return e.map((x) => x / s);
    };
    for (const t of [0.5, 1, 2]) out[`p at T=${t}`].forEach((p, i) => expect(p).toBeCloseTo(ref(t)[i], 3));
    expect(out['greedy (T=0)']).toEqual([10, 0, 0, 0, 0]);
    const freq = (c: number[]) => c.map((x) => x / c.reduce((a, b) => a + b));
    // 2000 draws: each frequency within 0.05 (about 4 standard deviations) of its probability
    freq(out['T=1, top-p off']).forEach((f, i) => expect(Math.abs(f - ref(1)[i])).toBeLessThan(0.05));
    const kept = (c: number[]) => c.map((x, i) => (x > 0 ? i : -1)).filter((i) => i >= 0);
    expect(kept(out['T=1, top-k=2'])).toEqual([0, 1]);
    // top-p 0.6: p0 = 0.463 < 0.6, p0 + p1 = 0.744 > 0.6, so the nucleus is {0, 1}
    expect(kept(out['T=1, top-p=0.6'])).toEqual([0, 1]);
    // min-p 0.3: keep p >= 0.3 * p0 = 0.139: tokens 0, 1 (0.281), 2 (0.170); not 3 (0.063)
    expect(kept(out['T=1, min-p=0.3'])).toEqual([0, 1, 2]);
    // within the kept set, in proportion to the probabilities
    const k2 = freq(out['T=1, top-k=2']);
    expect(Math.abs(k2[0] - ref(1)[0] / (ref(1)[0] + ref(1)[1]))).toBeLessThan(0.05);
  });

  it('quantize: scale = max|w| / 127 and every error at most half a step', async () => {
    const { tryIt } = await import('./snippets/quantize.mjs');
    const { w, q, back, groups } = tryIt();
    for (let g = 0; g < 2; g++) {
      const group = Array.from(w.subarray(g * 32, (g + 1) * 32), Math.abs);
      expect(q.scales[g]).toBeCloseTo(Math.max(...group) / 127, 7);
      expect(groups[g].maxError).toBeLessThanOrEqual(q.scales[g] / 2 * (1 + 1e-6));
    }
    // the small group's step is 40x finer than the large group's: errors scale with each group's range
    expect(groups[0].maxError).toBeLessThan(groups[1].maxError / 10);
    expect(back.length).toBe(64);
  });

  it('formats: the .bin header and the GGUF metadata describe the same model', async (ctx) => {
    const missing = need('models/aidreams260K.bin', 'gguf/aidreams260K-q8_0.gguf');
    if (missing) return ctx.skip(missingMessage(missing));
    const { tryIt } = await import('./snippets/formats.mjs');
    const { config, metadata, types }: { config: { dim: number; nLayers: number; nHeads: number }; metadata: ReadonlyMap<string, unknown>; types: Record<string, string> } = await tryIt(paths());
    // shared/gguf/README.md: dim 64, 4 layers, vocab 512; llama.cpp's converter copied the .bin
    expect(config).toMatchObject({ dim: 64, nLayers: 4, vocabSize: 512 });
    expect(metadata.get('general.architecture')).toBe('llama');
    expect(Number(metadata.get('llama.embedding_length'))).toBe(config.dim);
    expect(Number(metadata.get('llama.block_count'))).toBe(config.nLayers);
    expect(Number(metadata.get('llama.attention.head_count'))).toBe(config.nHeads);
    // the README: Q8_0, with ffn_down F16 (rows of 172 are not a multiple of 32), norms F32
    expect(types['blk.0.attn_q.weight']).toMatch(/^Q8_0 \[64, 64\]$/);
    expect(types['blk.0.ffn_down.weight']).toMatch(/^F16 \[172, 64\]$/);
    expect(types['blk.0.attn_norm.weight']).toMatch(/^F32 \[64\]$/);
  });
});

describe('try-it snippets, more', () => {
  it('embeddings: the row is the file\'s bytes at the token\'s offset, and the neighbours are sorted by cosine', async (ctx) => {
    const missing = need('models/aidreams260K.bin', 'models/tok512-aidreams.bin');
    if (missing) return ctx.skip(missingMessage(missing));
    const { tryIt } = await import('./snippets/embeddings.mjs');
    const out: { id: number; x: number[]; dim: number; nearest: { id: number; cos: number }[] } = await tryIt(paths());
    // llama2.c v0: a 7-int32 header, then tok_embeddings (vocab, dim) f32 little-endian
    const file = readFileSync(paths().model);
    const at = 28 + out.id * out.dim * 4;
    const expected = Array.from({ length: out.dim }, (_, i) => file.readFloatLE(at + 4 * i));
    expect(out.x).toEqual(expected);
    expect(out.nearest).toHaveLength(5);
    for (let i = 1; i < 5; i++) expect(out.nearest[i - 1].cos).toBeGreaterThanOrEqual(out.nearest[i].cos);
    out.nearest.forEach((n) => expect(n.cos).toBeLessThanOrEqual(1 + 1e-6));
  });

  it('kv-cache: each slot holds its own positions, llama2.c\'s tokens, and reset empties it', async (ctx) => {
    const missing = need('models/aidreams260K.bin', 'models/tok512-aidreams.bin', 'goldens/generate.jsonl');
    if (missing) return ctx.skip(missingMessage(missing));
    const golden = generateGoldens().find((g) => g.id === 'aidreams-greedy-prompt')!;
    const { tryIt } = await import('./snippets/kv-cache.mjs');
    const out = await tryIt(paths());
    // 20 positions ran; the 21st token was sampled from the last of them and not read yet
    expect(out.cached.a).toEqual(golden.tokens.slice(0, 20));
    expect(out.ra.tokens).toEqual(golden.tokens.slice(0, 21));
    expect(out.cached.b).toEqual(out.rb.tokens.slice(0, 20));
    expect(out.afterReset).toBe(0);
    // b beside a decodes as b alone
    const { Llama } = await import('@rama/llama');
    const llama = await Llama.load({ model: paths().model, tokenizer: paths().tokenizer, backend: 'cpu' });
    try {
      const alone = await llama.generate('The night', { steps: 20, temperature: 0 }).result();
      expect(out.rb.tokens).toEqual(alone.tokens);
    } finally {
      llama.dispose();
    }
  });
});

describe('try-it snippets, rope', () => {
  it('rope: the score depends on m - n only (within float32 rounding), and changes with it', async () => {
    const { tryIt } = await import('./snippets/rope.mjs');
    const rows: { m: number; n: number; score: number }[] = await tryIt();
    // the angles are rounded to f32 (as llama2.c rounds them), so equal up to ~1e-5, not bit for bit
    expect(Math.abs(rows[0].score - rows[1].score)).toBeLessThan(1e-4);
    expect(Math.abs(rows[0].score - rows[2].score)).toBeGreaterThan(1e-2);
  });
});

describe('try-it snippets, kernels', () => {
  it('rmsnorm: y = x / sqrt(mean(x^2) + eps), recomputed in float64', async () => {
    const { tryIt } = await import('./snippets/rmsnorm.mjs');
    const rows: { x: number[]; y: number[] }[] = await tryIt();
    for (const { x, y } of rows) {
      const inv = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + 1e-5);
      x.forEach((v, i) => expect(Math.abs(y[i] - v * inv)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(v * inv))));
    }
    // eps dominates a tiny row: its output stays small instead of being blown up to rms 1
    const rms = (v: number[]) => Math.sqrt(v.reduce((s, a) => s + a * a, 0) / v.length);
    expect(rms(rows[0].y)).toBeLessThan(0.5);
    expect(rms(rows[2].y)).toBeCloseTo(1, 4);
  });

  it('swiglu: silu(g) = g / (1 + e^-g), recomputed in float64', async () => {
    const { tryIt } = await import('./snippets/swiglu.mjs');
    const { gate, silu }: { gate: number[]; silu: number[] } = await tryIt();
    gate.forEach((g, i) => expect(Math.abs(silu[i] - g / (1 + Math.exp(-g)))).toBeLessThan(1e-6));
  });

  it('gqa: stories260K has 8 query heads sharing 4 key/value heads, and half the KV cache', async (ctx) => {
    const missing = need('models/stories260K.bin');
    if (missing) return ctx.skip(missingMessage(missing));
    const { tryIt } = await import('./snippets/gqa.mjs');
    const out = await tryIt(paths());
    // shared/gguf/README.md: stories260K, 5 layers, GQA 8/4
    expect(out.config).toMatchObject({ dim: 64, nLayers: 5, nHeads: 8, nKvHeads: 4, kvDim: 32 });
    expect(out.wkShape).toEqual([32, 64]);
    expect(out.cache * 2).toBe(out.cacheWithout);
  });
});

describe('try-it snippets, attention', () => {
  it('attention: softmax(q.k / sqrt(headSize)) v over positions 0..p only, recomputed in float64', async () => {
    const { tryIt } = await import('./snippets/attention.mjs');
    const r = await tryIt();
    const { positions, headSize, nHeads, nKvHeads } = r;
    const dim = nHeads * headSize, kvDim = nKvHeads * headSize;
    for (let p = 0; p < positions; p++) {
      for (let h = 0; h < nHeads; h++) {
        const kvh = Math.floor(h / (nHeads / nKvHeads));
        const scores: number[] = [];
        for (let t = 0; t <= p; t++) {
          let s = 0;
          for (let i = 0; i < headSize; i++) s += r.q[p * dim + h * headSize + i] * r.k[t * kvDim + kvh * headSize + i];
          scores.push(s / Math.sqrt(headSize));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const sum = e.reduce((a, b) => a + b);
        for (let i = 0; i < headSize; i++) {
          let o = 0;
          for (let t = 0; t <= p; t++) o += (e[t] / sum) * r.v[t * kvDim + kvh * headSize + i];
          expect(Math.abs(r.out[p * dim + h * headSize + i] - o)).toBeLessThan(1e-5);
        }
      }
    }
    // the causal mask: rows before position 3 do not see what it holds; row 3 does
    expect(r.changed.slice(0, 3 * dim)).toEqual(r.out.slice(0, 3 * dim));
    expect(r.changed.slice(3 * dim)).not.toEqual(r.out.slice(3 * dim));
  });
});
