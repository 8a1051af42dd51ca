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
import { checkBoolean, checkInteger, checkKnown, checkSignal, checkString } from './options.js';
import { TurnScheduler, type Turn } from './scheduler.js';
import type { ModelSpec } from './spec.js';

export interface GenerateOptions extends SamplerOptions {
  /** llama2.c's -n: positions to run, prompt included; 0 = the whole context. Default 256. */
  steps?: number;
  /** Yield the prompt's tokens as they are read, as llama2.c prints them (default true). */
  echo?: boolean;
  /** Stop when EOS is sampled (default false: llama2.c prints it and goes on). */
  stopAtEos?: boolean;
  /** Attach each sampled token's logits. */
  logits?: boolean;
  signal?: AbortSignal;
  /**
   * A prompt longer than the context is an ArgumentError, unless this is true:
   * then BOS and the prompt's last tokens are kept, leaving a quarter of the
   * context for the reply.
   */
  truncate?: boolean;
}

export interface ChatOptions extends SamplerOptions {
  /** System prompt for the conversation's first turn. */
  system?: string;
  /** Most tokens in this reply (default: until EOS or the end of the context). */
  maxTokens?: number;
  logits?: boolean;
  signal?: AbortSignal;
  /**
   * When the conversation would not fit in the context (with room for a
   * reply), keep the system prompt and drop the oldest turns, re-reading what
   * is kept from position 0 (default true). False: the turn stops with reason
   * `context` when the context is full.
   */
  contextShift?: boolean;
}

const SAMPLER_OPTIONS = ['temperature', 'topp', 'topk', 'minp', 'repetitionPenalty', 'repetitionWindow', 'seed'] as const;
const GENERATE_OPTIONS = [...SAMPLER_OPTIONS, 'steps', 'echo', 'stopAtEos', 'logits', 'signal', 'truncate'] as const;
const CHAT_OPTIONS = [...SAMPLER_OPTIONS, 'system', 'maxTokens', 'logits', 'signal', 'contextShift'] as const;

/** One finished chat turn, as the session keeps it for a context shift. */
interface ChatTurn {
  message: string;
  /** The reply's tokens that entered the cache or will at the next turn (a final EOS). */
  reply: number[];
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
   * sampled tokens until `steps` positions ran or BOS is sampled. Starts a new
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
    const context = this.host.contextLength;
    const steps = opts.steps ?? 256;
    const endPos = steps === 0 || steps > context ? context : steps;
    let feed = typeof prompt === 'string' ? this.host.tokenizer.encode(prompt, { bos: true, eos: false }) : [...prompt];
    if (feed.length > context) {
      if (!opts.truncate) {
        throw new ArgumentError(`generate: the prompt is ${feed.length} tokens, longer than the context (${context}); pass truncate: true to keep its end`);
      }
      feed = [feed[0], ...feed.slice(feed.length - (context - 1 - Math.floor(context / 4)))];
    }
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
   */
  chat(message: string, opts: ChatOptions = {}): Generation {
    checkString('chat', 'message', message, false);
    checkKnown('chat', opts, CHAT_OPTIONS);
    checkString('chat', 'system', opts.system);
    checkInteger('chat', 'maxTokens', opts.maxTokens, 1);
    checkBoolean('chat', 'contextShift', opts.contextShift);
    checkCommon('chat', opts);
    return this.run(() => {
      const context = this.host.contextLength;
      if (!this.conversation) {
        this.conversation = { system: opts.system, turns: [] };
        this.cache = [];
        this.chatPending = [];
      }
      const conv = this.conversation;
      let startPos = this.cache.length;
      let feed = [...this.chatPending, ...this.renderTurn(message, conv.turns.length === 0 ? conv.system : undefined)];
      // Room kept for the reply when deciding to shift.
      const reserve = Math.max(1, Math.min(opts.maxTokens ?? Infinity, Math.floor(context / 4)));
      if ((opts.contextShift ?? true) && startPos + feed.length + reserve > context) {
        const kept = this.shift(conv, message, context - reserve);
        startPos = 0;
        feed = kept;
      }
      const max = opts.maxTokens;
      const limit = max === undefined ? context : Math.min(context, startPos + feed.length - 1 + max);
      const promptLength = feed.length;
      return {
        ...this.common(opts),
        feed,
        startPos,
        endPos: limit,
        endReason: limit === context ? 'context' : 'steps',
        echo: false,
        stopAtEos: true,
        onEnd: (_pos, last, reason, entered) => {
          this.cache = startPos === 0 ? [...entered] : [...this.cache, ...entered];
          // The reply's last token has not entered the model yet: it goes first next turn.
          this.chatPending = reason === 'eos' || reason === 'steps' ? [last] : [];
          conv.turns.push({ message, reply: [...entered.slice(promptLength), ...this.chatPending] });
        },
      };
    });
  }

  /** One user turn's tokens in the model's chat template. */
  private renderTurn(message: string, system: string | undefined): number[] {
    const { tokenizer, spec } = this.host;
    return tokenizer.encode(spec.chatTemplate.userTurn(message, system), { bos: spec.chatTemplate.bosPerTurn, eos: false });
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
      const tokens: number[] = [];
      kept.forEach((t, i) => tokens.push(...this.renderTurn(t.message, i === 0 ? conv.system : undefined), ...t.reply));
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

  private common(opts: SamplerOptions & { logits?: boolean; signal?: AbortSignal }): Pick<LoopPlan, 'sampler' | 'text' | 'signal' | 'withLogits' | 'slot' | 'bosId' | 'stopIds'> {
    return {
      sampler: new Sampler(this.host.spec.vocabSize, opts),
      text: new TextStream(this.host.tokenizer),
      signal: opts.signal,
      withLogits: opts.logits ?? false,
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

/** Checks what generate and chat share: logits, signal, and the sampler's options. */
function checkCommon(what: string, opts: GenerateOptions | ChatOptions): void {
  checkBoolean(what, 'logits', opts.logits);
  checkSignal(what, opts.signal);
  try {
    checkSamplerOptions(opts);
  } catch (e) {
    throw e instanceof ArgumentError ? new ArgumentError(`${what}: ${e.message}`) : e;
  }
}
