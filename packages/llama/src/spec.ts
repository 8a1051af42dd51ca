/**
 * The model described by data: everything the forward pass, the token loop
 * and chat need to know about a Llama-family model, in one place and outside
 * the file-format readers. A reader (today llama2.c's .bin) maps its header to
 * a ModelSpec; nothing else in @rama/llama assumes llama2.c's constants.
 */
import { ArgumentError } from '@rama/core';
import type { ModelConfig } from '@rama/checkpoint';
import { LLAMA2_CHAT, type ChatTemplate } from './template.js';

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

export interface ModelSpec {
  /** The architecture family; only `llama` is implemented. */
  architecture: 'llama';
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  /** Grouped-query attention: several query heads share one key/value head. */
  nKvHeads: number;
  headSize: number;
  /** nKvHeads * headSize */
  kvDim: number;
  vocabSize: number;
  /** The longest context the model was trained for. */
  maxContext: number;
  /** RMSNorm epsilon. */
  normEps: number;
  rope: RopeSpec;
  /** The classifier reuses the token embedding table. */
  tiedClassifier: boolean;
  /** Biases on the q, k, v projections (Qwen2); none for Llama. */
  attentionBias: boolean;
  bosId: number;
  eosId: number;
  /** Sampled ids that end a chat reply (EOS and any end-of-turn token). */
  stopIds: readonly number[];
  chatTemplate: ChatTemplate;
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
  if (spec.rope.freqFactors) no('RoPE frequency factors');
  if (spec.attentionBias) no('attention biases');
}
