/**
 * A session: one sequence on a shared model. It owns a KV slot and a position
 * in it; its generations and chat turns run one at a time, in order (see
 * scheduler.ts), while other sessions' generations run beside it in the same
 * batched steps (see batch.ts).
 */
import { ArgumentError, BackendError } from '@rama/backend';
import type { ModelConfig } from '@rama/checkpoint';
import { Sampler, checkSamplerOptions, type SamplerOptions } from '@rama/sampler';
import { TextStream, type Tokenizer } from '@rama/tokenizer';
import type { BatchRunner } from './batch.js';
import { Generation, runLoop, type GeneratedToken, type LoopPlan, type ResultHolder } from './generation.js';
import { checkBoolean, checkInteger, checkKnown, checkSignal, checkString } from './options.js';
import { TurnScheduler, type Turn } from './scheduler.js';

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
}

export interface ChatOptions extends SamplerOptions {
  /** System prompt for the conversation's first turn. */
  system?: string;
  /** Most tokens in this reply (default: until EOS or the end of the context). */
  maxTokens?: number;
  logits?: boolean;
  signal?: AbortSignal;
}

const SAMPLER_OPTIONS = ['temperature', 'topp', 'topk', 'minp', 'repetitionPenalty', 'repetitionWindow', 'seed'] as const;
const GENERATE_OPTIONS = [...SAMPLER_OPTIONS, 'steps', 'echo', 'stopAtEos', 'logits', 'signal'] as const;
const CHAT_OPTIONS = [...SAMPLER_OPTIONS, 'system', 'maxTokens', 'logits', 'signal'] as const;

/** What a session needs from its model. */
export interface SessionHost {
  readonly config: ModelConfig;
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
  /** Whether a conversation is open (the next chat turn continues it). */
  private chatOpen = false;
  /** The assistant's final EOS, fed at the start of the next turn (as llama2.c does). */
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
  generate(prompt: string, opts: GenerateOptions = {}): Generation {
    checkString('generate', 'prompt', prompt, false);
    checkKnown('generate', opts, GENERATE_OPTIONS);
    checkInteger('generate', 'steps', opts.steps, 0);
    checkBoolean('generate', 'echo', opts.echo);
    checkBoolean('generate', 'stopAtEos', opts.stopAtEos);
    checkCommon('generate', opts);
    const context = this.host.contextLength;
    const steps = opts.steps ?? 256;
    const endPos = steps === 0 || steps > context ? context : steps;
    const feed = this.host.tokenizer.encode(prompt, { bos: true, eos: false });
    return this.run(() => {
      this.chatOpen = false;
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
   * One chat turn: the user's message in Llama 2's template ([INST] ... [/INST],
   * with <<SYS>> on the first turn), then the reply until EOS. The KV cache
   * carries over, so each turn only reads its own new tokens. Where the
   * conversation stands (first turn or not, the position) is read when the
   * turn runs, so turns queued together give what they give one by one.
   */
  chat(message: string, opts: ChatOptions = {}): Generation {
    checkString('chat', 'message', message, false);
    checkKnown('chat', opts, CHAT_OPTIONS);
    checkString('chat', 'system', opts.system);
    checkInteger('chat', 'maxTokens', opts.maxTokens, 1);
    checkCommon('chat', opts);
    return this.run(() => {
      const context = this.host.contextLength;
      const first = !this.chatOpen;
      if (first) this.cache = [];
      const rendered = first && opts.system
        ? `[INST] <<SYS>>\n${opts.system}\n<</SYS>>\n\n${message} [/INST]`
        : `[INST] ${message} [/INST]`;
      const startPos = this.cache.length;
      const feed = [...(first ? [] : this.chatPending), ...this.host.tokenizer.encode(rendered, { bos: true, eos: false })];
      const max = opts.maxTokens;
      const limit = max === undefined ? context : Math.min(context, startPos + feed.length - 1 + max);
      this.chatOpen = true;
      return {
        ...this.common(opts),
        feed,
        startPos,
        endPos: limit,
        endReason: limit === context ? 'context' : 'steps',
        echo: false,
        stopAtEos: true,
        onEnd: (_pos, last, reason, entered) => {
          this.cache = [...this.cache, ...entered];
          // The reply's last token has not entered the model yet: it goes first next turn.
          this.chatPending = reason === 'eos' || reason === 'steps' ? [last] : [];
        },
      };
    });
  }

  /**
   * Empties the session: the next chat turn starts a new conversation. Ordered
   * with the turns: turns already started finish in the old conversation.
   */
  reset(): void {
    this.scheduler.enqueue(() => {
      this.chatOpen = false;
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

  private common(opts: SamplerOptions & { logits?: boolean; signal?: AbortSignal }): Pick<LoopPlan, 'sampler' | 'text' | 'signal' | 'withLogits' | 'slot'> {
    return {
      sampler: new Sampler(this.host.config.vocabSize, opts),
      text: new TextStream(this.host.tokenizer),
      signal: opts.signal,
      withLogits: opts.logits ?? false,
      slot: this.slot,
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
