/**
 * Hugging Face checkpoints of LlamaForCausalLM: `config.json` and the
 * weights as safetensors (`model.safetensors`, or shards listed by
 * `model.safetensors.index.json`), F32, F16 or BF16. The model is the same
 * ModelSpec as a GGUF file's; the weights are read under llama2.c's names,
 * converted to f32, with q_proj/k_proj rows put back in the interleaved RoPE
 * order (Hugging Face's conversion permutes them for rotate-half RoPE; GGUF
 * and llama2.c keep Meta's order, as llama.cpp's convert_hf_to_gguf.py
 * restores it).
 */
import {
  GGML_TYPES, ggmlToF32, openSafetensors,
  type ModelConfig, type Q80Data, type SafetensorsFile, type SafetensorsTensor, type TensorEntry,
} from '@rama/checkpoint';
import { ArgumentError, FormatError } from '@rama/core';
import { Tokenizer } from '@rama/tokenizer';
import { LLAMA2_CHAT, jinjaChatTemplate, type SpecialToken } from './template.js';
import type { ModelSpec } from './spec.js';
import { configOfSpec, type WeightSource } from './weights.js';

type Source = string | Blob | ArrayBuffer | Uint8Array;

/** A Hugging Face model given file by file (any environment). */
export interface HfModelFiles {
  /** config.json: its parsed object, or the file (a path in Node, a Blob, or its bytes). */
  config: Record<string, unknown> | Source;
  /** The safetensors files (one, or every shard; in any order). */
  weights: readonly Source[];
  /** tokenizer.json; without it, Llama.load needs its `tokenizer` option. */
  tokenizer?: Source;
  /** tokenizer_config.json, read with tokenizer.json (BOS/EOS, whether to add them, its `chat_template`). */
  tokenizerConfig?: Source;
  /** The chat template's text (a folder's chat_template.jinja), instead of tokenizer_config.json's. */
  chatTemplate?: string;
  /** model.safetensors.index.json's weight_map (tensor name to file name): each tensor must be in the file it names. */
  weightMap?: Readonly<Record<string, string>>;
}

export interface OpenedHfModel {
  spec: ModelSpec;
  config: ModelConfig;
  weights: WeightSource;
  /** From tokenizer.json, when given. */
  tokenizer?: Tokenizer;
  close(): Promise<void>;
}

/** Whether `x` is the object form of a Hugging Face model ({ config, weights }). */
export function isHfModelFiles(x: unknown): x is HfModelFiles {
  return typeof x === 'object' && x !== null && !ArrayBuffer.isView(x) && !(x instanceof ArrayBuffer) &&
    !(typeof Blob !== 'undefined' && x instanceof Blob) && !Array.isArray(x) && 'weights' in x && 'config' in x;
}

/** Whether `path` is a directory (Node; false elsewhere or when it cannot be read). */
export async function isDirectory(path: string): Promise<boolean> {
  if (typeof process === 'undefined' || !process.versions?.node) return false;
  try {
    const fs = await import('node:fs/promises');
    return (await fs.stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** The files of a model folder (Node): config.json, and model.safetensors or the shards its index names. */
export async function hfFolderFiles(dir: string): Promise<HfModelFiles> {
  const fs = await import('node:fs/promises');
  const { join } = await import('node:path');
  const exists = async (p: string) => fs.stat(p).then((s) => s.isFile(), () => false);
  const config = join(dir, 'config.json');
  if (!(await exists(config))) throw new FormatError(`${dir}: a model folder needs a config.json (Hugging Face's LlamaForCausalLM layout), none found`);
  const index = join(dir, 'model.safetensors.index.json');
  let weights: string[];
  let weightMap: Record<string, string> | undefined;
  if (await exists(index)) {
    const map = (readJson(await fs.readFile(index), index) as { weight_map?: unknown }).weight_map;
    if (map === null || typeof map !== 'object' || !Object.values(map).every((f) => typeof f === 'string' && f && !f.includes('/') && !f.includes('\\'))) {
      throw new FormatError(`${index}: weight_map is not an object of tensor name to file name`);
    }
    weightMap = map as Record<string, string>;
    weights = [...new Set(Object.values(weightMap))].sort().map((f) => join(dir, f));
  } else if (await exists(join(dir, 'model.safetensors'))) {
    weights = [join(dir, 'model.safetensors')];
  } else {
    throw new FormatError(`${dir}: has neither model.safetensors nor model.safetensors.index.json`);
  }
  const tokenizerJson = join(dir, 'tokenizer.json');
  const tokenizerConfig = join(dir, 'tokenizer_config.json');
  const jinja = join(dir, 'chat_template.jinja');
  return {
    ...(weightMap ? { weightMap } : {}),
    ...((await exists(jinja)) ? { chatTemplate: new TextDecoder().decode(await fs.readFile(jinja)) } : {}),
    config,
    weights,
    ...((await exists(tokenizerJson)) ? { tokenizer: tokenizerJson } : {}),
    ...((await exists(tokenizerConfig)) ? { tokenizerConfig } : {}),
  };
}

function readJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new FormatError(`${what}: not UTF-8 JSON: ${(e as Error).message}`);
  }
}

/** A source's bytes (a path in Node, a Blob, or bytes) and its name. */
export async function readSource(src: Source, fallback: string): Promise<{ bytes: Uint8Array; name: string }> {
  if (typeof src === 'string') {
    const { openFileSource } = await import('@rama/core/node');
    const f = await openFileSource(src, { what: fallback });
    try {
      const bytes = new Uint8Array(f.size);
      await f.readAt(bytes, 0);
      return { bytes, name: src };
    } finally {
      await f.close();
    }
  }
  if (typeof Blob !== 'undefined' && src instanceof Blob) {
    const n = (src as Blob & { name?: unknown }).name;
    return { bytes: new Uint8Array(await src.arrayBuffer()), name: typeof n === 'string' && n ? n : fallback };
  }
  if (src instanceof Uint8Array) return { bytes: src, name: fallback };
  if (src instanceof ArrayBuffer) return { bytes: new Uint8Array(src), name: fallback };
  throw new ArgumentError(`${fallback}: expected a path, Blob, ArrayBuffer or Uint8Array, got ${Object.prototype.toString.call(src)}`);
}

/** Opens a Hugging Face LlamaForCausalLM model: its spec from config.json, its weights from the safetensors files. */
export async function openHfModel(files: HfModelFiles): Promise<OpenedHfModel> {
  if (!Array.isArray(files.weights) || files.weights.length === 0) throw new ArgumentError('model.weights must be a non-empty array of safetensors files');
  let config: unknown = files.config;
  let configName = 'config.json';
  if (typeof config === 'string' || config instanceof Uint8Array || config instanceof ArrayBuffer || (typeof Blob !== 'undefined' && config instanceof Blob)) {
    const { bytes, name } = await readSource(config as Source, 'config.json');
    configName = name;
    config = readJson(bytes, name);
  }
  const opened: SafetensorsFile[] = [];
  try {
    for (const [i, w] of files.weights.entries()) opened.push(await openSafetensors(w, typeof w === 'string' || (w as { name?: unknown }).name ? {} : { name: `weights[${i}]` }));
    if (files.weightMap) checkWeightMap(opened, files.weightMap);
    const spec = hfSpec(config, configName);
    const weights = hfWeightSource(opened, spec);
    let tokenizer: Tokenizer | undefined;
    if (files.tokenizer !== undefined) {
      const t = await hfTokenizer(files.tokenizer, files.tokenizerConfig, files.chatTemplate, spec);
      tokenizer = t.tokenizer;
      if (t.template) Object.assign(spec, { chatTemplateSource: t.template.source, jinjaTemplate: t.template });
    }
    return {
      spec, config: configOfSpec(spec), weights, ...(tokenizer ? { tokenizer } : {}),
      close: async () => void (await Promise.all(opened.map((f) => f.close()))),
    };
  } catch (e) {
    await Promise.all(opened.map((f) => f.close().catch(() => {})));
    throw e;
  }
}

/** Checks that each shard holds exactly the tensors the index says it does (files matched by their names). */
function checkWeightMap(files: readonly SafetensorsFile[], map: Readonly<Record<string, string>>): void {
  const index = 'model.safetensors.index.json';
  const byName = new Map(files.map((f) => [f.source.split(/[\\/]/).pop()!, f]));
  for (const [tensor, name] of Object.entries(map)) {
    const f = byName.get(name);
    if (!f) throw new FormatError(`${index}: puts ${tensor} in ${name}, which is not among the weights given`);
    if (!f.tensors.has(tensor)) throw new FormatError(`${f.source}: has no tensor ${tensor}, which ${index} says it holds`);
  }
  for (const f of files) {
    for (const tensor of f.tensors.keys()) {
      if (map[tensor] === undefined) throw new FormatError(`${f.source}: has tensor ${tensor}, which ${index} does not list`);
    }
  }
}

/**
 * tokenizer.json (with tokenizer_config.json), checked against the model's
 * vocabulary, and the chat template (chat_template.jinja, else
 * tokenizer_config.json's `chat_template`): its special tokens are
 * tokenizer.json's added tokens, as Hugging Face's tokenizers match them in
 * text.
 */
async function hfTokenizer(
  json: Source, config: Source | undefined, templateText: string | undefined, spec: ModelSpec,
): Promise<{ tokenizer: Tokenizer; template?: ReturnType<typeof jinjaChatTemplate> }> {
  const { bytes, name } = await readSource(json, 'tokenizer.json');
  const cfg = config === undefined ? undefined : await readSource(config, 'tokenizer_config.json');
  const tokenizer = Tokenizer.fromTokenizerJson(bytes, cfg?.bytes, { source: name });
  // config.json's vocab_size may be padded past the tokenizer's; never the other way round.
  if (tokenizer.vocabSize > spec.vocabSize) throw new FormatError(`${name}: has ${tokenizer.vocabSize} tokens, more than the model's vocab_size ${spec.vocabSize}`);
  const cfgJson = cfg ? (readJson(cfg.bytes, cfg.name) as Record<string, unknown>) : {};
  let text = templateText;
  const origin = text === undefined ? cfg?.name ?? name : 'chat_template.jinja';
  if (text === undefined) {
    const t = cfgJson.chat_template;
    // A list of named templates: the default one.
    const named = Array.isArray(t) ? (t.find((x) => x && typeof x === 'object' && x.name === 'default') as { template?: unknown } | undefined)?.template : t;
    if (named !== undefined && named !== null && typeof named !== 'string') throw new FormatError(`${origin}: chat_template is not a string`);
    text = named ?? undefined;
  }
  if (text === undefined) return { tokenizer };
  const added = (readJson(bytes, name) as { added_tokens?: unknown }).added_tokens;
  const specials: SpecialToken[] = Array.isArray(added)
    ? added.filter((a) => a && typeof a.content === 'string' && Number.isInteger(a.id)).map((a) => ({ text: a.content as string, id: a.id as number }))
    : [];
  const tokenText = (key: string, id: number): string => {
    const v = cfgJson[key];
    if (typeof v === 'string') return v;
    if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
    return specials.find((s) => s.id === id)?.text ?? '';
  };
  const template = jinjaChatTemplate(text, { origin, bosToken: tokenText('bos_token', spec.bosId), eosToken: tokenText('eos_token', spec.eosId), specials });
  return { tokenizer, template };
}

/**
 * The model of a Hugging Face LlamaForCausalLM config.json, with
 * transformers' defaults for keys it leaves out. What the forward pass does
 * not compute (another architecture, biases, another activation, a head size
 * other than hidden_size / heads, RoPE scaling other than Llama 3's) is a
 * FormatError naming it.
 */
export function hfSpec(config: unknown, source: string): ModelSpec {
  const fail = (msg: string): never => {
    throw new FormatError(`${source}: ${msg}`);
  };
  if (config === null || typeof config !== 'object' || Array.isArray(config)) fail('is not a JSON object');
  const c = config as Record<string, unknown>;
  const archs = c.architectures;
  if (archs !== undefined && !(Array.isArray(archs) && archs.includes('LlamaForCausalLM'))) fail(`architectures is ${JSON.stringify(archs)}: only LlamaForCausalLM is supported`);
  if (c.model_type !== undefined && c.model_type !== 'llama') fail(`model_type is ${JSON.stringify(c.model_type)}: only "llama" is supported`);
  const int = (key: string, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (v === undefined) fail(`has no ${key}`);
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) fail(`${key} is ${JSON.stringify(v)}, expected a positive integer`);
    return v as number;
  };
  const num = (key: string, dflt: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`${key} is ${JSON.stringify(v)}, expected a positive number`);
    return v as number;
  };
  const dim = int('hidden_size');
  const hiddenDim = int('intermediate_size');
  const nLayers = int('num_hidden_layers');
  const nHeads = int('num_attention_heads');
  const nKvHeads = int('num_key_value_heads', nHeads);
  const vocabSize = int('vocab_size');
  if (dim % nHeads !== 0) fail(`hidden_size ${dim} is not a multiple of num_attention_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) fail(`num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  const headSize = dim / nHeads;
  if (headSize % 2 !== 0) fail(`the head size ${headSize} is odd: RoPE rotates pairs`);
  if (c.head_dim != null && c.head_dim !== headSize) fail(`head_dim ${JSON.stringify(c.head_dim)} is not hidden_size / num_attention_heads (${headSize}): not supported yet`);
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') fail(`hidden_act is ${JSON.stringify(act)}: only "silu" is supported`);
  for (const k of ['attention_bias', 'mlp_bias']) if (c[k] === true) fail(`${k} is true: biases are not supported yet`);
  const theta = num('rope_theta', 10000);
  const ids = (key: string, dflt: number): number[] => {
    const v = c[key] ?? dflt;
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0 || !list.every((x) => Number.isSafeInteger(x) && x >= 0 && x < vocabSize)) fail(`${key} is ${JSON.stringify(v)}, expected token ids below vocab_size ${vocabSize}`);
    return list as number[];
  };
  const bosId = ids('bos_token_id', 1)[0];
  const eos = ids('eos_token_id', 2);
  const tied = c.tie_word_embeddings ?? false;
  if (typeof tied !== 'boolean') fail(`tie_word_embeddings is ${JSON.stringify(tied)}, expected true or false`);
  const freqFactors = ropeScaling(c.rope_scaling, theta, headSize, fail);
  return {
    architecture: 'llama',
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headSize,
    kvDim: nKvHeads * headSize,
    vocabSize,
    maxContext: int('max_position_embeddings', 2048),
    normEps: num('rms_norm_eps', 1e-6),
    // The weights are put back in the interleaved order at load (see hfWeightSource).
    rope: { theta, style: 'interleaved', rotaryDims: headSize, ...(freqFactors ? { freqFactors } : {}) },
    tiedClassifier: tied as boolean,
    attentionBias: false,
    bosId,
    eosId: eos[0],
    stopIds: [...new Set(eos)],
    chatTemplate: LLAMA2_CHAT,
  };
}

/**
 * Llama 3.1's rope_scaling ({ rope_type: "llama3", factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings }) as per-pair frequency
 * divisors, as llama.cpp's converter computes its rope_freqs tensor; no
 * scaling gives undefined, any other kind is refused.
 */
function ropeScaling(s: unknown, theta: number, headSize: number, fail: (msg: string) => never): Float32Array | undefined {
  if (s === undefined || s === null) return undefined;
  if (typeof s !== 'object' || Array.isArray(s)) fail(`rope_scaling is ${JSON.stringify(s)}, expected an object or null`);
  const r = s as Record<string, unknown>;
  const type = r.rope_type ?? r.type;
  if (type === 'default') return undefined;
  if (type !== 'llama3') fail(`rope_scaling type ${JSON.stringify(type)} is not supported (only "llama3")`);
  const num = (k: string, dflt: number): number => {
    const v = r[k] ?? dflt;
    if (typeof v !== 'number' || !(v > 0)) fail(`rope_scaling.${k} is ${JSON.stringify(v)}, expected a positive number`);
    return v as number;
  };
  const factor = num('factor', 8);
  const low = num('low_freq_factor', 1);
  const high = num('high_freq_factor', 4);
  const old = num('original_max_position_embeddings', 8192);
  if (!(high > low)) fail(`rope_scaling.high_freq_factor ${high} is not above low_freq_factor ${low}`);
  const out = new Float32Array(headSize / 2);
  for (let i = 0; i < out.length; i++) {
    const wavelen = (2 * Math.PI) / theta ** (-(2 * i) / headSize);
    if (wavelen < old / high) out[i] = 1;
    else if (wavelen > old / low) out[i] = factor;
    else {
      const smooth = (old / wavelen - low) / (high - low);
      out[i] = 1 / ((1 - smooth) / factor + smooth);
    }
  }
  return out;
}

/** The float dtypes read (as f32). */
const FLOAT_TYPES: Record<string, number> = { F32: 0, F16: 1, BF16: 30 };

/**
 * The safetensors tensors of a LlamaForCausalLM under llama2.c's names, as
 * f32. Every tensor the model needs must be present once with its shape, in
 * a float dtype; others are a FormatError (but rotary_emb.inv_freq buffers,
 * which old checkpoints saved, and a tied model's saved lm_head are ignored).
 */
export function hfWeightSource(files: readonly SafetensorsFile[], spec: ModelSpec): WeightSource {
  const first = files[0].source;
  const source = files.length === 1 ? first : `${first} (+${files.length - 1} more shard${files.length > 2 ? 's' : ''})`;
  const all = new Map<string, { file: SafetensorsFile; t: SafetensorsTensor }>();
  for (const file of files) {
    for (const [name, t] of file.tensors) {
      const other = all.get(name);
      if (other) throw new FormatError(`${file.source}: tensor ${name} is also in ${other.file.source}`);
      all.set(name, { file, t });
    }
  }
  const { dim, kvDim, hiddenDim, vocabSize } = spec;
  const tensors = new Map<string, TensorEntry>();
  const origin = new Map<TensorEntry, { file: SafetensorsFile; t: SafetensorsTensor; heads?: number }>();
  const used = new Set<string>();
  const map = (ours: string, theirs: string, shape: number[], heads?: number): void => {
    const found = all.get(theirs);
    if (!found) throw new FormatError(`${source}: has no tensor ${theirs}`);
    const { file, t } = found;
    used.add(theirs);
    if (t.shape.length !== shape.length || t.shape.some((n, i) => n !== shape[i])) {
      throw new FormatError(`${file.source}: tensor ${theirs} has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] for this config`);
    }
    if (!(t.dtype in FLOAT_TYPES)) throw new FormatError(`${file.source}: tensor ${theirs} is ${t.dtype}: only F32, F16 and BF16 are supported`);
    const entry: TensorEntry = { shape, dtype: 'f32', label: ours, byteOffset: t.byteOffset, byteLength: 4 * t.elements };
    tensors.set(ours, entry);
    origin.set(entry, { file, t, heads });
  };

  map('tok_embeddings', 'model.embed_tokens.weight', [vocabSize, dim]);
  for (let l = 0; l < spec.nLayers; l++) {
    const p = `layers.${l}`;
    const h = `model.layers.${l}`;
    map(`${p}.rms_att`, `${h}.input_layernorm.weight`, [dim]);
    map(`${p}.wq`, `${h}.self_attn.q_proj.weight`, [dim, dim], spec.nHeads);
    map(`${p}.wk`, `${h}.self_attn.k_proj.weight`, [kvDim, dim], spec.nKvHeads);
    map(`${p}.wv`, `${h}.self_attn.v_proj.weight`, [kvDim, dim]);
    map(`${p}.wo`, `${h}.self_attn.o_proj.weight`, [dim, dim]);
    map(`${p}.rms_ffn`, `${h}.post_attention_layernorm.weight`, [dim]);
    map(`${p}.w1`, `${h}.mlp.gate_proj.weight`, [hiddenDim, dim]);
    map(`${p}.w2`, `${h}.mlp.down_proj.weight`, [dim, hiddenDim]);
    map(`${p}.w3`, `${h}.mlp.up_proj.weight`, [hiddenDim, dim]);
  }
  map('rms_final', 'model.norm.weight', [dim]);
  if (!spec.tiedClassifier) map('wcls', 'lm_head.weight', [vocabSize, dim]);
  for (const [name, { file }] of all) {
    if (used.has(name) || name.endsWith('.rotary_emb.inv_freq') || (spec.tiedClassifier && name === 'lm_head.weight')) continue;
    throw new FormatError(`${file.source}: has tensor ${name}, which a LlamaForCausalLM does not use`);
  }

  const readInto = async (entry: TensorEntry, dst: Uint8Array): Promise<void> => {
    const o = origin.get(entry);
    if (!o || dst.byteLength !== entry.byteLength) throw new Error(`${source}: readInto(${entry.label}): not this source's tensor, or the wrong size`);
    const { file, t, heads } = o;
    const n = t.elements;
    const aligned = dst.byteOffset % 4 === 0;
    if (t.dtype === 'F32' && heads === undefined) return file.readInto(t, dst);
    const raw = new Uint8Array(t.byteLength);
    await file.readInto(t, raw);
    let values: Float32Array = new Float32Array(n);
    ggmlToF32(GGML_TYPES.get(FLOAT_TYPES[t.dtype])!, raw, values, n, `${file.source}: tensor ${t.name}`);
    if (heads !== undefined) values = unpermute(values, heads, entry.shape[0] / heads, entry.shape[1]);
    if (aligned) new Float32Array(dst.buffer, dst.byteOffset, n).set(values);
    else dst.set(new Uint8Array(values.buffer));
  };

  const read = async (name: string): Promise<Float32Array | Q80Data> => {
    const e = tensors.get(name);
    if (!e) throw new Error(`${source}: no tensor ${name}`);
    const buf = new ArrayBuffer(e.byteLength);
    await readInto(e, new Uint8Array(buf));
    return new Float32Array(buf);
  };

  return { source, tensors, readInto, read, config: { nLayers: spec.nLayers, sharedClassifier: spec.tiedClassifier } };
}

/**
 * Undoes Hugging Face's q/k permutation: within each head, its row j*hs/2 + i
 * (half j of the rotate-half layout) goes back to row 2i + j (interleaved pairs).
 */
export function unpermute(w: Float32Array, heads: number, headSize: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headSize / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * headSize + j * half + i) * cols;
        const to = (h * headSize + 2 * i + j) * cols;
        out.set(w.subarray(from, from + cols), to);
      }
    }
  }
  return out;
}
