/**
 * The transformer's forward pass for one step (one or more consecutive
 * positions), recorded on a backend Step. It reads as llama2.c's forward():
 * every line is one named op on preallocated tensors.
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
  step.embed(s.x, w.tokenEmbedding, s.tokens);

  for (let l = 0; l < c.nLayers; l++) {
    const layer = w.layers[l];

    // attention
    step.rmsnorm(s.xb, s.x, layer.rmsAtt, c.normEps);
    step.matmul(s.q, s.xb, layer.wq);
    step.matmul(s.k, s.xb, layer.wk);
    step.matmul(s.v, s.xb, layer.wv);
    step.rope(s.q, c.headSize, c.rope.theta);
    step.rope(s.k, c.headSize, c.rope.theta);
    taps?.rotated?.(step, l);
    step.storeKV(s.keyCache, l, s.k);
    step.storeKV(s.valueCache, l, s.v);
    step.attention(s.xb, s.q, s.keyCache, s.valueCache, l, c.headSize);
    step.matmul(s.xb2, s.xb, layer.wo);
    step.add(s.x, s.x, s.xb2);

    // feed-forward: w2(silu(w1(x)) * w3(x))
    step.rmsnorm(s.xb, s.x, layer.rmsFfn, c.normEps);
    step.matmul(s.hb, s.xb, layer.w1);
    step.matmul(s.hb2, s.xb, layer.w3);
    step.swiglu(s.hb, s.hb, s.hb2);
    step.matmul(s.xb, s.hb, layer.w2);
    step.add(s.x, s.x, s.xb);
    taps?.layerEnd?.(step, l);
  }

  // only the logits of each sequence's last row are needed
  if (wanted.length === 0) return;
  step.gather(s.xLast, s.x, wanted);
  step.rmsnorm(s.xFinal, s.xLast, w.rmsFinal, c.normEps);
  step.matmul(s.logits, s.xFinal, w.classifier);
}
