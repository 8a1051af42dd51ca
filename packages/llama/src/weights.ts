/**
 * Moves a checkpoint's weights onto a backend, once, at load.
 * The fields mirror llama2.c's TransformerWeights, with each matrix's shape.
 */
import type { Backend, Tensor, TensorDesc } from '@rama/backend';
import type { Checkpoint, ModelConfig, TensorEntry } from '@rama/checkpoint';
import { dequantize, quantizeWeights, viewQ80, writeQ80, type Q80Tensor } from '@rama/quant-q80';

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
  tokenEmbedding: Tensor; // (vocab_size, dim), always f32 (runq.c dequantizes it at load)
  layers: LayerWeights[];
  rmsFinal: Tensor; // (dim)
  classifier: Tensor; // (vocab_size, dim): tokenEmbedding itself, or its Q8_0 copy, when shared
}

/** How matrices are stored on the device: as in the file, or quantized to Q8_0 at load. */
export interface WeightPlan {
  /** Group size to quantize fp32 matrices with; undefined keeps them as they are. */
  quantizeGroupSize?: number;
}

export async function uploadWeights(backend: Backend, ckpt: Checkpoint, plan: WeightPlan, track: (t: Tensor) => Tensor): Promise<LlamaWeights> {
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

  /** A matrix in the device format the plan asks for. */
  const matrix = async (name: string, label: string): Promise<Tensor> => {
    const e = entry(name);
    const gs = plan.quantizeGroupSize;
    if (e.dtype === 'q8_0' || gs === undefined) return asStored(name, label);
    const w = (await ckpt.read(name)) as Float32Array;
    const desc: TensorDesc = { shape: e.shape, dtype: 'q8_0', groupSize: gs, label };
    return track(await backend.upload(desc, (dst) => writeQ80(dst, quantizeWeights(w, gs))));
  };

  const cfg: ModelConfig = ckpt.config;
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

  // The embedding table is looked up, not multiplied: keep it f32. Quantized
  // models (a v2 file, or q80) use the dequantized Q8_0 values, as runq.c does.
  // The values are written straight into the backend's memory.
  const emb = entry('tok_embeddings');
  const embDesc: TensorDesc = { shape: emb.shape, dtype: 'f32', label: 'tok_embeddings' };
  const elements = emb.shape[0] * emb.shape[1];
  let tokenEmbedding: Tensor;
  let embQ80: Q80Tensor | undefined; // kept only when the shared classifier needs it
  if (emb.dtype === 'q8_0') {
    tokenEmbedding = track(await backend.upload(embDesc, async (dst) => {
      const bytes = new Uint8Array(emb.byteLength);
      await ckpt.readInto(emb, bytes);
      dequantize(viewQ80(bytes, elements, emb.groupSize!), f32View(dst, elements));
    }));
  } else if (plan.quantizeGroupSize !== undefined) {
    const gs = plan.quantizeGroupSize;
    tokenEmbedding = track(await backend.upload(embDesc, async (dst) => {
      const values = f32View(dst, elements);
      await ckpt.readInto(emb, new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      embQ80 = quantizeWeights(values, gs);
      dequantize(embQ80, values);
    }));
  } else {
    tokenEmbedding = await asStored('tok_embeddings', 'tok_embeddings');
  }

  let classifier: Tensor;
  if (!cfg.sharedClassifier) classifier = await matrix('wcls', 'wcls');
  else if (emb.dtype === 'q8_0') classifier = await asStored('tok_embeddings', 'wcls (shared)');
  else if (embQ80) {
    const t = embQ80;
    const desc: TensorDesc = { shape: emb.shape, dtype: 'q8_0', groupSize: t.groupSize, label: 'wcls (shared)' };
    classifier = track(await backend.upload(desc, (dst) => writeQ80(dst, t)));
  } else classifier = tokenEmbedding;

  return { tokenEmbedding, layers, rmsFinal, classifier };
}

/** A Float32Array over the backend memory an f32 tensor is uploaded into. */
function f32View(dst: Uint8Array, elements: number): Float32Array {
  if (dst.byteOffset % 4 !== 0) throw new Error('backend memory for an f32 tensor is not 4-byte aligned');
  return new Float32Array(dst.buffer, dst.byteOffset, elements);
}
