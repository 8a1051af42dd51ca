/**
 * The token loop shared by generate and chat: feeds tokens through the model
 * in batches, samples, decodes text as it completes, and stops for a reason.
 * The stopping rules are llama2.c's: a sampled BOS ends the sequence (fed
 * tokens never do: each chat turn starts with one), and nothing runs at or
 * past the position limit.
 */
import { AbortError, BackendError } from '@rama/core';
import { checkFinite, type Sampler } from '@rama/sampler';
import type { TextStream } from '@rama/tokenizer';
import type { BatchRunner } from './batch.js';

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
  /** The position in the session's KV cache where tokens[0] entered (0 unless a chat turn continues a conversation). */
  position: number;
  /** All text yielded, joined. */
  text: string;
  promptTokens: number;
  generatedTokens: number;
  timing: GenerationTiming;
}

export interface LoopPlan {
  /** Tokens to feed first (at least one), starting at position `startPos`. */
  feed: number[];
  startPos: number;
  /** The sequence's KV slot. */
  slot: number;
  /** No position at or past this runs. */
  endPos: number;
  /** Why we stop when endPos is reached. */
  endReason: 'steps' | 'context';
  /** Yield the fed tokens after the first (llama2.c prints the prompt as it reads it). */
  echo: boolean;
  /** End when EOS is sampled (chat), instead of printing it and going on (generate). */
  stopAtEos: boolean;
  /** The model's BOS (a sampled one ends the sequence, as in llama2.c) and its stop ids (EOS, end of turn). */
  bosId: number;
  stopIds: readonly number[];
  sampler: Sampler;
  text: TextStream;
  signal?: AbortSignal;
  withLogits: boolean;
  /**
   * Called with the position after the last one run and the tokens that
   * entered the model (from startPos), so a session knows what its cache holds.
   */
  onEnd(pos: number, last: number, reason: StopReason, entered: readonly number[]): void;
}

/** Where a generation leaves its result; `interruptedBy` says why it was cut short from outside. */
export interface ResultHolder {
  value?: GenerationResult;
  interruptedBy?: 'aborted' | 'preempted';
}

/** Prompt rows handed to the runner at once: a long prompt is read in chunks so an abort stops it between them. */
const PROMPT_CHUNK = 64;

/**
 * One sequence's token loop: feeds the prompt, then samples one token at a
 * time, asking the batch runner for each step's rows (which it may run beside
 * other sequences' rows).
 */
export async function* runLoop(runner: BatchRunner, plan: LoopPlan, result: ResultHolder): AsyncGenerator<GeneratedToken> {
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

  /** Records `next`, returns the text to show, or sets `reason` when a sampled token ends the sequence. */
  const accept = (next: number, sampled: boolean): string | undefined => {
    if (sampled && next === plan.bosId) {
      reason = 'bos';
      return undefined;
    }
    tokens.push(next);
    if (sampled && plan.stopAtEos && plan.stopIds.includes(next)) {
      reason = 'eos';
      return undefined;
    }
    const piece = plan.text.push(current, next);
    current = next;
    return piece;
  };

  /** Runs `rows` tokens from `pos` (beside other sequences), and picks the next token when `sample` is set. */
  const advance = async (rows: number[], sample: boolean): Promise<{ id: number; logits?: Float32Array } | undefined> => {
    const r = await runner.advance({ slot: plan.slot, pos, tokens: rows, argmax: sample && deviceArgmax, logits: sample && (plan.withLogits || !deviceArgmax) });
    pos += rows.length;
    if (!sample) return undefined;
    const shown = r.logits && plan.withLogits ? r.logits.slice() : undefined;
    let id: number;
    if (r.id === undefined) id = sampler.sample(r.logits!, tokens);
    else {
      id = r.id;
      // The device argmax says -1 when the logits hold NaN or Inf (the host sampler throws itself).
      if (id === -1) {
        checkFinite(r.logits!);
        throw new BackendError('the device argmax reported non-finite logits that read back finite');
      }
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

  /** Hands a token to the consumer; the runner does not wait for this sequence while it is suspended. */
  const handOut = function* (t: GeneratedToken): Generator<GeneratedToken> {
    runner.leave();
    try {
      yield t;
    } finally {
      runner.enter();
    }
  };

  runner.enter();
  try {
    // The fed tokens, in chunks.
    let fed = 0;
    while (fed < feed.length && reason === undefined) {
      if (plan.signal?.aborted) reason = 'aborted';
      else if (pos >= plan.endPos) reason = plan.endReason;
      if (reason) break;
      const rows = Math.min(PROMPT_CHUNK, feed.length - fed, plan.endPos - pos);
      const last = fed + rows === feed.length;
      const sampled = await advance(feed.slice(fed, fed + rows), last);
      // Each position's successor: the next fed token, or a sample after the last one.
      for (let j = fed + 1; j <= fed + rows && j < feed.length && reason === undefined; j++) {
        const piece = accept(feed[j], false);
        if (piece !== undefined && plan.echo) {
          text += piece;
          yield* handOut({ id: feed[j], text: piece, prompt: true });
        }
      }
      fed += rows;
      if (sampled && reason === undefined) for (const t of emitSampled(sampled)) yield* handOut(t);
    }
    if (fed < feed.length && reason === undefined) reason = plan.endReason;

    // One position at a time from here on.
    while (reason === undefined) {
      if (plan.signal?.aborted) reason = 'aborted';
      else if (pos >= plan.endPos) reason = plan.endReason;
      if (reason) break;
      const sampled = (await advance([current], true))!;
      for (const t of emitSampled(sampled)) yield* handOut(t);
    }
    const rest = plan.text.flush();
    if (rest) {
      text += rest;
      yield* handOut({ id: current, text: rest, prompt: false });
    }
  } finally {
    runner.leave();
    const tEnd = performance.now();
    reason ??= result.interruptedBy ?? 'aborted';
    plan.onEnd(pos, tokens[tokens.length - 1], reason, tokens.slice(0, pos - plan.startPos));
    const promptCount = Math.min(feed.length, pos - plan.startPos);
    const promptMs = (tFirst || tEnd) - t0;
    const generateMs = tFirst ? tEnd - tFirst : 0;
    result.value = {
      reason,
      tokens,
      position: plan.startPos,
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
