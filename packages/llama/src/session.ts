/**
 * A session: one sequence on a shared model. It owns a KV slot and a position
 * in it; its generations and chat turns run one at a time, in order (see
 * scheduler.ts), while other sessions' generations run beside it in the same
 * batched steps (see batch.ts).
 */
import { ArgumentError, BackendError } from '@rama/core';
import { Sampler, checkSamplerOptions, type SamplerOptions } from '@rama/sampler';
import { TextStream, type Tokenizer } from '@rama/tokenizer';
import type { BatchRunner } from './batch.js';
import { Generation, runLoop, type GeneratedToken, type LoopPlan, type ResultHolder } from './generation.js';
import { checkInspectOptions, type InspectOptions } from './inspect.js';
import { checkBoolean, checkInteger, checkKnown, checkSignal, checkString, checkStringList, describe } from './options.js';
import { TurnScheduler, type Turn } from './scheduler.js';
import type { ModelSpec } from './spec.js';
import type { JinjaChatTemplate, TemplateMessage } from './template.js';

/** What generate and chat share besides sampling. */
export interface OutputOptions extends SamplerOptions {
  /**
   * Most tokens to sample (the prompt not counted). For generate, whichever
   * of this and `steps` is reached first ends the generation, with reason
   * `steps` (or `context` when that limit is the context's end).
   */
  maxTokens?: number;
  /**
   * Strings that end the generation, with reason `stop`, when they appear in
   * the sampled text, also across token boundaries. A stop string is never
   * shown: text that could be the start of one is held back (yielded tokens
   * carry '' meanwhile) and released once it cannot. Its tokens were
   * generated, so they stay in `result().tokens` and in the session's cache.
   */
  stop?: string | readonly string[];
  /** Attach each token's logits. */
  logits?: boolean;
  /** Attach each sampled token's `logprob` (log-softmax of the logits at temperature 1). Reads the logits back even when decoding greedily. */
  logprobs?: boolean;
  /** With `logprobs: true`: attach the k (at most 20) likeliest tokens at each position as `topLogprobs`. */
  topLogprobs?: number;
  /** Aborting it ends the generation; `result().reason` is then 'aborted'. */
  signal?: AbortSignal;
}

export interface GenerateOptions extends OutputOptions {
  /** llama2.c's -n: positions to run, prompt included; 0 = the whole context. Default 256. */
  steps?: number;
  /** Yield the prompt's tokens as they are read, as llama2.c prints them (default true). */
  echo?: boolean;
  /** Stop when EOS is sampled (default false: llama2.c prints it and goes on). */
  stopAtEos?: boolean;
  /**
   * A prompt longer than the context is an ArgumentError, unless this is true:
   * then BOS and the prompt's last tokens are kept, leaving a quarter of the
   * context for the reply.
   */
  truncate?: boolean;
  /**
   * Attach to each sampled token what the model computed for it (its top-k
   * candidates, one head's attention weights, the residual stream's norms);
   * see inspect.ts. Costs nothing when left out.
   */
  inspect?: InspectOptions;
}

export interface ChatOptions extends OutputOptions {
  /** System prompt for the conversation's first turn (or give a `system` message). */
  system?: string;
  /**
   * When the conversation would not fit in the context (with room for a
   * reply), keep the system prompt and drop the oldest turns, re-reading what
   * is kept from position 0 (default true). False: the turn stops with reason
   * `context` when the context is full.
   */
  contextShift?: boolean;
}

/** One message of a whole conversation given to chat, as in OpenAI's chat API. */
export interface ChatMessage {
  /** Who says it. */
  role: 'system' | 'user' | 'assistant';
  /** What they say. */
  content: string;
}

const SAMPLER_OPTIONS = ['temperature', 'topp', 'topk', 'minp', 'repetitionPenalty', 'repetitionWindow', 'seed'] as const;
const OUTPUT_OPTIONS = [...SAMPLER_OPTIONS, 'maxTokens', 'stop', 'logits', 'logprobs', 'topLogprobs', 'signal'] as const;
const GENERATE_OPTIONS = [...OUTPUT_OPTIONS, 'steps', 'echo', 'stopAtEos', 'truncate', 'inspect'] as const;
const CHAT_OPTIONS = [...OUTPUT_OPTIONS, 'system', 'contextShift'] as const;

/** Most `topLogprobs` (OpenAI's limit). */
export const MAX_TOP_LOGPROBS = 20;

/** One finished chat turn, as the session keeps it for a context shift. */
interface ChatTurn {
  message: string;
  /** The reply's tokens that entered the cache or will at the next turn (a final EOS). */
  reply: number[];
  /** With a Jinja template: the reply's text, as the template renders it next turn. */
  replyText?: string;
}

/** An open conversation: its system prompt and its turns since the last shift. */
interface Conversation {
  system: string | undefined;
  turns: ChatTurn[];
}

/** What a session needs from its model. */
export interface SessionHost {
  readonly spec: ModelSpec;
  readonly tokenizer: Tokenizer;
  readonly contextLength: number;
  readonly runner: BatchRunner;
  /** Throws when the model was disposed. */
  checkLive(): void;
  /** The session is done with its slot. */
  releaseSlot(slot: number): void;
}

/**
 * One sequence with its own KV slot: a conversation or a completion. Sessions of one Llama share its
 * weights, and those generating at the same time are decoded in the same steps. Get one with `Llama.session()`.
 */
export class Session {
  /** The ids in this session's KV cache, position by position. */
  private cache: number[] = [];
  /** The open conversation (the next chat turn continues it), if any. */
  private conversation: Conversation | undefined;
  /** The reply's last token, not in the cache yet: fed first next turn (llama2.c feeds the EOS so). */
  private chatPending: number[] = [];
  private disposed = false;
  private readonly scheduler: TurnScheduler;

  constructor(
    private readonly host: SessionHost,
    /** The KV slot this session reads and writes. */
    readonly slot: number,
    preemptAfterMs: number,
  ) {
    this.scheduler = new TurnScheduler(preemptAfterMs);
  }

  /** The token ids in this session's KV cache (what the model has read so far). */
  get tokens(): readonly number[] {
    return this.cache;
  }

  /**
   * Completes `prompt` as llama2.c's generate mode does: BOS, the prompt, then
   * sampled tokens until `steps` positions ran or BOS is sampled (or
   * `maxTokens`, a `stop` string, EOS with `stopAtEos`). Starts a new
   * sequence in this session (and ends any chat).
   */
  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): Generation {
    if (typeof prompt !== 'string') checkTokenIds(prompt, this.host.spec.vocabSize);
    checkKnown('generate', opts, GENERATE_OPTIONS);
    checkInteger('generate', 'steps', opts.steps, 0);
    checkBoolean('generate', 'echo', opts.echo);
    checkBoolean('generate', 'stopAtEos', opts.stopAtEos);
    checkBoolean('generate', 'truncate', opts.truncate);
    checkCommon('generate', opts);
    const inspect = checkInspectOptions('generate', opts.inspect, this.host.spec, this.host.tokenizer);
    const context = this.host.contextLength;
    const steps = opts.steps ?? 256;
    let endPos = steps === 0 || steps > context ? context : steps;
    let feed = typeof prompt === 'string' ? this.host.tokenizer.encode(prompt, { bos: this.host.tokenizer.addBos, eos: false }) : [...prompt];
    if (feed.length > context) {
      if (!opts.truncate) {
        throw new ArgumentError(`generate: the prompt is ${feed.length} tokens, longer than the context (${context}); pass truncate: true to keep its end`);
      }
      feed = [feed[0], ...feed.slice(feed.length - (context - 1 - Math.floor(context / 4)))];
    }
    // The last fed position samples the first token; each later position samples one more.
    if (opts.maxTokens !== undefined) endPos = Math.min(endPos, feed.length - 1 + opts.maxTokens);
    return this.run(() => {
      this.conversation = undefined;
      this.chatPending = [];
      return {
        ...this.common(opts),
        feed,
        startPos: 0,
        endPos,
        endReason: endPos === context ? 'context' : 'steps',
        echo: opts.echo ?? true,
        stopAtEos: opts.stopAtEos ?? false,
        inspect,
        onEnd: (_pos, _last, _reason, entered) => {
          this.cache = [...entered];
        },
      };
    });
  }

  /**
   * One chat turn: the user's message in the model's chat template (for
   * llama2.c models Llama 2's [INST] ... [/INST], with <<SYS>> on the first
   * turn), then the reply until a stop id (EOS). The KV cache
   * carries over, so each turn only reads its own new tokens. Where the
   * conversation stands (first turn or not, the position) is read when the
   * turn runs, so turns queued together give what they give one by one.
   *
   * `messages` may instead be a whole conversation, OpenAI-style: an optional
   * system message, then user and assistant messages in turn, ending with the
   * user's. It replaces the session's conversation (later string turns
   * continue it); earlier assistant messages read as replies the model gave
   * (llama2.c: `[INST] u1 [/INST] a1</s><s>[INST] u2 [/INST]`). Whatever
   * leading part of it the session's KV cache already holds is not read again,
   * so resending a growing conversation costs only its new tokens.
   *
   * A model with its own Jinja chat template (spec.jinjaTemplate) renders the
   * whole conversation with it each turn instead, and reads only the tokens
   * past what its cache holds (see jinjaTurn).
   */
  chat(messages: string | readonly ChatMessage[], opts: ChatOptions = {}): Generation {
    if (typeof messages !== 'string' && !Array.isArray(messages)) {
      throw new ArgumentError(`chat: message must be a string or an array of { role, content } messages, got ${describe(messages)}`);
    }
    checkKnown('chat', opts, CHAT_OPTIONS);
    checkString('chat', 'system', opts.system);
    checkBoolean('chat', 'contextShift', opts.contextShift);
    checkCommon('chat', opts);
    const whole = typeof messages === 'string' ? undefined : checkMessages(messages, opts.system);
    const jinja = this.host.spec.jinjaTemplate;
    if (jinja) return this.run(() => this.jinjaTurn(jinja, whole ?? (messages as string), opts));
    return this.run(() => {
      const context = this.host.contextLength;
      let conv: Conversation;
      let message: string;
      let startPos: number;
      let feed: number[];
      if (whole) {
        conv = { system: whole.system, turns: whole.history.map(([u, a]) => ({ message: u, reply: this.renderReply(a) })) };
        message = whole.message;
        this.conversation = conv;
        this.chatPending = [];
        const all = [...this.renderConversation(conv), ...this.renderTurn(message, conv.turns.length === 0 ? conv.system : undefined)];
        startPos = this.cachedPrefix(all);
        feed = all.slice(startPos);
      } else {
        message = messages as string;
        if (!this.conversation) {
          this.conversation = { system: opts.system, turns: [] };
          this.cache = [];
          this.chatPending = [];
        }
        conv = this.conversation;
        startPos = this.cache.length;
        feed = [...this.chatPending, ...this.renderTurn(message, conv.turns.length === 0 ? conv.system : undefined)];
      }
      const reserve = replyReserve(opts, context);
      if ((opts.contextShift ?? true) && startPos + feed.length + reserve > context) {
        const kept = this.shift(conv, message, context - reserve);
        startPos = 0;
        feed = kept;
      }
      const promptLength = feed.length;
      return this.replyPlan(opts, context, feed, startPos, (last, reason, entered) => {
        this.cache = [...this.cache.slice(0, startPos), ...entered];
        // The reply's last token has not entered the model yet: it goes first next turn. After a stop
        // string too: the reply stays as generated, the stop string's tokens included.
        this.chatPending = reason === 'eos' || reason === 'steps' || reason === 'stop' ? [last] : [];
        conv.turns.push({ message, reply: [...entered.slice(promptLength), ...this.chatPending] });
      });
    });
  }

  /**
   * A chat turn with the model's Jinja template: the whole conversation is
   * rendered and tokenized, and only what follows the longest prefix the KV
   * cache already holds is read (a template that rewrites earlier turns
   * re-reads from the first token that differs). The reply joins the
   * conversation as its text, rendered by the template next turn.
   */
  private jinjaTurn(template: JinjaChatTemplate, input: string | ReturnType<typeof checkMessages>, opts: ChatOptions): LoopPlan {
    const { tokenizer, spec, contextLength: context } = this.host;
    let conv: Conversation;
    let message: string;
    if (typeof input === 'string') {
      conv = this.conversation ?? { system: opts.system, turns: [] };
      message = input;
    } else {
      conv = { system: input.system, turns: input.history.map(([u, a]) => ({ message: u, reply: [], replyText: a })) };
      message = input.message;
    }
    const tokensOf = (turns: readonly ChatTurn[]): number[] => {
      const msgs: TemplateMessage[] = conv.system !== undefined ? [{ role: 'system', content: conv.system }] : [];
      for (const t of turns) msgs.push({ role: 'user', content: t.message }, { role: 'assistant', content: t.replyText ?? '' });
      msgs.push({ role: 'user', content: message });
      return template.encode(template.render(msgs), tokenizer, tokenizer.addBos ? spec.bosId : undefined);
    };
    let all = tokensOf(conv.turns);
    let kept = conv.turns;
    const reserve = replyReserve(opts, context);
    if ((opts.contextShift ?? true) && all.length + reserve > context) {
      // Drop the oldest turns (the system prompt stays) until the conversation and room for a reply fit.
      let drop = 0;
      while (all.length + reserve > context && drop < conv.turns.length) all = tokensOf(conv.turns.slice(++drop));
      kept = conv.turns.slice(drop);
    }
    if (all.length >= context) {
      throw new ArgumentError(`chat: the conversation is ${all.length} tokens in the model's chat template, too long for the context (${context})`);
    }
    // Only a conversation that renders and fits replaces the session's.
    conv.turns = kept;
    this.conversation = conv;
    this.chatPending = [];
    const startPos = this.cachedPrefix(all);
    const feed = all.slice(startPos);
    return this.replyPlan(opts, context, feed, startPos, (last, reason, entered) => {
      this.cache = [...this.cache.slice(0, startPos), ...entered];
      // The last sampled token is part of the reply unless it ended the turn (EOS, end of turn).
      const reply = [...entered.slice(feed.length), ...(reason === 'steps' || reason === 'stop' ? [last] : [])];
      conv.turns.push({ message, reply, replyText: tokenizer.decode([all[all.length - 1], ...reply]) });
    });
  }

  /** Positions whose KV entries already hold these very tokens (kept); at least one token is left to feed, to sample from. */
  private cachedPrefix(all: readonly number[]): number {
    let n = 0;
    while (n < this.cache.length && n < all.length - 1 && this.cache[n] === all[n]) n++;
    return n;
  }

  /**
   * A chat reply's plan: `feed` read from `startPos`, then sampled tokens
   * until EOS, a stop, `maxTokens` or the end of the context.
   */
  private replyPlan(
    opts: ChatOptions, context: number, feed: number[], startPos: number,
    onEnd: (last: number, reason: Parameters<LoopPlan['onEnd']>[2], entered: readonly number[]) => void,
  ): LoopPlan {
    const max = opts.maxTokens;
    const limit = max === undefined ? context : Math.min(context, startPos + feed.length - 1 + max);
    return {
      ...this.common(opts),
      feed,
      startPos,
      endPos: limit,
      endReason: limit === context ? 'context' : 'steps',
      echo: false,
      stopAtEos: true,
      onEnd: (_pos, last, reason, entered) => onEnd(last, reason, entered),
    };
  }

  /** One user turn's tokens in the model's chat template. */
  private renderTurn(message: string, system: string | undefined): number[] {
    const { tokenizer, spec } = this.host;
    return tokenizer.encode(spec.chatTemplate.userTurn(message, system), { bos: spec.chatTemplate.bosPerTurn, eos: false });
  }

  /** An earlier assistant message's tokens, as a reply the model gave (with its EOS). */
  private renderReply(content: string): number[] {
    const { tokenizer, spec } = this.host;
    return tokenizer.encode(spec.chatTemplate.assistantTurn(content), { bos: false, eos: spec.chatTemplate.eosPerReply });
  }

  /** A conversation's finished turns, as the session reads them: each user turn, then its reply. */
  private renderConversation(conv: Conversation): number[] {
    const tokens: number[] = [];
    conv.turns.forEach((t, i) => tokens.push(...this.renderTurn(t.message, i === 0 ? conv.system : undefined), ...t.reply));
    return tokens;
  }

  /**
   * A context shift: drops the oldest turns until the system prompt, the
   * turns kept and this message fit in `budget` tokens; returns the tokens to
   * read from position 0 (the kept conversation, re-rendered with the system
   * prompt on its first turn, then this message).
   */
  private shift(conv: Conversation, message: string, budget: number): number[] {
    for (let drop = 1; drop <= conv.turns.length; drop++) {
      const kept = conv.turns.slice(drop);
      const tokens = this.renderConversation({ system: conv.system, turns: kept });
      tokens.push(...this.renderTurn(message, kept.length === 0 ? conv.system : undefined));
      if (tokens.length <= budget || kept.length === 0) {
        if (tokens.length > this.host.contextLength) {
          throw new ArgumentError(`chat: the message is ${tokens.length} tokens with the system prompt, longer than the context (${this.host.contextLength})`);
        }
        conv.turns = kept;
        this.chatPending = [];
        return tokens;
      }
    }
    // No earlier turns: this message (with the system prompt) is the whole conversation.
    const tokens = this.renderTurn(message, conv.system);
    if (tokens.length > this.host.contextLength) {
      throw new ArgumentError(`chat: the message is ${tokens.length} tokens with the system prompt, longer than the context (${this.host.contextLength})`);
    }
    conv.turns = [];
    this.chatPending = [];
    return tokens;
  }

  /**
   * Empties the session: the next chat turn starts a new conversation. Ordered
   * with the turns: turns already started finish in the old conversation.
   */
  reset(): void {
    this.scheduler.enqueue(() => {
      this.conversation = undefined;
      this.chatPending = [];
      this.cache = [];
    });
  }

  /** Gives the session's KV slot back to the model once its queued turns are done; it cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.scheduler.enqueue(() => this.host.releaseSlot(this.slot));
  }

  private common(opts: OutputOptions): Pick<LoopPlan, 'sampler' | 'text' | 'signal' | 'withLogits' | 'stop' | 'logprobs' | 'slot' | 'bosId' | 'stopIds'> {
    return {
      sampler: new Sampler(this.host.spec.vocabSize, opts),
      text: new TextStream(this.host.tokenizer),
      signal: opts.signal,
      withLogits: opts.logits ?? false,
      stop: typeof opts.stop === 'string' ? [opts.stop] : [...(opts.stop ?? [])],
      logprobs: opts.logprobs ? { top: opts.topLogprobs ?? 0, tokenizer: this.host.tokenizer } : undefined,
      slot: this.slot,
      bosId: this.host.spec.bosId,
      stopIds: this.host.spec.stopIds,
    };
  }

  /**
   * Runs a generation when the session's scheduler grants it (one at a time;
   * see scheduler.ts for the order and for preemption). `plan` is called then,
   * so everything the run depends on is decided when it runs.
   */
  private run(plan: () => LoopPlan): Generation {
    if (this.disposed) throw new BackendError('this session was disposed');
    const host = this.host;
    const scheduler = this.scheduler;
    return new Generation(async function* (holder: ResultHolder, settle: () => void) {
      let inner: AsyncGenerator<GeneratedToken> | undefined;
      let preempted = false;
      let granted!: () => void;
      const ready = new Promise<void>((r) => (granted = r));
      const turn: Turn = {
        grant: () => granted(),
        // Only called while suspended at the yield below, where `inner` is suspended too:
        // returning it runs its cleanup, which settles the result and the session's state now.
        preempt: async () => {
          preempted = true;
          holder.interruptedBy = 'preempted';
          await inner?.return(undefined);
          settle();
        },
      };
      scheduler.acquire(turn);
      try {
        await ready;
        host.checkLive();
        inner = runLoop(host.runner, plan(), holder);
        while (true) {
          const r = await inner.next();
          if (r.done) break;
          scheduler.suspend(turn);
          yield r.value;
          if (preempted) return;
          scheduler.resume(turn);
        }
      } finally {
        if (!preempted) {
          try {
            await inner?.return(undefined);
          } finally {
            scheduler.release(turn);
          }
        }
      }
    });
  }
}

function checkTokenIds(ids: unknown, vocabSize: number): void {
  if (!Array.isArray(ids) || ids.length === 0) throw new ArgumentError('generate: prompt must be a string or a non-empty array of token ids');
  for (const id of ids) {
    if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) throw new ArgumentError(`generate: token id ${String(id)} outside the vocabulary (0..${vocabSize - 1})`);
  }
}

/** Checks what generate and chat share: maxTokens, stop, logits, logprobs, signal, and the sampler's options. */
function checkCommon(what: string, opts: OutputOptions): void {
  checkInteger(what, 'maxTokens', opts.maxTokens, 1);
  checkStringList(what, 'stop', opts.stop);
  checkBoolean(what, 'logits', opts.logits);
  checkBoolean(what, 'logprobs', opts.logprobs);
  checkInteger(what, 'topLogprobs', opts.topLogprobs, 0, MAX_TOP_LOGPROBS);
  if (opts.topLogprobs && !opts.logprobs) throw new ArgumentError(`${what}: topLogprobs needs logprobs: true`);
  checkSignal(what, opts.signal);
  try {
    checkSamplerOptions(opts);
  } catch (e) {
    throw e instanceof ArgumentError ? new ArgumentError(`${what}: ${e.message}`) : e;
  }
}

/** A whole conversation given to chat, checked: its system prompt, its finished (user, assistant) turns, and the user's last message. */
function checkMessages(
  messages: readonly unknown[],
  optsSystem: string | undefined,
): { system: string | undefined; history: [string, string][]; message: string } {
  if (messages.length === 0) throw new ArgumentError('chat: messages must not be empty');
  messages.forEach((m, i) => {
    const r = m as ChatMessage | null;
    const ok =
      r !== null && typeof r === 'object' && !Array.isArray(r) && ['system', 'user', 'assistant'].includes(r.role) && typeof r.content === 'string' &&
      Object.keys(r).every((k) => k === 'role' || k === 'content');
    if (!ok) throw new ArgumentError(`chat: messages[${i}] must be { role: 'system' | 'user' | 'assistant', content: string }, got ${describe(m)}`);
  });
  const list = messages as readonly ChatMessage[];
  let system = optsSystem;
  let first = 0;
  if (list[0].role === 'system') {
    if (optsSystem !== undefined) throw new ArgumentError('chat: give the system prompt as the `system` option or as a system message, not both');
    system = list[0].content;
    first = 1;
  }
  // Llama 2's template has turns, not free-form messages: user and assistant alternate, the user first and last.
  for (let i = first; i < list.length; i++) {
    const want = (i - first) % 2 === 0 ? 'user' : 'assistant';
    if (list[i].role !== want) {
      const where = list[i].role === 'system' ? 'only the first message may be a system message' : 'user and assistant messages alternate, starting with the user';
      throw new ArgumentError(`chat: messages[${i}].role is "${list[i].role}", expected "${want}" (${where})`);
    }
  }
  if (list.length === first || list[list.length - 1].role !== 'user') throw new ArgumentError('chat: the last message must be the user\'s');
  const history: [string, string][] = [];
  for (let i = first; i + 1 < list.length; i += 2) history.push([list[i].content, list[i + 1].content]);
  return { system, history, message: list[list.length - 1].content };
}

/** Room kept for a chat reply when deciding to shift the context: maxTokens, at most a quarter of it, at least 1. */
function replyReserve(opts: ChatOptions, context: number): number {
  return Math.max(1, Math.min(opts.maxTokens ?? Infinity, Math.floor(context / 4)));
}
