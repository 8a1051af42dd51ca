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
 *
 * Pipelining (backends whose steps run on a device queue, Backend.executesAsync):
 * after a step whose every row wants only its argmax (greedy decoding), the
 * next step is recorded and submitted at once, before the first one's ids are
 * read back: its input tokens are the argmax output, already on the device,
 * so the host's readback and sampling overlap the device's work. When the
 * sequences then ask for exactly those rows (each continues with its argmax),
 * they get that step's results; otherwise (a sequence stopped, a new one
 * joined) its results are dropped. A dropped step only wrote KV entries past
 * its sequences' ends, which every later step writes before any attention
 * reads them, so results stay exact.
 */
import type { Backend } from '@rama/backend';
import { AbortError } from '@rama/core';
import { forward } from './forward.js';
import { InspectTaps, type ProbeEntry, type RowInspect } from './inspect.js';
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
  /** Copies of what the model computes for these rows (see inspect.ts); never run ahead. */
  inspect?: RowInspect;
}

/** A step submitted ahead of its requests (see Pipelining above). */
interface Speculation {
  /** Per row, in row order: the sequence's slot and position, and the token entering there (the previous step's argmax, known once read back). */
  rows: { slot: number; pos: number; token: number }[];
  /** The step's argmax per row. */
  ids: Promise<Float32Array | Int32Array>;
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
  private speculation: Speculation | undefined;
  /** Made the first time a request inspects. */
  private inspectTaps: InspectTaps | undefined;
  /** Steps submitted ahead, and how many of them were used (for tests and tuning). */
  readonly pipelineStats = { submitted: 0, used: 0 };

  constructor(
    private readonly backend: Backend,
    private readonly spec: ModelSpec,
    private readonly weights: LlamaWeights,
    private readonly state: RunState,
    /** Most rows per step. */
    readonly maxRows: number,
    /** Most ms of synchronous work between event-loop turns (see `step`). */
    private readonly yieldEveryMs: number,
    /** Submit the next greedy step before reading back the current one (default: where the backend's steps run asynchronously). */
    private readonly pipeline = backend.executesAsync === true,
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
    this.inspectTaps?.free();
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

    const ahead = this.speculation;
    this.speculation = undefined;
    const claimed = ahead && this.claim(ahead);
    if (ahead && claimed) return this.finishAhead(ahead, claimed);
    return this.runPending();
  }

  /** Packs the pending requests' rows into one step, runs it, and answers the requests that finish. */
  private async runPending(): Promise<void> {
    // Decoding rows first (one each), then prompt rows in arrival order.
    const order = [...this.pending].sort((a, b) => Number(a.tokens.length - a.done > 1) - Number(b.tokens.length - b.done > 1));
    const tokens: number[] = [];
    const positions: number[] = [];
    const slots: number[] = [];
    /** Requests whose last row runs in this step, with that row's index. */
    const finishing: { req: Pending; row: number }[] = [];
    const probes: ProbeEntry[] = [];
    for (const req of order) {
      const n = Math.min(req.tokens.length - req.done, this.maxRows - tokens.length);
      if (n <= 0) continue;
      const first = tokens.length;
      for (let i = 0; i < n; i++) {
        tokens.push(req.tokens[req.done + i]);
        positions.push(req.pos + req.done + i);
        slots.push(req.slot);
      }
      req.done += n;
      if (req.done === req.tokens.length) finishing.push({ req, row: tokens.length - 1 });
      if (req.inspect) {
        const rows = Array.from({ length: n }, (_, i) => first + i);
        probes.push({ inspect: req.inspect, rows, last: req.done === req.tokens.length ? tokens.length - 1 : undefined });
      }
    }

    const { backend, state } = this;
    const gathered = finishing.filter((f) => f.req.argmax || f.req.logits);
    try {
      backend.write(state.tokens, Int32Array.from(tokens));
      const step = backend.begin({ positions, slots });
      const probe = probes.length > 0 ? (this.inspectTaps ??= new InspectTaps(backend, this.spec, state, this.maxRows)).record(probes) : undefined;
      forward(step, this.spec, this.weights, this.state, gathered.map((f) => f.row), probe?.taps);
      const wantIds = gathered.some((f) => f.req.argmax);
      const wantLogits = gathered.some((f) => f.req.logits);
      if (wantIds) step.argmax(state.tokens, state.logits);
      const logitsRead = wantLogits ? step.read(state.logits, gathered.length * this.spec.vocabSize) : undefined;
      const idsRead = wantIds ? step.read(state.tokens, gathered.length) : undefined;
      step.submit();
      const next = this.canRunAhead(finishing) ? this.runAhead(finishing.map((f) => ({ slot: f.req.slot, pos: f.req.pos + f.req.tokens.length }))) : undefined;
      const ids = idsRead && (await idsRead);
      if (next && ids && !ids.includes(-1)) {
        next.rows.forEach((r, i) => (r.token = ids[i]));
        this.speculation = next;
      }
      let logits = logitsRead && ((await logitsRead) as Float32Array);
      // A row whose argmax says NaN/Inf: its logits are read so the sequence can say which.
      if (!logits && ids?.some((id) => id === -1)) logits = (await backend.read(state.logits, gathered.length * this.spec.vocabSize)) as Float32Array;
      await probe?.deliver();

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

  /**
   * Whether the step whose finishing requests are `finishing` may be followed
   * at once by the next one: every request in it finished (no prompt goes on),
   * wants only its argmax, and has a next position within the cache.
   */
  private canRunAhead(finishing: { req: Pending }[]): boolean {
    const context = this.state.keyCache[0].shape[2];
    return (
      this.pipeline &&
      finishing.length > 0 &&
      finishing.length === this.pending.length &&
      finishing.every((f) => f.req.argmax && !f.req.logits && !f.req.inspect && f.req.pos + f.req.tokens.length < context)
    );
  }

  /** Records and submits one row per sequence at `rows`, its input tokens the argmax the previous step left on the device. */
  private runAhead(rows: { slot: number; pos: number }[]): Speculation {
    const step = this.backend.begin({ positions: rows.map((r) => r.pos), slots: rows.map((r) => r.slot) });
    forward(step, this.spec, this.weights, this.state, rows.map((_, i) => i));
    step.argmax(this.state.tokens, this.state.logits);
    const ids = step.read(this.state.tokens, rows.length);
    step.submit();
    ids.catch(() => {}); // a dropped step's failure concerns nobody; a used one's is seen where it is awaited
    this.pipelineStats.submitted++;
    return { rows: rows.map((r) => ({ ...r, token: -1 })), ids };
  }

  /** The pending requests in the order of `ahead`'s rows, if they are exactly those rows; else undefined. */
  private claim(ahead: Speculation): Pending[] | undefined {
    if (this.pending.length !== ahead.rows.length) return undefined;
    const claimed: Pending[] = [];
    for (const r of ahead.rows) {
      const p = this.pending.find((q) => q.slot === r.slot);
      if (!p || p.done !== 0 || p.pos !== r.pos || p.tokens.length !== 1 || p.tokens[0] !== r.token || !p.argmax || p.logits || p.inspect) return undefined;
      claimed.push(p);
    }
    return claimed;
  }

  /** Answers the requests that `ahead` already computed, submitting the step after it first. */
  private async finishAhead(ahead: Speculation, claimed: Pending[]): Promise<void> {
    try {
      const next = this.canRunAhead(claimed.map((req) => ({ req }))) ? this.runAhead(ahead.rows.map((r) => ({ slot: r.slot, pos: r.pos + 1 }))) : undefined;
      const ids = await ahead.ids;
      // Non-finite logits: run these rows again the plain way, which reads the logits so the sequence can say which.
      if (ids.includes(-1)) return this.runPending();
      if (next) {
        next.rows.forEach((r, i) => (r.token = ids[i]));
        this.speculation = next;
      }
      this.pipelineStats.used++;
      for (const [i, p] of claimed.entries()) {
        this.pending.splice(this.pending.indexOf(p), 1);
        this.busy++;
        p.resolve({ id: ids[i] });
      }
    } catch (e) {
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
