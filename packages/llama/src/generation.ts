/**
 * The token loop shared by generate and chat: feeds tokens through the model
 * in batches, samples, decodes text as it completes, and stops for a reason.
 * The stopping rules are llama2.c's: a sampled BOS ends the sequence (fed
 * tokens never do: each chat turn starts with one), and nothing runs at or
 * past the position limit.
 */
import { AbortError, BackendError, type Backend, type Step } from '@rama/backend';
import type { ModelConfig } from '@rama/checkpoint';
import { checkFinite, type Sampler } from '@rama/sampler';
import { BOS_ID, EOS_ID, type TextStream } from '@rama/tokenizer';
import { forward } from './forward.js';
import type { RunState } from './state.js';
import type { LlamaWeights } from './weights.js';

/**
 * Why a generation ended: its position limit (`steps`) or the context's end
 * (`context`), a sampled BOS or EOS, its AbortSignal or consumer (`aborted`),
 * or another generation of the same model taking over while it sat suspended
 * (`preempted`, see scheduler.ts).
 */
export type StopReason = 'steps' | 'context' | 'bos' | 'eos' | 'aborted' | 'preempted';

export interface GeneratedToken {
  id: number;
  /** The text this token completed (may be '' while a multi-byte character is still arriving). */
  text: string;
  /** True for prompt tokens echoed as they are read (generate with `echo`). */
  prompt: boolean;
  /** The logits the token was sampled from, when asked for with `logits: true`. */
  logits?: Float32Array;
}

export interface GenerationTiming {
  /** Prompt processing up to the first sampled token. */
  promptMs: number;
  /** From the first sampled token to the end. */
  generateMs: number;
  timeToFirstTokenMs: number;
  promptTokensPerSecond: number;
  /** Sampled tokens after the first, per second of generateMs (llama2.c also excludes the first). */
  tokensPerSecond: number;
}

export interface GenerationResult {
  reason: StopReason;
  /** Every id that entered the model or was produced: BOS, the prompt, then each sampled token. */
  tokens: number[];
  /** All text yielded, joined. */
  text: string;
  promptTokens: number;
  generatedTokens: number;
  timing: GenerationTiming;
}

/** What the loop needs from the model. */
export interface Engine {
  backend: Backend;
  config: ModelConfig;
  weights: LlamaWeights;
  state: RunState;
  maxRows: number;
  /** Most ms of synchronous work between event-loop turns (see letEventLoopRun). */
  yieldEveryMs: number;
}

export interface LoopPlan {
  /** Tokens to feed first (at least one), starting at position `startPos`. */
  feed: number[];
  startPos: number;
  /** No position at or past this runs. */
  endPos: number;
  /** Why we stop when endPos is reached. */
  endReason: 'steps' | 'context';
  /** Yield the fed tokens after the first (llama2.c prints the prompt as it reads it). */
  echo: boolean;
  /** End when EOS is sampled (chat), instead of printing it and going on (generate). */
  stopAtEos: boolean;
  sampler: Sampler;
  text: TextStream;
  signal?: AbortSignal;
  withLogits: boolean;
  /** Called with the position after the last one run, so a chat knows where to continue. */
  onEnd(pos: number, last: number, reason: StopReason): void;
}

/** Where a generation leaves its result; `interruptedBy` says why it was cut short from outside. */
export interface ResultHolder {
  value?: GenerationResult;
  interruptedBy?: 'aborted' | 'preempted';
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

export async function* runLoop(e: Engine, plan: LoopPlan, result: ResultHolder): AsyncGenerator<GeneratedToken> {
  const { backend, config, weights, state } = e;
  const { feed, sampler } = plan;
  const deviceArgmax = sampler.isGreedy;
  const tokens = [feed[0]];
  let text = '';
  let pos = plan.startPos;
  let current = feed[0];
  let reason: StopReason | undefined;
  let generated = 0;
  const t0 = performance.now();
  let tFirst = 0;
  let lastYield = t0;
  // A CPU step runs synchronously and a resolved readback is only a microtask,
  // so without a real yield a generation would hold the event loop until it
  // ends: no abort timer, no Ctrl-C. Yielding only after e.yieldEveryMs of
  // work keeps the cost (microseconds per yield) out of tokens/s.
  const letEventLoopRun = async () => {
    if (performance.now() - lastYield < e.yieldEveryMs) return;
    await nextMacrotask();
    lastYield = performance.now();
  };

  /** Records `next`, returns the text to show, or sets `reason` when a sampled token ends the sequence. */
  const accept = (next: number, sampled: boolean): string | undefined => {
    if (sampled && next === BOS_ID) {
      reason = 'bos';
      return undefined;
    }
    tokens.push(next);
    if (sampled && next === EOS_ID && plan.stopAtEos) {
      reason = 'eos';
      return undefined;
    }
    const piece = plan.text.push(current, next);
    current = next;
    return piece;
  };

  /** Records the reads a sample needs into the step, submits it, and picks the next token. */
  const submitAndSample = async (step: Step): Promise<{ id: number; logits?: Float32Array }> => {
    if (deviceArgmax) step.argmax(state.tokens, state.logits);
    const logitsRead = plan.withLogits || !deviceArgmax ? step.read(state.logits) : undefined;
    const idRead = deviceArgmax ? step.read(state.tokens, 1) : undefined;
    step.submit();
    const logits = logitsRead && ((await logitsRead) as Float32Array);
    const shown = logits && plan.withLogits ? logits.slice() : undefined;
    const id = idRead ? (await idRead)[0] : sampler.sample(logits!, tokens);
    // The device argmax says -1 when the logits hold NaN or Inf (the host sampler throws itself).
    if (id === -1) {
      checkFinite(logits ?? (await backend.read(state.logits)));
      throw new BackendError('the device argmax reported non-finite logits that read back finite');
    }
    return { id, logits: shown };
  };

  const emitSampled = function* (s: { id: number; logits?: Float32Array }): Generator<GeneratedToken> {
    generated++;
    if (generated === 1) tFirst = performance.now();
    const piece = accept(s.id, true);
    if (piece !== undefined) {
      text += piece;
      yield { id: s.id, text: piece, prompt: false, logits: s.logits };
    }
  };

  try {
    // The fed tokens, in batches of up to maxRows positions.
    let fed = 0;
    while (fed < feed.length && reason === undefined) {
      await letEventLoopRun();
      if (plan.signal?.aborted) reason = 'aborted';
      else if (pos >= plan.endPos) reason = plan.endReason;
      if (reason) break;
      const rows = Math.min(e.maxRows, feed.length - fed, plan.endPos - pos);
      backend.write(state.tokens, Int32Array.from(feed.slice(fed, fed + rows)));
      const step = backend.begin(pos, rows);
      forward(step, config, weights, state);
      const samples = fed + rows === feed.length;
      const sampled = samples ? submitAndSample(step) : (step.submit(), undefined);
      pos += rows;
      // Each position's successor: the next fed token, or a sample after the last one.
      for (let j = fed + 1; j <= fed + rows && j < feed.length && reason === undefined; j++) {
        const piece = accept(feed[j], false);
        if (piece !== undefined && plan.echo) {
          text += piece;
          yield { id: feed[j], text: piece, prompt: true };
        }
      }
      fed += rows;
      if (sampled) {
        const s = await sampled;
        if (reason === undefined) yield* emitSampled(s);
      }
    }
    if (fed < feed.length && reason === undefined) reason = plan.endReason;

    // One position at a time from here on.
    while (reason === undefined) {
      await letEventLoopRun();
      if (plan.signal?.aborted) reason = 'aborted';
      else if (pos >= plan.endPos) reason = plan.endReason;
      if (reason) break;
      if (!deviceArgmax) backend.write(state.tokens, Int32Array.of(current));
      const step = backend.begin(pos, 1);
      forward(step, config, weights, state);
      const sampled = submitAndSample(step);
      pos++;
      yield* emitSampled(await sampled);
    }
    const rest = plan.text.flush();
    if (rest) {
      text += rest;
      yield { id: current, text: rest, prompt: false };
    }
  } finally {
    const tEnd = performance.now();
    reason ??= result.interruptedBy ?? 'aborted';
    plan.onEnd(pos, tokens[tokens.length - 1], reason);
    const promptCount = Math.min(feed.length, pos - plan.startPos);
    const promptMs = (tFirst || tEnd) - t0;
    const generateMs = tFirst ? tEnd - tFirst : 0;
    result.value = {
      reason,
      tokens,
      text,
      promptTokens: promptCount,
      generatedTokens: generated,
      timing: {
        promptMs,
        generateMs,
        timeToFirstTokenMs: tFirst ? tFirst - t0 : 0,
        promptTokensPerSecond: promptMs > 0 ? (promptCount / promptMs) * 1000 : 0,
        tokensPerSecond: generateMs > 0 ? ((generated - 1) / generateMs) * 1000 : 0,
      },
    };
  }
}

/**
 * A running generation: iterate it for tokens as they come, then read
 * `result()` for the stop reason, all token ids, the text and the timing.
 */
export class Generation implements AsyncIterable<GeneratedToken> {
  private started = false;
  private readonly holder: ResultHolder & { error?: unknown } = {};
  private settle!: () => void;
  /** Resolves once the result is known: the run ended, failed or was preempted. */
  private readonly settled = new Promise<void>((r) => (this.settle = r));

  /** `body` runs the generation; it calls `settle` itself if its result is known before iteration ends. */
  constructor(private readonly body: (holder: ResultHolder, settle: () => void) => AsyncGenerator<GeneratedToken>) {}

  async *[Symbol.asyncIterator](): AsyncIterator<GeneratedToken> {
    if (this.started) throw new AbortError('a Generation can be iterated only once');
    this.started = true;
    try {
      yield* this.body(this.holder, () => this.settle());
    } catch (e) {
      this.holder.error = e;
      throw e;
    } finally {
      this.settle();
    }
  }

  /** Runs to the end (if nobody is iterating) and returns the result. */
  async result(): Promise<GenerationResult> {
    if (!this.started) for await (const _ of this) void _;
    await this.settled;
    if (this.holder.error !== undefined) throw this.holder.error;
    if (this.holder.value === undefined) throw new AbortError('the generation ended without a result');
    return this.holder.value;
  }

  /** Runs to the end and returns the text. */
  async text(): Promise<string> {
    return (await this.result()).text;
  }
}
