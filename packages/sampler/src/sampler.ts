/**
 * Picks the next token from logits. Greedy, temperature and top-p follow
 * llama2.c's sample() step for step in f32 arithmetic, so the same seed gives
 * the same tokens. Top-k, min-p and a repetition penalty are extra filters,
 * off by default; when one is on, the general path below is used instead.
 *
 * The model gives logits l (one per vocabulary entry); p = softmax(l / T).
 * T < 1 sharpens p toward the top token, T > 1 flattens it, T = 0 is argmax.
 * The filters then cut the long tail of unlikely tokens, where most bad
 * continuations are: top-k keeps the k likeliest, top-p the smallest set whose
 * mass exceeds p, min-p those at least min-p times as likely as the top one.
 * (docs/guide/sampling.md)
 */
import { ArgumentError, NumericError, softmax } from '@rama/core';
import { Rng } from './rng.js';

/** llama2.c's f32 softmax; it lives in @rama/core (the CPU kernels share it) and is re-exported here. */
export { softmax };

/** How `Sampler` picks: llama2.c's temperature and top-p, plus optional filters. */
export interface SamplerOptions {
  /** 0 = greedy argmax (default 1.0, as llama2.c). */
  temperature?: number;
  /** Nucleus sampling threshold; <= 0 or >= 1 disables it (default 0.9, as llama2.c). */
  topp?: number;
  /** Keep only the k most likely tokens; 0 disables (default). */
  topk?: number;
  /** Keep tokens with prob >= minp * the top prob; 0 disables (default). */
  minp?: number;
  /** > 1 discourages recently seen tokens (llama.cpp's rule); 1 disables (default). */
  repetitionPenalty?: number;
  /** How many recent tokens the penalty looks at (default 64). */
  repetitionWindow?: number;
  /** RNG seed (llama2.c: the -s value): an integer, taken modulo 2^64, that is not 0 there. Default: the current time. */
  seed?: number | bigint;
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Every sampling option, checked before use: a NaN or a string would
 * otherwise pass the comparisons below and silently change sampling.
 */
export function checkSamplerOptions(opts: SamplerOptions): void {
  const fail = (name: string, rule: string, v: unknown) => {
    throw new ArgumentError(`${name} must be ${rule}, got ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`);
  };
  const { temperature, topp, topk, minp, repetitionPenalty, repetitionWindow, seed } = opts;
  if (temperature !== undefined && !(isNumber(temperature) && temperature >= 0)) fail('temperature', 'a finite number >= 0', temperature);
  if (topp !== undefined && !isNumber(topp)) fail('topp', 'a finite number (<= 0 or >= 1 turns top-p off)', topp);
  if (topk !== undefined && !(isNumber(topk) && Number.isInteger(topk) && topk >= 0)) fail('topk', 'an integer >= 0', topk);
  if (minp !== undefined && !(isNumber(minp) && minp >= 0 && minp < 1)) fail('minp', 'a number in [0, 1)', minp);
  if (repetitionPenalty !== undefined && !(isNumber(repetitionPenalty) && repetitionPenalty > 0)) {
    fail('repetitionPenalty', 'a finite number > 0 (1 = off)', repetitionPenalty);
  }
  if (repetitionWindow !== undefined && !(isNumber(repetitionWindow) && Number.isInteger(repetitionWindow) && repetitionWindow >= 1)) {
    fail('repetitionWindow', 'an integer >= 1', repetitionWindow);
  }
  if (seed !== undefined) {
    const integer = typeof seed === 'bigint' || (isNumber(seed) && Number.isSafeInteger(seed));
    if (!integer) fail('seed', 'an integer (a bigint beyond 2^53)', seed);
    // xorshift* stays at 0 forever from a zero state: every coin would be 0.
    if (BigInt.asUintN(64, BigInt(seed)) === 0n) fail('seed', 'nonzero modulo 2^64 (a zero state never changes)', seed);
  }
}

const f32 = Math.fround;
const F32_MAX = 3.4028234663852886e38;

/** Index of the largest value; the lowest index wins a tie. */
export function argmax(x: ArrayLike<number>, n = x.length): number {
  let best = 0;
  let max = x[0];
  for (let i = 1; i < n; i++) {
    if (x[i] > max) {
      max = x[i];
      best = i;
    }
  }
  return best;
}

/** Throws a NumericError when the logits hold a NaN or an infinity (a broken model, not a sampling choice). */
export function checkFinite(logits: ArrayLike<number>, n = logits.length): void {
  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(logits[i])) {
      throw new NumericError(`the model's logits hold ${logits[i]} (token ${i}): the forward pass produced non-finite values; do the checkpoint's weights hold NaN or Inf?`);
    }
  }
}

/** llama2.c's sample_mult: the first index whose CDF exceeds the coin. */
function sampleMultinomial(probs: Float32Array, n: number, coin: number): number {
  let cdf = 0;
  for (let i = 0; i < n; i++) {
    cdf = f32(cdf + probs[i]);
    if (coin < cdf) return i;
  }
  return n - 1;
}

/** Picks next tokens for one sequence: its options, and its own RNG (seeded, so a run can be replayed). */
export class Sampler {
  /** See SamplerOptions.temperature. */
  readonly temperature: number;
  /** See SamplerOptions.topp. */
  readonly topp: number;
  /** See SamplerOptions.topk. */
  readonly topk: number;
  /** See SamplerOptions.minp. */
  readonly minp: number;
  /** See SamplerOptions.repetitionPenalty. */
  readonly repetitionPenalty: number;
  /** See SamplerOptions.repetitionWindow. */
  readonly repetitionWindow: number;
  private readonly rng: Rng;
  /** Candidate indices, preallocated once (llama2.c's probindex). */
  private readonly order: Int32Array;

  /**
   * @param vocabSize How many logits each `sample` call reads.
   * @throws ArgumentError for an option out of range (checkSamplerOptions).
   */
  constructor(readonly vocabSize: number, opts: SamplerOptions = {}) {
    checkSamplerOptions(opts);
    this.temperature = opts.temperature ?? 1.0;
    this.topp = opts.topp ?? 0.9;
    this.topk = opts.topk ?? 0;
    this.minp = opts.minp ?? 0;
    this.repetitionPenalty = opts.repetitionPenalty ?? 1;
    this.repetitionWindow = opts.repetitionWindow ?? 64;
    this.rng = new Rng(opts.seed ?? Date.now());
    this.order = new Int32Array(vocabSize);
  }

  /** True when sampling is plain argmax with no logit processing: a backend may do it on the device. */
  get isGreedy(): boolean {
    return f32(this.temperature) === 0 && this.repetitionPenalty === 1;
  }

  /** Samples the next token. Mutates `logits` (as llama2.c does). `history` feeds the repetition penalty. */
  // #region sample
  sample(logits: Float32Array, history: ArrayLike<number> = []): number {
    const n = this.vocabSize;
    checkFinite(logits, n);
    if (this.repetitionPenalty !== 1) this.penalize(logits, history);
    const t = f32(this.temperature);
    if (t === 0) return argmax(logits, n);
    // A temperature so small that the largest logit divided by it overflows f32
    // would make softmax compute inf - inf = NaN. Its limit is greedy decoding.
    const best = argmax(logits, n);
    if (!Number.isFinite(f32(logits[best] / t))) return best;
    for (let i = 0; i < n; i++) logits[i] = logits[i] / t;
    softmax(logits, n);
    const coin = this.rng.nextF32();
    if (this.topk > 0 || this.minp > 0) return this.sampleFiltered(logits, coin);
    if (this.topp <= 0 || this.topp >= 1) return sampleMultinomial(logits, n, coin);
    return this.sampleTopp(logits, coin);
  }
  // #endregion sample

  /** llama.cpp's penalty: positive logits are divided, negative ones multiplied. */
  private penalize(logits: Float32Array, history: ArrayLike<number>): void {
    const seen = new Set<number>();
    for (let i = Math.max(0, history.length - this.repetitionWindow); i < history.length; i++) seen.add(history[i]);
    for (const id of seen) {
      if (id < 0 || id >= this.vocabSize) continue;
      const l = logits[id];
      // Clamped: a tiny penalty (a huge boost) must not turn a logit into an infinity.
      const v = l > 0 ? l / this.repetitionPenalty : l * this.repetitionPenalty;
      logits[id] = Math.min(F32_MAX, Math.max(-F32_MAX, v));
    }
  }

  /** Stable descending sort of the first `count` candidates (glibc's qsort is a stable merge sort here). */
  private sortCandidates(probs: Float32Array, count: number): Int32Array {
    const view = this.order.subarray(0, count);
    const sorted = Array.from(view).sort((a, b) => probs[b] - probs[a] || a - b);
    view.set(sorted);
    return view;
  }

  // #region topp
  /**
   * llama2.c's sample_topp: sort by probability, keep the shortest prefix
   * whose sum exceeds topp (the nucleus), draw within it in proportion.
   */
  private sampleTopp(probs: Float32Array, coin: number): number {
    const n = this.vocabSize;
    const topp = f32(this.topp);
    // Tokens below the cutoff cannot be part of the nucleus; dropping them first keeps the sort short.
    const cutoff = f32(f32(1 - topp) / (n - 1));
    let count = 0;
    for (let i = 0; i < n; i++) if (probs[i] >= cutoff) this.order[count++] = i;
    const order = this.sortCandidates(probs, count);
    let cumulative = 0;
    let last = count - 1;
    for (let i = 0; i < count; i++) {
      cumulative = f32(cumulative + probs[order[i]]);
      if (cumulative > topp) {
        last = i;
        break;
      }
    }
    const r = f32(coin * cumulative);
    let cdf = 0;
    for (let i = 0; i <= last; i++) {
      cdf = f32(cdf + probs[order[i]]);
      if (r < cdf) return order[i];
    }
    return order[last];
  }
  // #endregion topp

  /** Top-k, then min-p, then top-p over the sorted candidates; samples in proportion to what is kept. */
  private sampleFiltered(probs: Float32Array, coin: number): number {
    const n = this.vocabSize;
    for (let i = 0; i < n; i++) this.order[i] = i;
    const order = this.sortCandidates(probs, n);
    let keep = this.topk > 0 ? Math.min(this.topk, n) : n;
    if (this.minp > 0) {
      const floor = probs[order[0]] * this.minp;
      let k = 1;
      while (k < keep && probs[order[k]] >= floor) k++;
      keep = k;
    }
    let total = 0;
    for (let i = 0; i < keep; i++) {
      total += probs[order[i]];
      if (this.topp > 0 && this.topp < 1 && total > this.topp) {
        keep = i + 1;
        break;
      }
    }
    const r = coin * total;
    let cdf = 0;
    for (let i = 0; i < keep; i++) {
      cdf += probs[order[i]];
      if (r < cdf) return order[i];
    }
    return order[keep - 1];
  }
}
