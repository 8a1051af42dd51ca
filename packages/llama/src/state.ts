/**
 * Activations and the KV cache, allocated once on the backend (llama2.c's
 * RunState). Per-row buffers hold up to `maxRows` rows, so a prompt can run
 * as one batch and many sequences can decode in one step.
 */
import type { Backend, Tensor } from '@rama/backend';
import type { ModelSpec } from './spec.js';

/**
 * The element type of the KV cache: 'f32' (exact), or 'f16', half the memory:
 * each key and value is stored as the nearest f16 (round half to even) and
 * attention reads it back exactly, so the only change is that rounding of
 * what is stored (llama.cpp's default cache type is f16 too).
 */
export type KvCacheType = 'f32' | 'f16';

export interface RunState {
  tokens: Tensor; // (maxRows) i32: the ids entering the model; argmax writes the next one into [0]
  x: Tensor; // (maxRows, dim) the residual stream
  xb: Tensor; // (maxRows, dim)
  xb2: Tensor; // (maxRows, dim)
  hb: Tensor; // (maxRows, hidden_dim)
  hb2: Tensor; // (maxRows, hidden_dim)
  q: Tensor; // (maxRows, dim)
  k: Tensor; // (maxRows, kv_dim)
  v: Tensor; // (maxRows, kv_dim)
  keyCache: Tensor[]; // per layer: (1, slots, context, kv_dim) f32 or f16, one KV slot per sequence
  valueCache: Tensor[]; // per layer: (1, slots, context, kv_dim) f32 or f16
  xLast: Tensor; // (maxRows, dim) the residual of each sequence's last row (gathered)
  xFinal: Tensor; // (maxRows, dim) after the final rmsnorm
  logits: Tensor; // (maxRows, vocab_size)
}

export function allocState(
  backend: Backend, c: ModelSpec, maxRows: number, context: number, slots: number, track: (t: Tensor) => Tensor, kvType: KvCacheType = 'f32',
): RunState {
  const f32 = (label: string, ...shape: number[]) => track(backend.alloc({ shape, dtype: 'f32', label }));
  // One tensor per layer, so a cache larger than one memory of a backend (a
  // 7B model's 4 GiB of f32 keys and values at 4096 positions) spreads over
  // several. A layer's keys and values are read together by attention: a
  // backend with several memories keeps the two in one.
  // Bytes per layer: 2 (keys and values) x slots x context x kv_dim x 4 (f32) or 2 (f16).
  const kvShape = [1, slots, context, c.kvDim];
  const kvBytes = (kvType === 'f16' ? 2 : 4) * kvShape.reduce((a, b) => a * b, 1);
  const rows = {
    tokens: track(backend.alloc({ shape: [maxRows], dtype: 'i32', label: 'tokens' })),
    x: f32('x', maxRows, c.dim),
    xb: f32('xb', maxRows, c.dim),
    xb2: f32('xb2', maxRows, c.dim),
    hb: f32('hb', maxRows, c.hiddenDim),
    hb2: f32('hb2', maxRows, c.hiddenDim),
    q: f32('q', maxRows, c.dim),
    k: f32('k', maxRows, c.kvDim),
    v: f32('v', maxRows, c.kvDim),
  };
  const keyCache: Tensor[] = [];
  const valueCache: Tensor[] = [];
  for (let l = 0; l < c.nLayers; l++) {
    // A layer's keys, then its values: the values take the room kept beside the keys.
    const kv = (label: string) => track(backend.alloc({ shape: kvShape, dtype: kvType, label: `${label}.${l}`, colocate: { group: `kv_cache.${l}`, bytes: 2 * kvBytes } }));
    keyCache.push(kv('key_cache'));
    valueCache.push(kv('value_cache'));
  }
  return {
    ...rows,
    keyCache,
    valueCache,
    xLast: f32('x_last', maxRows, c.dim),
    xFinal: f32('x_final', maxRows, c.dim),
    logits: f32('logits', maxRows, c.vocabSize),
  };
}
