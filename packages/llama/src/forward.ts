/**
 * The transformer's forward pass for one step (one or more consecutive
 * positions), recorded on a backend Step. It reads as llama2.c's forward():
 * every line is one named op on preallocated tensors.
 *
 * Follow one token. It enters as an id and leaves as `vocab` logits, one
 * score per possible next token. In between it is a vector of `dim` numbers,
 * the residual stream `x`, which each of the `nLayers` layers reads and adds
 * to: first attention (what earlier tokens say about this one), then a
 * feed-forward network (what the model knows about the result). Shapes below
 * are per row; a step holds `rows` rows (a prompt's tokens, or one token of
 * each of several sequences) and every op applies row by row, except
 * attention, which reads the KV cache.
 * The long form: docs/guide/index.md.
 */
import type { Step } from '@rama/backend';
import type { ModelSpec } from './spec.js';
import type { RunState } from './state.js';
import type { LlamaWeights } from './weights.js';

/**
 * Points of the pass where an inspection (see inspect.ts) records copies of
 * what the model computes there. Without taps nothing extra is recorded.
 */
export interface ForwardTaps {
  /** Layer `layer`'s q and k rows are rotated: what attention reads next. */
  rotated?(step: Step, layer: number): void;
  /** Layer `layer` is done: s.x holds the residual stream leaving it. */
  layerEnd?(step: Step, layer: number): void;
}

/**
 * Runs the step's rows through the model; leaves the logits of the rows in
 * `wanted` (row indices of the step, in order) in s.logits[0..wanted.length).
 */
export function forward(step: Step, c: ModelSpec, w: LlamaWeights, s: RunState, wanted: readonly number[], taps?: ForwardTaps): void {
  // #region embed
  // x = E[token]: row `token` of the (vocab, dim) embedding table. A lookup,
  // no arithmetic: the id becomes the vector the layers work on. (docs/guide/embeddings.md)
  step.embed(s.x, w.tokenEmbedding, s.tokens);
  // #endregion embed

  for (let l = 0; l < c.nLayers; l++) {
    const layer = w.layers[l];

    // #region attention
    // Attention. xb = RMSNorm(x) * g: x scaled to unit root-mean-square, so
    // the matmuls below see inputs of one size whatever the stream has grown
    // to; g (dim) is learned per channel. (docs/guide/rmsnorm.md)
    step.rmsnorm(s.xb, s.x, layer.rmsAtt, c.normEps);
    // q = Wq xb (dim), k = Wk xb, v = Wv xb (kvDim = nKvHeads * headSize):
    // what this token looks for, what it offers to be found by, and what it
    // passes on when found. Each splits into heads of headSize values.
    step.matmul(s.q, s.xb, layer.wq);
    step.matmul(s.k, s.xb, layer.wk);
    step.matmul(s.v, s.xb, layer.wv);
    // RoPE: rotate each pair (q[2i], q[2i+1]) of a head by pos * theta^(-2i/headSize),
    // and k the same way. A dot product of two rotated vectors then depends
    // on their positions only through the difference: attention sees relative
    // positions. v is not rotated. Llama 3.1 divides each pair's frequency by a
    // factor (rope scaling, for long contexts). (docs/guide/rope.md)
    step.rope(s.q, c.headSize, c.rope.theta, c.rope.freqFactors);
    step.rope(s.k, c.headSize, c.rope.theta, c.rope.freqFactors);
    taps?.rotated?.(step, l);
    // The KV cache: this position's k and v are kept (per layer, per
    // sequence slot), so a later token reuses them instead of recomputing the
    // whole prefix: each new token costs one row, not the prompt again. (docs/guide/kv-cache.md)
    // (Each layer's cache is its own tensor, layer 0 of it; see state.ts.)
    step.storeKV(s.keyCache[l], 0, s.k);
    step.storeKV(s.valueCache[l], 0, s.v);
    // Per head h: scores_t = q_h . k_t / sqrt(headSize) for t = 0..pos only
    // (the causal mask: a token never sees the future), softmax over t, then
    // xb_h = sum_t softmax_t * v_t. With grouped-query attention, nHeads /
    // nKvHeads query heads share one key/value head. (docs/guide/attention.md, docs/guide/gqa.md)
    step.attention(s.xb, s.q, s.keyCache[l], s.valueCache[l], 0, c.headSize);
    // Wo mixes the heads' outputs back into dim channels; the result is added
    // to the stream, not written over it (the residual connection). (docs/guide/residual.md)
    step.matmul(s.xb2, s.xb, layer.wo);
    step.add(s.x, s.x, s.xb2);
    // #endregion attention

    // #region ffn
    // Feed-forward (SwiGLU): x += W2 (silu(W1 xb) * (W3 xb)), xb = RMSNorm(x).
    // W1 and W3 lift dim to hiddenDim; silu(a) = a * sigmoid(a) of the gate
    // decides, channel by channel, how much of W3's value passes; W2 brings
    // it back to dim. It works on each token alone. (docs/guide/swiglu.md)
    step.rmsnorm(s.xb, s.x, layer.rmsFfn, c.normEps);
    step.matmul(s.hb, s.xb, layer.w1);
    step.matmul(s.hb2, s.xb, layer.w3);
    step.swiglu(s.hb, s.hb, s.hb2);
    step.matmul(s.xb, s.hb, layer.w2);
    step.add(s.x, s.x, s.xb);
    // #endregion ffn
    taps?.layerEnd?.(step, l);
  }

  // #region logits
  // Only the logits of each sequence's last row are needed: the other rows
  // of a prompt only had to fill the KV cache.
  if (wanted.length === 0) return;
  step.gather(s.xLast, s.x, wanted);
  // logits = Wcls RMSNorm(x): one score per vocabulary entry, (vocab, dim) x
  // (dim). The sampler turns them into the next token. (docs/guide/sampling.md)
  step.rmsnorm(s.xFinal, s.xLast, w.rmsFinal, c.normEps);
  step.matmul(s.logits, s.xFinal, w.classifier);
  // #endregion logits
}
