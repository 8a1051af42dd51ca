/**
 * The model described by data: everything the forward pass, the token loop
 * and chat need to know about a Llama-family model, in one place and outside
 * the file-format readers. A reader (today llama2.c's .bin) maps its header to
 * a ModelSpec; nothing else in @rama/llama assumes llama2.c's constants.
 */
import { ArgumentError, FormatError } from '@rama/core';
import type { GGUFTensorInfo, GGUFValue, ModelConfig } from '@rama/checkpoint';
import { LLAMA2_CHAT, jinjaChatTemplate, type ChatTemplate, type JinjaChatTemplate, type SpecialToken } from './template.js';

/** Rotary position embedding. */
export interface RopeSpec {
  /** Base of the frequencies: pair i of a head turns by pos * theta^(-2i/rotaryDims). */
  theta: number;
  /**
   * Which elements form a rotated pair: `interleaved` (x[2i], x[2i+1]), as
   * llama2.c and Meta's reference code; `rotate-half` (x[i], x[i + d/2]), as
   * Hugging Face's Llama.
   */
  style: 'interleaved' | 'rotate-half';
  /** Leading dimensions of each head that are rotated (the head size for Llama). */
  rotaryDims: number;
  /** Per-pair frequency divisors (Llama 3.1's rope scaling), when the model has them. */
  freqFactors?: Float32Array;
}

/** Everything the forward pass, the token loop and chat need to know about a model (see docs/guide/). */
export interface ModelSpec {
  /** The architecture family; only `llama` is implemented. */
  architecture: 'llama';
  /** Width of the residual stream. */
  dim: number;
  /** Width of the feed-forward layer. */
  hiddenDim: number;
  /** Transformer layers. */
  nLayers: number;
  /** Query heads. */
  nHeads: number;
  /** Grouped-query attention: several query heads share one key/value head. */
  nKvHeads: number;
  /** Numbers per head: dim / nHeads. */
  headSize: number;
  /** nKvHeads * headSize */
  kvDim: number;
  /** Tokens in the vocabulary: one logit each. */
  vocabSize: number;
  /** The longest context the model was trained for. */
  maxContext: number;
  /** RMSNorm epsilon. */
  normEps: number;
  /** Rotary position embedding. */
  rope: RopeSpec;
  /** The classifier reuses the token embedding table. */
  tiedClassifier: boolean;
  /** Biases on the q, k, v projections (Qwen2); none for Llama. */
  attentionBias: boolean;
  /** Beginning-of-sequence token id. */
  bosId: number;
  /** End-of-sequence token id. */
  eosId: number;
  /** Sampled ids that end a chat reply (EOS and any end-of-turn token). */
  stopIds: readonly number[];
  /** Llama 2's turn-by-turn template, used by chat when the model has no Jinja template. */
  chatTemplate: ChatTemplate;
  /** The model's own chat template's text (a GGUF file's `tokenizer.chat_template`, Jinja). */
  chatTemplateSource?: string;
  /** That template, compiled: when present, chat renders the whole conversation with it. */
  jinjaTemplate?: JinjaChatTemplate;
}

/** llama2.c's model: its header's dimensions, and the constants run.c hard-codes. */
export function llama2cSpec(c: ModelConfig): ModelSpec {
  return {
    architecture: 'llama',
    dim: c.dim,
    hiddenDim: c.hiddenDim,
    nLayers: c.nLayers,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headSize: c.headSize,
    kvDim: c.kvDim,
    vocabSize: c.vocabSize,
    maxContext: c.seqLen,
    normEps: c.normEps,
    rope: { theta: c.ropeTheta, style: 'interleaved', rotaryDims: c.headSize },
    tiedClassifier: c.sharedClassifier,
    attentionBias: false,
    bosId: 1,
    eosId: 2,
    stopIds: [2],
    chatTemplate: LLAMA2_CHAT,
  };
}

/** Refuses what the forward pass cannot run yet, naming it, before anything is uploaded. */
export function checkSupported(spec: ModelSpec, source: string): void {
  const no = (what: string) => {
    throw new ArgumentError(`${source}: ${what} is not supported yet`);
  };
  if (spec.architecture !== 'llama') no(`architecture ${spec.architecture}`);
  if (spec.rope.style !== 'interleaved') no(`RoPE style ${spec.rope.style}`);
  if (spec.rope.rotaryDims !== spec.headSize) no(`partial rotary embedding (${spec.rope.rotaryDims} of ${spec.headSize} dims)`);
  if (spec.attentionBias) no('attention biases');
}

/** The GGUF metadata keys of architecture `llama` that ggufSpec reads or refuses. */
const LLAMA_KEYS_REFUSED = ['rope.scaling.type', 'rope.scaling.factor', 'rope.scale_linear', 'attention.layer_norm_epsilon', 'expert_count'];

/**
 * A GGUF file's model (architecture `llama`), from its metadata as llama.cpp
 * reads it: dimensions from `llama.*`, the vocabulary size from the token
 * list, special ids from `tokenizer.ggml.*`, a tied classifier when the file
 * has no `output.weight`. Anything the forward pass does not compute (another
 * architecture, RoPE scaling, per-pair RoPE factors, attention biases, a
 * partial rotary embedding) is a FormatError naming it.
 */
export function ggufSpec(metadata: ReadonlyMap<string, GGUFValue>, tensors: ReadonlyMap<string, GGUFTensorInfo>, source: string): ModelSpec {
  const fail = (msg: string): never => {
    throw new FormatError(`${source}: ${msg}`);
  };
  const arch = metadata.get('general.architecture');
  if (arch === undefined) fail('has no general.architecture');
  if (arch !== 'llama') fail(`architecture ${JSON.stringify(arch)} is not supported (only "llama" is)`);

  const int = (key: string, dflt?: number): number => {
    const v = metadata.get(key);
    if (v === undefined) {
      if (dflt !== undefined) return dflt;
      fail(`has no ${key}`);
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${key} is ${String(v)}, expected a non-negative integer`);
    return v as number;
  };
  const float = (key: string, dflt?: number): number => {
    const v = metadata.get(key);
    if (v === undefined) {
      if (dflt !== undefined) return dflt;
      fail(`has no ${key}`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${key} is ${String(v)}, expected a number`);
    return v as number;
  };
  for (const k of LLAMA_KEYS_REFUSED) {
    const v = metadata.get(`llama.${k}`);
    // llama.cpp writes rope.scaling.type "none" and factor 1 for unscaled models.
    if (v === undefined || v === 'none' || (k !== 'rope.scaling.type' && v === 1) || (k === 'expert_count' && v === 0)) continue;
    fail(`llama.${k} = ${String(v)} is not supported yet`);
  }
  for (const name of tensors.keys()) {
    if (/\.bias$/.test(name)) fail(`has ${name}: biases are not supported yet`);
  }

  const dim = int('llama.embedding_length');
  const hiddenDim = int('llama.feed_forward_length');
  const nLayers = int('llama.block_count');
  const nHeads = int('llama.attention.head_count');
  const nKvHeads = int('llama.attention.head_count_kv', nHeads);
  if (dim < 1 || hiddenDim < 1 || nLayers < 1 || nHeads < 1 || nKvHeads < 1) fail(`has a zero dimension (dim ${dim}, ffn ${hiddenDim}, layers ${nLayers}, heads ${nHeads}/${nKvHeads})`);
  if (dim % nHeads !== 0) fail(`embedding_length ${dim} is not a multiple of head_count ${nHeads}`);
  if (nHeads % nKvHeads !== 0) fail(`head_count ${nHeads} is not a multiple of head_count_kv ${nKvHeads}`);
  const headSize = dim / nHeads;
  const rotaryDims = int('llama.rope.dimension_count', headSize);
  if (rotaryDims !== headSize) fail(`llama.rope.dimension_count is ${rotaryDims}, the head size ${headSize}: partial rotary embedding is not supported yet`);
  for (const k of ['llama.attention.key_length', 'llama.attention.value_length']) {
    const v = metadata.get(k);
    if (v !== undefined && v !== headSize) fail(`${k} is ${String(v)}, not the head size ${headSize}: not supported yet`);
  }
  const maxContext = int('llama.context_length');
  if (maxContext < 1) fail('llama.context_length is 0');

  const tokens = metadata.get('tokenizer.ggml.tokens');
  if (!Array.isArray(tokens) || tokens.length === 0 || !tokens.every((t) => typeof t === 'string')) fail('has no tokenizer.ggml.tokens (a list of strings)');
  const vocabSize = (tokens as string[]).length;

  const special = (key: string, dflt: number): number => {
    const id = int(`tokenizer.ggml.${key}`, dflt);
    if (id >= vocabSize) fail(`tokenizer.ggml.${key} is ${id}, outside the ${vocabSize}-token vocabulary`);
    return id;
  };
  const bosId = special('bos_token_id', 1);
  const eosId = special('eos_token_id', 2);
  const stop = new Set([eosId]);
  // llama.cpp also ends generation at these tokens by their text, even where no id names them.
  for (const text of EOG_TEXTS) {
    const id = (tokens as string[]).indexOf(text);
    if (id >= 0) stop.add(id);
  }
  const eot = metadata.get('tokenizer.ggml.eot_token_id');
  if (typeof eot === 'number' && eot < vocabSize) stop.add(eot);
  const eom = metadata.get('tokenizer.ggml.eom_token_id');
  if (typeof eom === 'number' && eom < vocabSize) stop.add(eom);

  const template = metadata.get('tokenizer.chat_template');
  let jinjaTemplate: JinjaChatTemplate | undefined;
  if (template !== undefined) {
    if (typeof template !== 'string') fail('tokenizer.chat_template is not a string');
    const types = metadata.get('tokenizer.ggml.token_type');
    jinjaTemplate = jinjaChatTemplate(template as string, {
      origin: source,
      bosToken: (tokens as string[])[bosId],
      eosToken: (tokens as string[])[eosId],
      specials: specialTokens(tokens as string[], types instanceof Int32Array ? types : undefined, [bosId, eosId]),
    });
  }
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
    maxContext,
    // Required, as llama.cpp requires it for llama; the RoPE base defaults to 10000 as there.
    normEps: float('llama.attention.layer_norm_rms_epsilon'),
    rope: { theta: float('llama.rope.freq_base', 10000), style: 'interleaved', rotaryDims },
    tiedClassifier: !tensors.has('output.weight'),
    attentionBias: false,
    bosId,
    eosId,
    stopIds: [...stop],
    chatTemplate: LLAMA2_CHAT,
    ...(jinjaTemplate ? { chatTemplateSource: template as string, jinjaTemplate } : {}),
  };
}

/** Token texts llama.cpp treats as end of generation wherever they are in a vocabulary. */
const EOG_TEXTS = ['<|eot_id|>', '<|eom_id|>', '<|end_of_text|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>'];

/** llama.cpp's token types whose text a chat prompt's tokenization reads as the token: unknown, control, user-defined. */
const SPECIAL_TYPES = new Set([2, 3, 4]);

/** The tokens whose text stands for them in a rendered chat template (BOS and EOS always). */
export function specialTokens(tokens: readonly string[], types: ArrayLike<number> | undefined, always: readonly number[]): SpecialToken[] {
  const ids = new Set(always);
  if (types) for (let i = 0; i < tokens.length; i++) if (SPECIAL_TYPES.has(types[i])) ids.add(i);
  return [...ids].map((id) => ({ text: tokens[id], id }));
}
