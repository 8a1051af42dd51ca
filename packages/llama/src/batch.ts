/**
 * Continuous batching: the one place that runs the model. Every sequence (a
 * session's generation) asks for its next rows with `advance`; the runner
 * packs the rows of every sequence that is waiting into one step (one row per
 * decoding sequence, and prompt rows beside them up to maxRows), runs the
 * forward pass once for all of them, and answers each sequence with the
 * argmax or the logits of its last row.
 *
 * Decoding is memory-bound: a step reads every weight once whatever its row
 * count, so eight sequences in one step cost little more than one. Each row
 * only reads and writes its own sequence's KV slot, and every kernel computes
 * a row the same way whatever else the step holds, so a sequence's tokens are
 * identical to running it alone.
 *
 * When to run a step: when every sequence that is computing has handed in its
 * request. A sequence is "busy" from when it starts or its consumer asks for a
 * token until it hands in a request, suspends at a yield, or ends; a
 * suspended consumer (slow or abandoned) never holds the others back.
 */
import type { Backend } from '@rama/backend';
import { AbortError } from '@rama/core';
import { forward } from './forward.js';
import type { ModelSpec } from './spec.js';
import type { RunState } from './state.js';
import type { LlamaWeights } from './weights.js';

/** What a sequence gets back for the last row of a request. */
export interface RowResult {
  /** The device argmax of the row's logits (-1: they hold NaN or Inf), when asked for. */
  id?: number;
  /** A copy of the row's logits, when asked for. */
  logits?: Float32Array;
}

export interface RowRequest {
  /** The sequence's KV slot. */
  slot: number;
  /** Position of tokens[0]. */
  pos: number;
  /** Tokens entering the model at pos, pos + 1, ... */
  tokens: readonly number[];
  /** What to return for the last row: its argmax, its logits, both, or nothing. */
  argmax: boolean;
  logits: boolean;
}

interface Pending extends RowRequest {
  /** Rows already run. */
  done: number;
  resolve(r: RowResult): void;
  reject(e: unknown): void;
}

export class BatchRunner {
  private busy = 0;
  private readonly pending: Pending[] = [];
  private stepping = false;
  private lastYield = performance.now();
  private closed = false;

  constructor(
    private readonly backend: Backend,
    private readonly spec: ModelSpec,
    private readonly weights: LlamaWeights,
    private readonly state: RunState,
    /** Most rows per step. */
    readonly maxRows: number,
    /** Most ms of synchronous work between event-loop turns (see `step`). */
    private readonly yieldEveryMs: number,
  ) {}

  /** A sequence starts computing, or resumes after its consumer asked for the next token. */
  enter(): void {
    this.busy++;
  }

  /** A sequence suspends (its consumer holds a token) or ends. */
  leave(): void {
    this.busy--;
    this.kick();
  }

  /** Runs `req.tokens` through the model (over one or more steps, beside other sequences' rows). */
  advance(req: RowRequest): Promise<RowResult> {
    if (this.closed) return Promise.reject(new AbortError('the model was disposed'));
    if (req.tokens.length === 0) throw new RangeError('advance: no tokens');
    return new Promise<RowResult>((resolve, reject) => {
      this.pending.push({ ...req, done: 0, resolve, reject });
      this.busy--;
      this.kick();
    });
  }

  /** Fails everything waiting (dispose). */
  close(): void {
    this.closed = true;
    for (const p of this.pending.splice(0)) p.reject(new AbortError('the model was disposed'));
  }

  private kick(): void {
    if (this.stepping || this.busy > 0 || this.pending.length === 0) return;
    this.stepping = true;
    this.step().finally(() => {
      this.stepping = false;
      this.kick();
    });
  }

  private async step(): Promise<void> {
    // A CPU step runs synchronously and a resolved readback is only a
    // microtask, so without a real yield generation would hold the event loop
    // until it ends: no abort timer, no Ctrl-C. Yielding only after
    // yieldEveryMs of work keeps the cost (microseconds per yield) out of
    // tokens/s. Requests that arrive meanwhile join this step.
    if (performance.now() - this.lastYield >= this.yieldEveryMs) {
      await nextMacrotask();
      this.lastYield = performance.now();
    }
    if (this.closed || this.pending.length === 0) return;

    // Decoding rows first (one each), then prompt rows in arrival order.
    const order = [...this.pending].sort((a, b) => Number(a.tokens.length - a.done > 1) - Number(b.tokens.length - b.done > 1));
    const tokens: number[] = [];
    const positions: number[] = [];
    const slots: number[] = [];
    /** Requests whose last row runs in this step, with that row's index. */
    const finishing: { req: Pending; row: number }[] = [];
    for (const req of order) {
      const n = Math.min(req.tokens.length - req.done, this.maxRows - tokens.length);
      if (n <= 0) continue;
      for (let i = 0; i < n; i++) {
        tokens.push(req.tokens[req.done + i]);
        positions.push(req.pos + req.done + i);
        slots.push(req.slot);
      }
      req.done += n;
      if (req.done === req.tokens.length) finishing.push({ req, row: tokens.length - 1 });
    }

    const { backend, state } = this;
    const gathered = finishing.filter((f) => f.req.argmax || f.req.logits);
    try {
      backend.write(state.tokens, Int32Array.from(tokens));
      const step = backend.begin({ positions, slots });
      forward(step, this.spec, this.weights, this.state, gathered.map((f) => f.row));
      const wantIds = gathered.some((f) => f.req.argmax);
      const wantLogits = gathered.some((f) => f.req.logits);
      if (wantIds) step.argmax(state.tokens, state.logits);
      const logitsRead = wantLogits ? step.read(state.logits, gathered.length * this.spec.vocabSize) : undefined;
      const idsRead = wantIds ? step.read(state.tokens, gathered.length) : undefined;
      step.submit();
      const ids = idsRead && (await idsRead);
      let logits = logitsRead && ((await logitsRead) as Float32Array);
      // A row whose argmax says NaN/Inf: its logits are read so the sequence can say which.
      if (!logits && ids?.some((id) => id === -1)) logits = (await backend.read(state.logits, gathered.length * this.spec.vocabSize)) as Float32Array;

      for (const f of finishing) {
        this.pending.splice(this.pending.indexOf(f.req), 1);
        const g = gathered.indexOf(f);
        const result: RowResult = {};
        if (g >= 0 && ids && f.req.argmax) result.id = ids[g];
        if (g >= 0 && logits && (f.req.logits || result.id === -1)) {
          const v = this.spec.vocabSize;
          result.logits = logits.slice(g * v, (g + 1) * v);
        }
        this.busy++;
        f.req.resolve(result);
      }
    } catch (e) {
      // The step did not run as recorded: every sequence waiting on the model fails with it.
      for (const p of this.pending.splice(0)) {
        this.busy++;
        p.reject(e);
      }
    }
  }
}

/** Resolves on a later turn of the event loop (a macrotask). */
function nextMacrotask(): Promise<void> {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(0);
  });
}
