/**
 * Opening a model file of either format: a GGUF file (found by its magic,
 * whatever its name) carries its model description, weights and tokenizer
 * (SentencePiece, or Llama 3's byte-level BPE); a llama2.c checkpoint needs a
 * tokenizer.bin beside it.
 */
import {
  ggufSplitPaths, isGGUF, joinSplits, openCheckpoint, openGGUFSplits, openModelSource, readGGUF,
  type CheckpointFormat, type GGUFFile, type GGUFSource, type ModelConfig,
} from '@rama/checkpoint';
import { FormatError } from '@rama/core';
import { Tokenizer } from '@rama/tokenizer';
import { ggufSpec, llama2cSpec, type ModelSpec } from './spec.js';
import { configOfSpec, ggufWeightSource, ROPE_FREQS, type WeightSource } from './weights.js';
import { hfFolderFiles, isDirectory, isHfModelFiles, openHfModel, type HfModelFiles } from './hf-model.js';

export type ModelFormat = CheckpointFormat | 'gguf' | 'safetensors';

export interface OpenedModel {
  format: ModelFormat;
  spec: ModelSpec;
  config: ModelConfig;
  weights: WeightSource;
  /** A GGUF file's own tokenizer; undefined for a llama2.c checkpoint. */
  tokenizer?: Tokenizer;
  /** Whether some matrices are stored as q8_0 (a v2 checkpoint, or a quantized GGUF file). */
  quantized: boolean;
  close(): Promise<void>;
}

/**
 * Opens a llama2.c checkpoint or a GGUF file (by its first four bytes). An
 * array is the splits of one GGUF model (gguf-split's files, in any order);
 * a path named like a split (`model-00001-of-00003.gguf`) opens its siblings
 * by name too. A Hugging Face LlamaForCausalLM model (safetensors) is a
 * folder (Node) or { config, weights } (see hf-model.ts).
 */
export async function openModel(source: GGUFSource | readonly GGUFSource[] | HfModelFiles): Promise<OpenedModel> {
  if (Array.isArray(source)) return ggufModel(await openGGUFSplits(source));
  if (isHfModelFiles(source)) return hfModel(source);
  if (typeof source === 'string' && (await isDirectory(source))) return hfModel(await hfFolderFiles(source));
  const single = source as GGUFSource;
  const { src, name } = await openModelSource(single, { what: 'model' });
  let gguf: GGUFFile;
  try {
    const head = new Uint8Array(Math.min(4, src.size));
    await src.readAt(head, 0);
    if (!isGGUF(head)) {
      await src.close();
      const ckpt = await openCheckpoint(single);
      return {
        format: ckpt.format,
        spec: llama2cSpec(ckpt.config),
        config: ckpt.config,
        weights: ckpt,
        quantized: ckpt.format === 'v2',
        close: () => ckpt.close(),
      };
    }
    gguf = await readGGUF(src, name);
  } catch (e) {
    await src.close().catch(() => {});
    throw e;
  }
  const siblings = typeof single === 'string' ? ggufSplitPaths(single) : undefined;
  if (siblings && siblings.length > 1) {
    // The given split stays open; the others are opened by their names.
    try {
      const others = siblings.filter((p) => p !== single);
      const opened: GGUFFile[] = [gguf];
      try {
        for (const p of others) opened.push(await readGGUFPath(p));
      } catch (e) {
        await Promise.all(opened.slice(1).map((f) => f.close().catch(() => {})));
        throw e;
      }
      gguf = joinSplits(opened);
    } catch (e) {
      await gguf.close().catch(() => {});
      throw e;
    }
  } else {
    try {
      gguf = joinSplits([gguf]);
    } catch (e) {
      await gguf.close().catch(() => {});
      throw e;
    }
  }
  return ggufModel(gguf);
}

async function hfModel(files: HfModelFiles): Promise<OpenedModel> {
  const m = await openHfModel(files);
  return { format: 'safetensors', ...m, quantized: false };
}

async function readGGUFPath(path: string): Promise<GGUFFile> {
  const { src, name } = await openModelSource(path, { what: 'GGUF split' });
  try {
    return await readGGUF(src, name);
  } catch (e) {
    await src.close().catch(() => {});
    throw e;
  }
}

/** A GGUF model's spec, weights and tokenizer; closes the file when they cannot be made. */
async function ggufModel(gguf: GGUFFile): Promise<OpenedModel> {
  const name = gguf.source;
  try {
    const spec = await ggufRopeFactors(gguf, ggufSpec(gguf.metadata, gguf.tensors, name));
    const weights = ggufWeightSource(gguf, spec);
    const tokenizer = ggufTokenizer(gguf, spec);
    const quantized = [...weights.tensors.values()].some((t) => t.dtype === 'q8_0');
    return { format: 'gguf', spec, config: configOfSpec(spec), weights, tokenizer, quantized, close: () => gguf.close() };
  } catch (e) {
    await gguf.close().catch(() => {});
    throw e;
  }
}

/**
 * Llama 3.1 and 3.2 files carry their rope scaling as `rope_freqs.weight`:
 * one F32 factor per rotated pair, dividing that pair's frequency (as
 * llama.cpp's rope does); the spec gets them.
 */
async function ggufRopeFactors(gguf: GGUFFile, spec: ModelSpec): Promise<ModelSpec> {
  const t = gguf.tensors.get(ROPE_FREQS);
  if (!t) return spec;
  const pairs = spec.rope.rotaryDims / 2;
  if (t.type.name !== 'F32' || t.elements !== pairs) {
    throw new FormatError(`${gguf.source}: ${ROPE_FREQS} is ${t.type.name} with ${t.elements} elements, expected F32 with ${pairs} (one per rotated pair)`);
  }
  const bytes = new Uint8Array(4 * pairs);
  await gguf.readInto(t, bytes);
  const freqFactors = new Float32Array(bytes.buffer);
  if (!freqFactors.every((f) => Number.isFinite(f) && f > 0)) throw new FormatError(`${gguf.source}: ${ROPE_FREQS} holds a factor that is not a positive number`);
  return { ...spec, rope: { ...spec.rope, freqFactors } };
}

const SPM_SPACE = /\u2581/g;
/** llama.cpp's token types. */
const TOKEN_TYPE_BYTE = 6;

/**
 * The tokenizer of a GGUF file whose `tokenizer.ggml.model` is `llama`
 * (sentencepiece BPE with byte fallback), as our llama2.c encoder runs it:
 * "\u2581" becomes a space in every piece (the encoder adds the dummy prefix
 * " " and keeps the text's spaces, which is what llama.cpp's "\u2581"
 * prefix and space escaping amount to), scores as merge priorities, byte
 * b's token at id b + 3. What that encoder cannot reproduce (other BOS/EOS
 * ids, no BOS, no space prefix, byte tokens elsewhere, a `gpt2` BPE
 * vocabulary) is a FormatError naming it.
 */
export function ggufTokenizer(file: GGUFFile, spec: ModelSpec): Tokenizer {
  const fail = (msg: string): never => {
    throw new FormatError(`${file.source}: ${msg}`);
  };
  const md = file.metadata;
  const model = md.get('tokenizer.ggml.model');
  const tokens = md.get('tokenizer.ggml.tokens') as string[];
  const n = tokens.length;
  const types = md.get('tokenizer.ggml.token_type');
  if (types !== undefined && !(types instanceof Int32Array && types.length === n)) fail(`tokenizer.ggml.token_type is not ${n} int32 values`);
  if (model === 'gpt2') return bpeTokenizer(file, spec, tokens, types as Int32Array | undefined);
  if (model !== 'llama') fail(`tokenizer.ggml.model is ${JSON.stringify(model)}: only "llama" (sentencepiece) and "gpt2" (byte-level BPE) are supported yet`);
  const scores = md.get('tokenizer.ggml.scores');
  if (scores !== undefined && !(scores instanceof Float32Array && scores.length === n)) fail(`tokenizer.ggml.scores is not ${n} float32 values`);
  if (spec.bosId !== 1 || spec.eosId !== 2) fail(`BOS ${spec.bosId} and EOS ${spec.eosId}: only BOS 1 and EOS 2 are supported yet`);
  const prefix = md.get('tokenizer.ggml.add_space_prefix') ?? true;
  if (prefix !== true) fail(`tokenizer.ggml.add_space_prefix = ${String(prefix)} is not supported yet`);
  if (!addBosOf(md, fail)) fail('tokenizer.ggml.add_bos_token = false is not supported yet for a sentencepiece vocabulary');
  const eos = md.get('tokenizer.ggml.add_eos_token');
  if (eos !== undefined && eos !== false) fail(`tokenizer.ggml.add_eos_token = ${String(eos)} is not supported yet`);
  if (n < 259) fail(`has ${n} tokens, too few for sentencepiece's 256 byte tokens at ids 3..258`);
  for (let b = 0; b < 256; b++) {
    const id = b + 3;
    const want = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    if (tokens[id] !== want || (types && (types as Int32Array)[id] !== TOKEN_TYPE_BYTE)) {
      fail(`token ${id} is ${JSON.stringify(tokens[id])}, not the byte token ${want}: vocabularies with byte tokens elsewhere are not supported yet`);
    }
  }
  const pieces = tokens.map((t) => t.replace(SPM_SPACE, ' '));
  return Tokenizer.fromVocab(pieces, (scores as Float32Array | undefined) ?? new Float32Array(n), { source: file.source });
}

/**
 * A `gpt2` (byte-level BPE) vocabulary with the pre-tokenizer
 * `tokenizer.ggml.pre` names (llama-bpe, smollm, qwen2, gpt-2 or default;
 * none: default, as llama.cpp; any other is a FormatError naming it): BOS
 * added, no EOS.
 */
function bpeTokenizer(file: GGUFFile, spec: ModelSpec, tokens: string[], types: Int32Array | undefined): Tokenizer {
  const fail = (msg: string): never => {
    throw new FormatError(`${file.source}: ${msg}`);
  };
  const md = file.metadata;
  const pre = md.get('tokenizer.ggml.pre') ?? 'default';
  if (typeof pre !== 'string') fail(`tokenizer.ggml.pre is ${JSON.stringify(pre)}, not a string`);
  const merges = md.get('tokenizer.ggml.merges');
  if (!Array.isArray(merges) || !merges.every((m) => typeof m === 'string')) fail('has no tokenizer.ggml.merges (a list of strings)');
  const addBos = addBosOf(md, fail);
  const eos = md.get('tokenizer.ggml.add_eos_token');
  if (eos !== undefined && eos !== false) fail(`tokenizer.ggml.add_eos_token = ${String(eos)} is not supported yet`);
  return Tokenizer.fromBPE(tokens, merges as string[], { source: file.source, bosId: spec.bosId, eosId: spec.eosId, types, pre: pre as string, addBos });
}

/**
 * `tokenizer.ggml.add_bos_token` (default true): whether prompts start with
 * BOS. SmolLM2 and Qwen2 files say false; llama.cpp then adds none.
 */
function addBosOf(md: GGUFFile['metadata'], fail: (msg: string) => never): boolean {
  const v = md.get('tokenizer.ggml.add_bos_token') ?? true;
  if (typeof v !== 'boolean') fail(`tokenizer.ggml.add_bos_token is ${JSON.stringify(v)}, not a boolean`);
  return v as boolean;
}
