/**
 * Moves a checkpoint's weights onto a backend, once, at load.
 * The fields mirror llama2.c's TransformerWeights, with each matrix's shape.
 */
import { byteLengthOf, type Backend, type DType, type Tensor, type TensorDesc } from '@rama/backend';
import {
  convertsToF32, ggmlToF32, ggmlToQ80, ggmlTypeName, q80GroupSizeOf,
  type Checkpoint, type GGUFFile, type GGUFTensorInfo, type ModelConfig, type Q80Data, type TensorEntry,
} from '@rama/checkpoint';
import { BackendError, FormatError, fmtBytes } from '@rama/core';
import { dequantize, quantizeWeights, regroupQ80, rowAlignedGroupSize, viewQ80, writeQ80 } from '@rama/quant-q80';
import type { ModelSpec } from './spec.js';
import { allocState, type KvCacheType } from './state.js';

export interface LayerWeights {
  rmsAtt: Tensor; // (dim)
  wq: Tensor; // (n_heads * head_size, dim)
  wk: Tensor; // (kv_dim, dim)
  wv: Tensor; // (kv_dim, dim)
  wo: Tensor; // (dim, n_heads * head_size)
  rmsFfn: Tensor; // (dim)
  w1: Tensor; // (hidden_dim, dim)  gate
  w2: Tensor; // (dim, hidden_dim)  down
  w3: Tensor; // (hidden_dim, dim)  up
}

export interface LlamaWeights {
  tokenEmbedding: Tensor; // (vocab_size, dim): f32, or the file's packed type (embed decodes the rows it looks up)
  layers: LayerWeights[];
  rmsFinal: Tensor; // (dim)
  classifier: Tensor; // (vocab_size, dim): tokenEmbedding itself, or its Q8_0 copy, when shared
}

/** How matrices are stored on the device: as in the file, or quantized to Q8_0 at load. */
export interface WeightPlan {
  /** Group size to quantize fp32 matrices with; undefined keeps them as they are. */
  quantizeGroupSize?: number;
}

/**
 * What uploadWeights reads: a llama2.c checkpoint, or a GGUF file seen
 * through ggufWeightSource (llama2.c's tensor names, converted to f32 or q8_0).
 */
export type WeightSource = Pick<Checkpoint, 'source' | 'tensors' | 'readInto' | 'read'> & {
  readonly config: Pick<ModelConfig, 'nLayers' | 'sharedClassifier'>;
  /**
   * A matrix in its file's own type when that is a packed type a backend may
   * run natively (GGUF's F16, BF16, Q4_0, Q4_K, Q5_K, Q6_K as f16, bf16, q4_0,
   * q4_k, q5_k, q6_k), read with
   * readInto; undefined otherwise. uploadWeights uploads it where the backend
   * `supports` the type, else the converted entry in `tensors`.
   */
  native?(name: string): TensorEntry | undefined;
};

export async function uploadWeights(backend: Backend, ckpt: WeightSource, plan: WeightPlan, track: (t: Tensor) => Tensor): Promise<LlamaWeights> {
  const entry = (name: string): TensorEntry => {
    const e = ckpt.tensors.get(name);
    if (!e) throw new Error(`${ckpt.source}: tensor ${name} missing`); // parseHeader guarantees it
    return e;
  };

  /** A tensor exactly as stored in the file: bytes go straight into backend memory. */
  const asStored = async (name: string, label: string): Promise<Tensor> => {
    const e = entry(name);
    return track(await backend.upload({ ...e, label }, (dst) => ckpt.readInto(e, dst)));
  };

  /** The file's own packed type of a matrix, where the backend runs it. */
  const nativeOf = (name: string): TensorEntry | undefined => {
    const n = ckpt.native?.(name);
    return n && backend.supports(n.dtype) ? n : undefined;
  };

  /** A matrix in the device format the plan asks for. */
  const matrix = async (name: string, label: string): Promise<Tensor> => {
    // The file's packed type where the backend runs it: the quantized ones (q4_0, the k-quants) always
    // (smaller than q8_0), f16/bf16 unless the plan quantizes float matrices to q8_0.
    const n = nativeOf(name);
    if (n && ((n.dtype !== 'f16' && n.dtype !== 'bf16') || plan.quantizeGroupSize === undefined)) {
      return track(await backend.upload({ ...n, label }, (dst) => ckpt.readInto(n, dst)));
    }
    const e = entry(name);
    if (e.dtype === 'q8_0') {
      // The file's groups run over the flat tensor; the backends' kernels need
      // them inside rows. Smaller groups with the same scales give exactly the
      // same weights (and the activations are quantized in groups as small).
      const g = rowAlignedGroupSize(e.shape[1], e.groupSize!);
      if (g === e.groupSize) return asStored(name, label);
      const desc: TensorDesc = { shape: e.shape, dtype: 'q8_0', groupSize: g, label };
      return track(await backend.upload(desc, async (dst) => {
        const bytes = new Uint8Array(e.byteLength);
        await ckpt.readInto(e, bytes);
        writeQ80(dst, regroupQ80(viewQ80(bytes, e.shape[0] * e.shape[1], e.groupSize!), g));
      }));
    }
    const gs = plan.quantizeGroupSize;
    if (gs === undefined) return asStored(name, label);
    const desc: TensorDesc = { shape: e.shape, dtype: 'q8_0', groupSize: gs, label };
    return track(await backend.upload(desc, async (dst) => writeQ80(dst, quantizeWeights((await ckpt.read(name)) as Float32Array, gs))));
  };

  const cfg = ckpt.config;
  const layers: LayerWeights[] = [];
  for (let l = 0; l < cfg.nLayers; l++) {
    const p = `layers.${l}`;
    layers.push({
      rmsAtt: await asStored(`${p}.rms_att`, `${p}.rms_att`),
      wq: await matrix(`${p}.wq`, `${p}.wq`),
      wk: await matrix(`${p}.wk`, `${p}.wk`),
      wv: await matrix(`${p}.wv`, `${p}.wv`),
      wo: await matrix(`${p}.wo`, `${p}.wo`),
      rmsFfn: await asStored(`${p}.rms_ffn`, `${p}.rms_ffn`),
      w1: await matrix(`${p}.w1`, `${p}.w1`),
      w2: await matrix(`${p}.w2`, `${p}.w2`),
      w3: await matrix(`${p}.w3`, `${p}.w3`),
    });
  }
  const rmsFinal = await asStored('rms_final', 'rms_final');

  // The embedding table is looked up, not multiplied: embed decodes only the
  // rows it looks up, from any packed type the backend stores (each value as
  // the f32 conversion gives it), so a packed table stays packed: a GGUF
  // Q4_K table takes its file's bytes, not 7x as many as f32. A tied
  // classifier then multiplies by that same tensor where it can (one copy).
  const emb = entry('tok_embeddings');
  const embDesc: TensorDesc = { shape: emb.shape, dtype: 'f32', label: 'tok_embeddings' };
  const elements = emb.shape[0] * emb.shape[1];
  const tied = cfg.sharedClassifier;
  const sharedLabel = tied ? 'tok_embeddings (and wcls, shared)' : 'tok_embeddings';
  let embNative = nativeOf('tok_embeddings');
  // f16/bf16 with float matrices quantized: the table is q8_0 (below), as it always was
  if (embNative && isHalf(embNative.dtype) && plan.quantizeGroupSize !== undefined) embNative = undefined;
  let tokenEmbedding: Tensor;
  let classifier: Tensor | undefined = tied ? undefined : await matrix('wcls', 'wcls');
  if (embNative) {
    // The file's own type (f16, bf16, q4_0, a k-quant): its bytes as stored. Tied, it is the classifier
    // too: the same bytes matrix() would upload (f16/bf16: widened exactly, the f32 table's values).
    const n = embNative;
    tokenEmbedding = track(await backend.upload({ ...n, label: sharedLabel }, (dst) => ckpt.readInto(n, dst)));
    if (tied) classifier = tokenEmbedding;
  } else if ((emb.dtype === 'q8_0' || plan.quantizeGroupSize !== undefined) && backend.supports('q8_0')) {
    // Quantized models (a v2 file, a GGUF Q8_0, or q80) use the Q8_0 values, as runq.c does (it
    // dequantizes the table at load): embed decodes them from the q8_0 table itself (regrouped within
    // rows, or quantized at load, as matrix() makes every matrix: the same weights), the classifier's.
    tokenEmbedding = await matrix('tok_embeddings', sharedLabel);
    if (tied) classifier = tokenEmbedding;
  } else if (emb.dtype === 'q8_0') {
    tokenEmbedding = track(await backend.upload(embDesc, async (dst) => {
      const bytes = new Uint8Array(emb.byteLength);
      await ckpt.readInto(emb, bytes);
      dequantize(viewQ80(bytes, elements, emb.groupSize!), f32View(dst, elements));
    }));
  } else if (plan.quantizeGroupSize !== undefined) {
    // (a backend without q8_0 has no use for a q8_0 plan; the table's values are still the Q8_0 ones)
    const gs = plan.quantizeGroupSize;
    tokenEmbedding = track(await backend.upload(embDesc, async (dst) => {
      const values = f32View(dst, elements);
      await ckpt.readInto(emb, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      dequantize(quantizeWeights(values, gs), values);
    }));
  } else {
    tokenEmbedding = await asStored('tok_embeddings', 'tok_embeddings');
  }
  classifier ??= tokenEmbedding;

  return { tokenEmbedding, layers, rmsFinal, classifier };
}

const isHalf = (d: DType): boolean => d === 'f16' || d === 'bf16';

/** A Float32Array over the backend memory an f32 tensor is uploaded into. */
function f32View(dst: Uint8Array, elements: number): Float32Array {
  if (dst.byteOffset % 4 !== 0) throw new Error('backend memory for an f32 tensor is not 4-byte aligned');
  return new Float32Array(dst.buffer, dst.byteOffset, elements);
}

// ---- will it fit? ----

/** Bytes a model takes on a backend: its tensors in the standard layout (no alignment, scratch or staging: a lower bound). */
export interface MemoryNeeds {
  weights: number;
  /** Keys and values: 2 x layers x sessions x context x kv_dim elements of the cache's type (f32: 4 bytes, f16: 2). */
  kvCache: number;
  /** Per-row buffers for `rows` rows (activations, logits). */
  activations: number;
  total: number;
  /** The largest block that must lie whole in one backend memory: one weight tensor, or one layer's KV cache (its keys and values together). */
  largest: { bytes: number; what: string };
}

/** What the state is sized for. */
export interface StateShape {
  rows: number;
  context: number;
  sessions: number;
  /** The KV cache's element type (default f32). */
  kvCacheType?: KvCacheType;
}

/**
 * The tensors uploadWeights and allocState would make, counted on a backend
 * that allocates nothing and reads nothing (fills are never called), so the
 * count cannot drift from what a load really allocates.
 */
export async function memoryNeeds(ckpt: WeightSource, plan: WeightPlan, spec: ModelSpec, shape: StateShape): Promise<MemoryNeeds> {
  const sized = (desc: TensorDesc): Tensor => ({ ...desc, byteLength: byteLengthOf(desc) });
  const counter = {
    name: 'count', description: 'counts tensor bytes', maxRows: shape.rows,
    supports: () => true,
    upload: async (desc: TensorDesc) => sized(desc),
    alloc: sized,
  } as unknown as Backend;
  const weights = new Set<Tensor>();
  await uploadWeights(counter, ckpt, plan, (t) => (weights.add(t), t));
  const state = allocState(counter, spec, shape.rows, shape.context, shape.sessions, (t) => t, shape.kvCacheType);
  const sum = (ts: Iterable<Tensor>) => [...ts].reduce((a, t) => a + t.byteLength, 0);
  const kvCache = sum(state.keyCache) + sum(state.valueCache);
  const activations = sum(Object.values(state).flat()) - kvCache;
  const w = sum(weights);
  let largest = { bytes: state.keyCache[0].byteLength + state.valueCache[0].byteLength, what: "one layer's KV cache (its keys and values lie in one memory)" };
  for (const t of weights) if (t.byteLength > largest.bytes) largest = { bytes: t.byteLength, what: `the tensor ${t.label}` };
  return { weights: w, kvCache, activations, total: w + kvCache + activations, largest };
}

/** A bound on the bytes a backend's tensors may take together. */
export interface MemoryLimit {
  bytes: number;
  /** What the bound is, for the error message. */
  what: string;
}

/**
 * The bounds a load on `backend` must stay within: the backend's own (the
 * CPU backend's 32-bit WebAssembly memory holds at most 4 GiB), and, for the
 * CPU backends in Node, the machine's memory (total, available now, and a
 * cgroup limit). WebGPU's memory is the device's, which WebGPU does not report.
 */
export async function memoryLimits(backend: Backend): Promise<MemoryLimit[]> {
  const limits: MemoryLimit[] = [];
  const own = backend.memoryLimit;
  if (own !== undefined && own > 0) {
    limits.push({ bytes: own, what: `the most the ${backend.name} backend can hold (${backend.description})` });
  }
  if (backend.name === 'cpu' && typeof process !== 'undefined' && process.versions?.node) {
    const os = await import('node:os');
    limits.push({ bytes: os.totalmem(), what: "this machine's memory (os.totalmem())" });
    limits.push({ bytes: os.freemem(), what: "the memory available now (os.freemem())" });
    const cgroup = (os as { constrainedMemory?: () => number | undefined }).constrainedMemory?.() ?? (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
    if (cgroup && cgroup > 0 && cgroup < os.totalmem()) limits.push({ bytes: cgroup, what: "this process's memory limit (cgroup)" });
  }
  return limits;
}

const gib = (n: number): string => `${(n / 2 ** 30).toFixed(2)} GiB`;
const gibOrMib = (n: number): string => (n >= 2 ** 30 ? gib(n) : `${(n / 2 ** 20).toFixed(2)} MiB`);

/**
 * Throws a BackendError naming the file, the bytes needed and the tightest
 * limit when the model cannot fit (the error the backend itself would throw,
 * but before anything is allocated).
 */
export function checkFits(source: string, needs: MemoryNeeds, shape: StateShape, limits: readonly MemoryLimit[], maxTensorBytes?: number): void {
  if (maxTensorBytes !== undefined && needs.largest.bytes > maxTensorBytes) {
    throw new BackendError(
      `${source}: ${needs.largest.what} takes ${fmtBytes(needs.largest.bytes)} bytes (${gibOrMib(needs.largest.bytes)}), more than one memory of this backend holds: ` +
      `${fmtBytes(maxTensorBytes)} bytes (${gibOrMib(maxTensorBytes)}); load with fewer sessions or a shorter contextLength, ${halveKV(shape)}or quantize (q80)`,
    );
  }
  const tight = limits.filter((l) => needs.total > l.bytes).sort((a, b) => a.bytes - b.bytes)[0];
  if (!tight) return;
  throw new BackendError(
    `${source}: the model needs at least ${fmtBytes(needs.total)} bytes (${gib(needs.total)}: weights ${fmtBytes(needs.weights)}, ` +
    `KV cache ${fmtBytes(needs.kvCache)} for ${shape.sessions} session${shape.sessions === 1 ? '' : 's'} of ${shape.context} positions, ` +
    `activations ${fmtBytes(needs.activations)}), more than ${tight.what}: ${fmtBytes(tight.bytes)} bytes (${gib(tight.bytes)}); ` +
    `load with fewer sessions or a shorter contextLength, ${halveKV(shape)}quantize (q80), or use a smaller model`,
  );
}

/** The remedy of an f16 KV cache, where the cache is f32. */
function halveKV(shape: StateShape): string {
  return (shape.kvCacheType ?? 'f32') === 'f32' ? "kvCacheType: 'f16' (half the KV cache), " : '';
}

/** Refuses, before anything is allocated, a load that cannot fit on `backend`. */
export async function checkModelFits(backend: Backend, ckpt: WeightSource, plan: WeightPlan, spec: ModelSpec, shape: StateShape): Promise<void> {
  checkFits(ckpt.source, await memoryNeeds(ckpt, plan, spec, shape), shape, await memoryLimits(backend), backend.maxTensorBytes);
}

// ---- GGUF ----

/** The ggml types whose bytes are a backend type's standard layout, and that type. */
const NATIVE: Partial<Record<string, DType>> = { F16: 'f16', BF16: 'bf16', Q4_0: 'q4_0', Q4_K: 'q4_k', Q5_K: 'q5_k', Q6_K: 'q6_k' };

/** Llama 3.1's RoPE frequency factors in a GGUF file (one per rotated pair). */
export const ROPE_FREQS = 'rope_freqs.weight';

/**
 * A GGUF file's tensors under llama2.c's names. F16, BF16, Q4_0, Q4_K, Q5_K
 * and Q6_K matrices are also offered as they are (`native`: f16, bf16, q4_0,
 * q4_k, q5_k, q6_k), which uploadWeights uses where the backend supports them. Otherwise (and in
 * `tensors`) each is converted at read time to a type every backend runs,
 * exactly (see @rama/checkpoint's gguf-convert):
 * F32, F16 and BF16 as f32; Q8_0, Q4_0 and Q5_0 as q8_0 in groups of 32;
 * Q6_K as q8_0 in groups of 16; Q4_1, Q5_1, Q4_K and Q5_K (d*q + m) as f32. Norms must be float. Every tensor the model
 * needs must be present with its shape, and no other may be (as llama.cpp
 * checks). A GGUF [rows, cols] matrix is ggml ne = [cols, rows].
 */
export function ggufWeightSource(file: GGUFFile, spec: ModelSpec): WeightSource {
  const fail = (msg: string): never => {
    throw new FormatError(`${file.source}: ${msg}`);
  };
  const { dim, kvDim, hiddenDim, vocabSize } = spec;
  const tensors = new Map<string, TensorEntry>();
  const natives = new Map<string, TensorEntry>();
  const origin = new Map<TensorEntry, GGUFTensorInfo>();
  const used = new Set<string>();
  const map = (ours: string, theirs: string, shape: number[], kind: 'norm' | 'matrix'): void => {
    const t = file.tensors.get(theirs);
    if (!t) return fail(`has no tensor ${theirs}`);
    used.add(theirs);
    const ne = shape.slice().reverse();
    if (t.ne.length !== ne.length || t.ne.some((n, i) => n !== ne[i])) {
      fail(`tensor ${theirs} has ne [${t.ne.join(', ')}], expected [${ne.join(', ')}] for this model`);
    }
    // q8_0 where the values are exactly a scale times an int8, else f32.
    const gs = kind === 'matrix' ? q80GroupSizeOf(t.type) : undefined;
    const float = kind === 'matrix' ? convertsToF32(t.type) : ['F32', 'F16', 'BF16'].includes(t.type.name);
    if (!float && gs === undefined) {
      fail(`tensor ${theirs} is ${ggmlTypeName(t.type.id)}, not supported yet ` +
        `(${kind === 'norm' ? 'norms must be F32, F16 or BF16' : 'matrices: F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q6_K; Q4_1, Q5_1, Q4_K, Q5_K as f32'})`);
    }
    const elements = t.elements;
    const entry: TensorEntry = gs !== undefined
      ? { shape, dtype: 'q8_0', groupSize: gs, label: ours, byteOffset: t.byteOffset, byteLength: elements + 4 * (elements / gs) }
      : { shape, dtype: 'f32', label: ours, byteOffset: t.byteOffset, byteLength: 4 * elements };
    tensors.set(ours, entry);
    origin.set(entry, t);
    // F16, BF16, Q4_0 and the k-quants' bytes are already the standard layout of f16, bf16, q4_0, q4_k, q5_k, q6_k.
    const packed = kind === 'matrix' ? NATIVE[t.type.name] : undefined;
    if (packed) {
      const n: TensorEntry = { shape, dtype: packed, label: ours, byteOffset: t.byteOffset, byteLength: t.byteLength };
      natives.set(ours, n);
      origin.set(n, t);
    }
  };

  map('tok_embeddings', 'token_embd.weight', [vocabSize, dim], 'matrix');
  for (let l = 0; l < spec.nLayers; l++) {
    const p = `layers.${l}`;
    const b = `blk.${l}`;
    map(`${p}.rms_att`, `${b}.attn_norm.weight`, [dim], 'norm');
    map(`${p}.wq`, `${b}.attn_q.weight`, [dim, dim], 'matrix');
    map(`${p}.wk`, `${b}.attn_k.weight`, [kvDim, dim], 'matrix');
    map(`${p}.wv`, `${b}.attn_v.weight`, [kvDim, dim], 'matrix');
    map(`${p}.wo`, `${b}.attn_output.weight`, [dim, dim], 'matrix');
    map(`${p}.rms_ffn`, `${b}.ffn_norm.weight`, [dim], 'norm');
    map(`${p}.w1`, `${b}.ffn_gate.weight`, [hiddenDim, dim], 'matrix');
    map(`${p}.w2`, `${b}.ffn_down.weight`, [dim, hiddenDim], 'matrix');
    map(`${p}.w3`, `${b}.ffn_up.weight`, [hiddenDim, dim], 'matrix');
  }
  map('rms_final', 'output_norm.weight', [dim], 'norm');
  if (!spec.tiedClassifier) map('wcls', 'output.weight', [vocabSize, dim], 'matrix');
  used.add(ROPE_FREQS); // read into the spec (ggufRopeFactors), not uploaded
  for (const name of file.tensors.keys()) if (!used.has(name)) fail(`has tensor ${name}, which a llama model does not use`);

  const readInto = async (entry: TensorEntry, dst: Uint8Array): Promise<void> => {
    const t = origin.get(entry);
    if (!t || dst.byteLength !== entry.byteLength) throw new Error(`${file.source}: readInto(${entry.label}): not this source's tensor, or the wrong size`);
    const n = t.elements;
    if (t.type.name === 'F32' || natives.get(entry.label) === entry) return file.readInto(t, dst);
    // One tensor's ggml bytes at a time: the file is never held whole.
    const raw = new Uint8Array(t.byteLength);
    await file.readInto(t, raw);
    const what = `${file.source}: tensor ${t.name}`;
    if (entry.dtype === 'f32') {
      const aligned = dst.byteOffset % 4 === 0;
      const out = aligned ? new Float32Array(dst.buffer, dst.byteOffset, n) : new Float32Array(n);
      ggmlToF32(t.type, raw, out, n, what);
      if (!aligned) dst.set(new Uint8Array(out.buffer));
      return;
    }
    const scales = new Float32Array(n / entry.groupSize!);
    ggmlToQ80(t.type, raw, new Int8Array(dst.buffer, dst.byteOffset, n), scales, n, what);
    dst.set(new Uint8Array(scales.buffer), n);
  };

  const read = async (name: string): Promise<Float32Array | Q80Data> => {
    const e = tensors.get(name);
    if (!e) throw new Error(`${file.source}: no tensor ${name}`);
    const buf = new ArrayBuffer(e.byteLength);
    await readInto(e, new Uint8Array(buf));
    if (e.dtype === 'f32') return new Float32Array(buf);
    const n = e.shape.reduce((a, b) => a * b, 1);
    return { q: new Int8Array(buf, 0, n), scales: new Float32Array(buf, n, n / e.groupSize!) };
  };

  return {
    source: file.source, tensors, readInto, read, native: (name) => natives.get(name),
    config: { nLayers: spec.nLayers, sharedClassifier: spec.tiedClassifier },
  };
}

/** A llama2.c-style ModelConfig for a model described by a spec (for Llama.config). */
export function configOfSpec(spec: ModelSpec): ModelConfig {
  return {
    dim: spec.dim,
    hiddenDim: spec.hiddenDim,
    nLayers: spec.nLayers,
    nHeads: spec.nHeads,
    nKvHeads: spec.nKvHeads,
    vocabSize: spec.vocabSize,
    seqLen: spec.maxContext,
    headSize: spec.headSize,
    kvDim: spec.kvDim,
    sharedClassifier: spec.tiedClassifier,
    normEps: spec.normEps,
    ropeTheta: spec.rope.theta,
  };
}
