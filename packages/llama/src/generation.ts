/**
 * The token loop shared by generate and chat: feeds tokens through the model
 * in batches, samples, decodes text as it completes, and stops for a reason.
 * The stopping rules are llama2.c's: a sampled BOS ends the sequence (fed
 * tokens never do: each chat turn starts with one), and nothing runs at or
 * past the position limit.
 */
import { AbortError, BackendError } from '@rama/core';
import { checkFinite, type Sampler } from '@rama/sampler';
import type { TextStream, Tokenizer } from '@rama/tokenizer';
import type { BatchRunner } from './batch.js';
import { largest, SequenceInspector, type InspectPlan, type TokenInspection } from './inspect.js';

/**
 * Why a generation ended: its position limit (`steps`, or `maxTokens`) or the
 * context's end (`context`), a sampled BOS or EOS, one of its `stop` strings
 * in the generated text (`stop`), its AbortSignal or consumer (`aborted`), or
 * another generation of the same model taking over while it sat suspended
 * (`preempted`, see scheduler.ts).
 */
export type StopReason = 'steps' | 'context' | 'bos' | 'eos' | 'stop' | 'aborted' | 'preempted';

/** A candidate token and its log-probability (see GeneratedToken.topLogprobs). */
export interface TokenLogprob {
  /** The token's id. */
  id: number;
  /** The token's text after the previous token (a lone byte of a multi-byte character reads as U+FFFD). */
  text: string;
  /** Natural log of its probability under softmax(logits) at temperature 1. */
  logprob: number;
}

/** One token of a generation, as it is yielded. */
export interface GeneratedToken {
  /** The token's id. */
  id: number;
  /**
   * The text this token completed (may be '' while a multi-byte character is
   * still arriving, or while it could be the start of a `stop` string).
   */
  text: string;
  /** True for prompt tokens echoed as they are read (generate with `echo`). */
  prompt: boolean;
  /** The logits the token was sampled from, when asked for with `logits: true`. */
  logits?: Float32Array;
  /**
   * With `logprobs: true`: the natural log of this token's probability under
   * softmax(logits) at temperature 1 (the model's distribution, before
   * temperature, top-p or penalties, as OpenAI reports it).
   */
  logprob?: number;
  /** With `topLogprobs: k`: the k likeliest tokens at this position, likeliest first. */
  topLogprobs?: TokenLogprob[];
  /** With generate's `inspect`: what the model computed for this token (top-k candidates, attention weights, residual norms). */
  inspect?: TokenInspection;
}

/** Where a generation's time went. */
export interface GenerationTiming {
  /** Prompt processing up to the first sampled token. */
  promptMs: number;
  /** From the first sampled token to the end. */
  generateMs: number;
  /** From the start to the first sampled token, in ms. */
  timeToFirstTokenMs: number;
  /** Prompt tokens read per second. */
  promptTokensPerSecond: number;
  /** Sampled tokens after the first, per second of generateMs (llama2.c also excludes the first). */
  tokensPerSecond: number;
}

/** What a finished generation did (`Generation.result()`). */
export interface GenerationResult {
  /** Why it stopped. */
  reason: StopReason;
  /** Every id that entered the model or was produced: BOS, the prompt, then each sampled token. */
  tokens: number[];
  /** The position in the session's KV cache where tokens[0] entered (0 unless a chat turn continues a conversation). */
  position: number;
  /** All text yielded, joined. */
  text: string;
  /** Tokens read before the first sampled one (BOS and the prompt). */
  promptTokens: number;
  /** Tokens sampled. */
  generatedTokens: number;
  /** How long each part took. */
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
  /** Strings that end the generation when they appear in the sampled text (never shown); empty: none. */
  stop: readonly string[];
  /** Attach each sampled token's logprob, and the `topLogprobs` likeliest (0: none); undefined: neither. */
  logprobs?: { top: number; tokenizer: Tokenizer };
  /** What to inspect for each sampled token (generate's `inspect`); undefined: nothing, and no extra work. */
  inspect?: InspectPlan;
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
  const stop = plan.stop.length > 0 ? new StopMatcher(plan.stop) : undefined;
  const inspector = plan.inspect && new SequenceInspector(plan.inspect);
  const wantTopK = (plan.inspect?.topK ?? 0) > 0;
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
  const advance = async (rows: number[], sample: boolean): Promise<Sampled | undefined> => {
    // Logits come back only when something reads them: the host sampler, `logits`, `logprobs` or inspect's topK.
    const logits = sample && (plan.withLogits || plan.logprobs !== undefined || wantTopK || !deviceArgmax);
    const inspect = inspector?.request(pos, sample);
    const r = await runner.advance({ slot: plan.slot, pos, tokens: rows, argmax: sample && deviceArgmax, logits, inspect });
    pos += rows.length;
    if (!sample) return undefined;
    const shown = r.logits && plan.withLogits ? r.logits.slice() : undefined;
    // The sampler scales and softmaxes the logits in place: logprobs and the candidates read the model's own.
    const raw = plan.logprobs || wantTopK ? (shown ?? r.logits!.slice()) : undefined;
    const inspection = inspector?.token(pos - 1, raw, sampler, rows[rows.length - 1]);
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
    return { id, logits: shown, raw, inspection };
  };

  const emitSampled = function* (s: Sampled): Generator<GeneratedToken> {
    generated++;
    if (generated === 1) tFirst = performance.now();
    // Before accept: the candidates' text reads after the previous token.
    const probs = s.raw && plan.logprobs && logprobsOf(s.raw, s.id, plan.logprobs.top, plan.logprobs.tokenizer, current);
    let piece = accept(s.id, true);
    if (piece === undefined) return;
    if (stop) {
      const m = stop.push(piece);
      piece = m.text;
      if (m.found) reason = 'stop';
    }
    text += piece;
    yield { id: s.id, text: piece, prompt: false, logits: s.logits, ...probs, ...(s.inspection && { inspect: s.inspection }) };
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
    // Text held back for a stop string that never came is shown now, in one last item.
    let rest = plan.text.flush();
    if (stop) rest = stop.end(rest);
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

/** A sampled token, its logits when shown, and the model's logits when logprobs read them. */
interface Sampled {
  id: number;
  logits?: Float32Array;
  raw?: Float32Array;
  inspection?: TokenInspection;
}

const utf8 = new TextDecoder();

/**
 * The chosen token's logprob and the `top` likeliest candidates: log-softmax
 * of the model's logits at temperature 1, computed in f64. One pass for the
 * normalizer and one for the candidates (k <= 20).
 */
function logprobsOf(logits: Float32Array, id: number, top: number, tokenizer: Tokenizer, prev: number): Pick<GeneratedToken, 'logprob' | 'topLogprobs'> {
  const n = logits.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < n; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  if (top === 0) return { logprob: logits[id] - lse };
  const topLogprobs = largest(logits, top).map((c) => ({ id: c, text: utf8.decode(tokenizer.decodePiece(prev, c)), logprob: logits[c] - lse }));
  return { logprob: logits[id] - lse, topLogprobs };
}

/**
 * Finds stop strings in generated text that arrives piece by piece, across
 * token boundaries. Text is held back while its end could still be the start
 * of a stop string, and released as soon as it cannot; a stop string and
 * anything after it are never released.
 */
export class StopMatcher {
  /** Text not released yet: the longest tail of what came that begins some stop string. */
  private held = '';

  constructor(private readonly stops: readonly string[]) {}

  /** Adds `piece`; returns the text now safe to show, and whether a stop string was found (the text is what precedes it). */
  push(piece: string): { text: string; found: boolean } {
    const held = this.held + piece;
    const at = this.firstStop(held);
    if (at >= 0) {
      this.held = '';
      return { text: held.slice(0, at), found: true };
    }
    // Any stop string that begins in `held` and runs past its end begins within the longest tail that is a prefix of one.
    let keep = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, held.length); k > keep; k--) {
        if (held.endsWith(s.slice(0, k))) {
          keep = k;
          break;
        }
      }
    }
    this.held = held.slice(held.length - keep);
    return { text: held.slice(0, held.length - keep), found: false };
  }

  /** The generation ended for another reason: releases what is held (and `piece`), up to any stop string in it. */
  end(piece = ''): string {
    const held = this.held + piece;
    this.held = '';
    const at = this.firstStop(held);
    return at >= 0 ? held.slice(0, at) : held;
  }

  /** Where the earliest stop string in `text` begins, or -1. */
  private firstStop(text: string): number {
    let first = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    return first;
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

  /** Yields tokens as they are sampled; iterate once. Breaking out of the loop stops the generation. */
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
