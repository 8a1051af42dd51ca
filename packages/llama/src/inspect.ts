/**
 * Inspection: what the model computed for each sampled token, beside the
 * token. The top-k candidates come from the logits; the attention weights of
 * one head and the residual stream's norms come from copies of the model's
 * own q, k and residual rows, taken on the device in the same step (a
 * `gather` into small tensors and a read that travels with the step's other
 * reads, so on WebGPU the same queue submission). Nothing of this runs, and
 * no tensor is allocated, for a generation that does not ask.
 *
 * The attention weights are softmax(q . k / sqrt(headSize)) over positions
 * 0..p, recomputed on the host in float64 from the very q and k rows the
 * attention kernel read (the kernel evaluates the same formula in f32). The keys of earlier positions are collected as the prompt and
 * the tokens run, which is why inspection is a `generate` option: a
 * generation starts its sequence at position 0.
 */
import type { Backend, Step, Tensor } from '@rama/backend';
import { ArgumentError } from '@rama/core';
import type { Tokenizer } from '@rama/tokenizer';
import type { ForwardTaps } from './forward.js';
import { checkBoolean, checkInteger, checkKnown, describe } from './options.js';
import type { ModelSpec } from './spec.js';
import type { RunState } from './state.js';

/** What `generate(prompt, { inspect })` attaches to each sampled token. */
export interface InspectOptions {
  /** [layer, head] (0-based): the attention weights of that layer's query head over the positions so far. */
  attention?: readonly [number, number];
  /** The k largest logits, with their probabilities before and after the sampler's settings. */
  topK?: number;
  /** The L2 norm of the residual stream after each layer. */
  residualNorms?: boolean;
}

/** One of the `topK` candidates for the next token. */
export interface Candidate {
  /** The token's id. */
  id: number;
  /** The token's text after the previous token. */
  text: string;
  /** The model's raw logit. */
  logit: number;
  /** softmax(logits) at temperature 1: the model's own distribution. */
  prob: number;
  /**
   * Its probability under the generation's sampler: temperature, then top-k,
   * min-p and top-p, renormalized (see samplingDistribution; the repetition
   * penalty is not applied).
   */
  sampledProb: number;
}

/** What the model computed for one sampled token (GeneratedToken.inspect). */
export interface TokenInspection {
  /** The position whose logits the token was sampled from (the token then enters at position + 1). */
  position: number;
  /** With `topK`: the k largest logits, largest first (a tie: the lower id first). */
  topK?: Candidate[];
  /** With `attention: [layer, head]`: the head's weights over positions 0..position (they sum to 1). */
  attention?: number[];
  /** With `residualNorms`: ||x|| after each layer, layer 0 first. */
  residualNorms?: number[];
}

/** Largest `topK` (a candidate list, not a second copy of the logits: ask for `logits: true` for those). */
export const MAX_INSPECT_TOP_K = 1000;

/** Checked options and what the loop needs to honour them. */
export interface InspectPlan {
  layer?: number;
  head?: number;
  topK: number;
  residualNorms: boolean;
  spec: ModelSpec;
  tokenizer: Tokenizer;
}

/** Checks `inspect` (a generate option) against the model; undefined when it asks for nothing. */
export function checkInspectOptions(what: string, value: unknown, spec: ModelSpec, tokenizer: Tokenizer): InspectPlan | undefined {
  if (value === undefined) return undefined;
  const o = checkKnown(`${what}: inspect`, value, ['attention', 'topK', 'residualNorms']);
  const name = `${what}: inspect`;
  let layer: number | undefined;
  let head: number | undefined;
  if (o.attention !== undefined) {
    const a = o.attention;
    if (!Array.isArray(a) || a.length !== 2) throw new ArgumentError(`${name}.attention must be [layer, head], got ${describe(a)}`);
    checkInteger(name, `attention's layer (the model has ${spec.nLayers})`, a[0], 0, spec.nLayers - 1);
    checkInteger(name, `attention's head (the model has ${spec.nHeads})`, a[1], 0, spec.nHeads - 1);
    [layer, head] = a as [number, number];
  }
  checkInteger(name, 'topK', o.topK, 1, Math.min(MAX_INSPECT_TOP_K, spec.vocabSize));
  checkBoolean(name, 'residualNorms', o.residualNorms);
  const plan = { layer, head, topK: (o.topK as number | undefined) ?? 0, residualNorms: o.residualNorms === true, spec, tokenizer };
  return plan.layer === undefined && plan.topK === 0 && !plan.residualNorms ? undefined : plan;
}

/** The sampler settings samplingDistribution follows (those of @rama/sampler, with its defaults). */
export interface DistributionOptions {
  /** As SamplerOptions.temperature. */
  temperature?: number;
  /** As SamplerOptions.topp. */
  topp?: number;
  /** As SamplerOptions.topk. */
  topk?: number;
  /** As SamplerOptions.minp. */
  minp?: number;
}

/**
 * The probability of each token under a sampler's settings, in float64: the
 * logits divided by the temperature and softmaxed, then the top-k, the
 * tokens within min-p of the best, and the top-p nucleus kept (in that order,
 * over the tokens sorted by probability), renormalized; the rest are 0.
 * Temperature 0 puts everything on the argmax. Defaults are the sampler's
 * (temperature 1, top-p 0.9). Cheap enough to re-run as a slider moves.
 */
export function samplingDistribution(logits: ArrayLike<number>, opts: DistributionOptions = {}): Float64Array {
  const n = logits.length;
  const t = Math.fround(opts.temperature ?? 1);
  const topp = opts.topp ?? 0.9;
  const out = new Float64Array(n);
  if (n === 0) return out;
  const best = largest(logits, 1)[0];
  if (t === 0 || !Number.isFinite(logits[best] / t)) {
    out[best] = 1;
    return out;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += out[i] = Math.exp((logits[i] - logits[best]) / t);
  for (let i = 0; i < n; i++) out[i] /= sum;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => out[b] - out[a] || a - b);
  let keep = opts.topk && opts.topk > 0 ? Math.min(opts.topk, n) : n;
  if (opts.minp && opts.minp > 0) {
    const floor = out[order[0]] * opts.minp;
    let k = 1;
    while (k < keep && out[order[k]] >= floor) k++;
    keep = k;
  }
  let total = 0;
  for (let i = 0; i < keep; i++) {
    total += out[order[i]];
    if (topp > 0 && topp < 1 && total > topp) {
      keep = i + 1;
      break;
    }
  }
  for (let i = 0; i < n; i++) {
    const id = order[i];
    out[id] = i < keep ? out[id] / total : 0;
  }
  return out;
}

/** The indices of the `k` largest values, largest first; a tie keeps the lower index first. */
export function largest(values: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < values.length; i++) {
    if (best.length === k && !(values[i] > values[best[k - 1]])) continue;
    if (best.length === k) best.pop();
    let j = best.length;
    while (j > 0 && values[best[j - 1]] < values[i]) j--;
    best.splice(j, 0, i);
  }
  return best;
}

/** What a sequence asks one step to copy out for it (RowRequest.inspect). */
export interface RowInspect {
  /** Copy this layer's rotated q and k rows (attention weights); undefined: none. */
  layer?: number;
  /** Copy the residual stream after every layer. */
  residual: boolean;
  /**
   * Called once the step ran: `keys`, the k row of each of the request's
   * rows in the step ([rows, kvDim]); `q` and `residual` (one row per layer)
   * for its last row, when the request finished in this step.
   */
  deliver(keys: Float32Array | undefined, q: Float32Array | undefined, residual: Float32Array[] | undefined): void;
}

/** A request's part of a step: its rows, and its last row when it finishes there. */
export interface ProbeEntry {
  inspect: RowInspect;
  rows: number[];
  last?: number;
}

/**
 * The small tensors inspection copies into, one set per layer asked about,
 * allocated the first time a generation inspects and freed with the model.
 */
export class InspectTaps {
  private readonly q = new Map<number, Tensor>();
  private readonly k = new Map<number, Tensor>();
  private readonly x = new Map<number, Tensor>();

  constructor(
    private readonly backend: Backend,
    private readonly spec: ModelSpec,
    private readonly state: RunState,
    private readonly maxRows: number,
  ) {}

  private tensor(map: Map<number, Tensor>, layer: number, what: string, cols: number): Tensor {
    let t = map.get(layer);
    if (!t) {
      t = this.backend.alloc({ shape: [this.maxRows, cols], dtype: 'f32', label: `inspect_${what}_${layer}` });
      map.set(layer, t);
    }
    return t;
  }

  /** Taps for one step holding `entries`, and a function that, after submit, hands each entry its rows. */
  record(entries: readonly ProbeEntry[]): { taps: ForwardTaps; deliver(): Promise<void> } {
    const { spec, state } = this;
    const reads: Promise<unknown>[] = [];
    /** Per entry: its keys, q and residual rows once read. */
    const got = entries.map(() => ({ keys: undefined as Float32Array | undefined, q: undefined as Float32Array | undefined, residual: [] as Float32Array[] }));
    /** Gathers `rows` of `src` into the layer's tensor and reads them; `put` receives each entry's slice. */
    const copy = (step: Step, map: Map<number, Tensor>, what: string, layer: number, src: Tensor, cols: number, parts: { i: number; rows: number[] }[],
      put: (i: number, data: Float32Array) => void) => {
      const rows = parts.flatMap((p) => p.rows);
      if (rows.length === 0) return;
      const t = this.tensor(map, layer, what, cols);
      step.gather(t, src, rows);
      reads.push(step.read(t, rows.length * cols).then((data) => {
        let at = 0;
        for (const p of parts) {
          put(p.i, (data as Float32Array).slice(at * cols, (at + p.rows.length) * cols));
          at += p.rows.length;
        }
      }));
    };
    const indexed = entries.map((e, i) => ({ ...e, i }));
    const attention = indexed.filter((e) => e.inspect.layer !== undefined);
    const residual = indexed.filter((e) => e.inspect.residual && e.last !== undefined);
    const taps: ForwardTaps = {};
    if (attention.length > 0) {
      // Every inspected layer copies the rows of every entry that inspects attention, each entry keeping
      // its own layer's: the same row counts at every layer, so a step holds few distinct gathered
      // counts (a WebGPU step has room for 7) however many sequences inspect which layers.
      const layers = new Set(attention.map((e) => e.inspect.layer));
      const keyRows = attention.map((e) => ({ i: e.i, rows: e.rows }));
      const lastRows = attention.filter((e) => e.last !== undefined).map((e) => ({ i: e.i, rows: [e.last!] }));
      const mine = (l: number, i: number) => entries[i].inspect.layer === l;
      taps.rotated = (step, l) => {
        if (!layers.has(l)) return;
        copy(step, this.k, 'k', l, state.k, spec.kvDim, keyRows, (i, d) => mine(l, i) && (got[i].keys = d));
        copy(step, this.q, 'q', l, state.q, spec.dim, lastRows, (i, d) => mine(l, i) && (got[i].q = d));
      };
    }
    if (residual.length > 0) {
      taps.layerEnd = (step, l) => {
        copy(step, this.x, 'x', l, state.x, spec.dim, residual.map((e) => ({ i: e.i, rows: [e.last!] })), (i, d) => (got[i].residual[l] = d));
      };
    }
    return {
      taps,
      deliver: async () => {
        await Promise.all(reads);
        entries.forEach((e, i) => e.inspect.deliver(got[i].keys, got[i].q, got[i].residual.length > 0 ? got[i].residual : undefined));
      },
    };
  }

  /** Frees the tensors (the model is disposed). */
  free(): void {
    for (const map of [this.q, this.k, this.x]) {
      for (const t of map.values()) this.backend.free(t);
      map.clear();
    }
  }
}

/**
 * One generation's inspection: collects its keys at the inspected layer as
 * its rows run, and builds each sampled token's TokenInspection.
 */
export class SequenceInspector {
  /** The inspected head's key slice of each position so far ([positions, headSize]). */
  private keys: Float32Array;
  private positions = 0;
  private q: Float32Array | undefined;
  private residual: Float32Array[] | undefined;

  constructor(private readonly plan: InspectPlan) {
    this.keys = new Float32Array(plan.layer === undefined ? 0 : 64 * plan.spec.headSize);
  }

  /** What to copy in the step(s) of `rows` rows starting at `pos`; `last`: whether the token is sampled after them. */
  request(pos: number, last: boolean): RowInspect | undefined {
    const { layer, residualNorms } = this.plan;
    if (layer === undefined && !(residualNorms && last)) return undefined;
    if (layer !== undefined && pos !== this.positions) throw new RangeError(`inspect: rows from position ${pos}, but ${this.positions} keys were collected`);
    this.q = this.residual = undefined;
    return {
      layer,
      residual: residualNorms && last,
      deliver: (keys, q, residual) => {
        if (keys) this.addKeys(keys);
        if (q) this.q = q;
        if (residual) this.residual = residual;
      },
    };
  }

  private addKeys(rows: Float32Array): void {
    const { spec, head } = this.plan;
    const hs = spec.headSize;
    const n = rows.length / spec.kvDim;
    // Query head h reads KV head floor(h / (nHeads / nKvHeads)), as the attention op does.
    const kvHead = Math.floor(head! / (spec.nHeads / spec.nKvHeads));
    if ((this.positions + n) * hs > this.keys.length) {
      const grown = new Float32Array(Math.max(2 * this.keys.length, (this.positions + n) * hs));
      grown.set(this.keys.subarray(0, this.positions * hs));
      this.keys = grown;
    }
    for (let r = 0; r < n; r++) this.keys.set(rows.subarray(r * spec.kvDim + kvHead * hs, r * spec.kvDim + (kvHead + 1) * hs), (this.positions + r) * hs);
    this.positions += n;
  }

  /**
   * The inspection of a token sampled from position `position`'s `logits`
   * (the model's, before the sampler touched them; needed with topK), `prev`
   * the token at that position.
   */
  token(position: number, logits: Float32Array | undefined, sampler: DistributionOptions, prev: number): TokenInspection {
    const { plan } = this;
    const out: TokenInspection = { position };
    if (plan.topK > 0 && logits) {
      let max = -Infinity;
      for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
      let sum = 0;
      for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
      const sampled = samplingDistribution(logits, sampler);
      out.topK = largest(logits, plan.topK).map((id) => ({
        id,
        text: utf8.decode(plan.tokenizer.decodePiece(prev, id)),
        logit: logits[id],
        prob: Math.exp(logits[id] - max) / sum,
        sampledProb: sampled[id],
      }));
    }
    if (plan.layer !== undefined && this.q) out.attention = this.attention(position);
    if (plan.residualNorms && this.residual) {
      out.residualNorms = this.residual.map((row) => {
        let ss = 0;
        for (let i = 0; i < row.length; i++) ss += row[i] * row[i];
        return Math.sqrt(ss);
      });
    }
    return out;
  }

  /** softmax(q . k / sqrt(headSize)) of the inspected head over positions 0..position, in float64. */
  private attention(position: number): number[] {
    const { spec, head } = this.plan;
    const hs = spec.headSize;
    if (position + 1 > this.positions) throw new RangeError(`inspect: attention at position ${position}, but ${this.positions} keys were collected`);
    const q = this.q!.subarray(head! * hs, (head! + 1) * hs);
    const scale = 1 / Math.sqrt(hs);
    const scores = new Array<number>(position + 1);
    let max = -Infinity;
    for (let t = 0; t <= position; t++) {
      let dot = 0;
      for (let i = 0; i < hs; i++) dot += q[i] * this.keys[t * hs + i];
      scores[t] = dot * scale;
      if (scores[t] > max) max = scores[t];
    }
    let sum = 0;
    for (let t = 0; t <= position; t++) sum += scores[t] = Math.exp(scores[t] - max);
    return scores.map((s) => s / sum);
  }
}

const utf8 = new TextDecoder();
