/**
 * The Llama model: loads a llama2.c checkpoint and tokenizer onto a backend,
 * then generates text (llama2.c's generate mode) or chats (Llama 2's [INST]
 * template), continuing the KV cache across chat turns.
 */
import { ArgumentError, BackendError, type Backend, type Tensor } from '@rama/backend';
import { openCheckpoint, type CheckpointFormat, type ModelConfig } from '@rama/checkpoint';
import { chooseGroupSize } from '@rama/quant-q80';
import { Sampler, checkSamplerOptions, type SamplerOptions } from '@rama/sampler';
import { EOS_ID, TextStream, Tokenizer } from '@rama/tokenizer';
import { createBackend, type BackendChoice } from './backends.js';
import { Generation, runLoop, type GeneratedToken, type LoopPlan, type ResultHolder } from './generation.js';
import {
  checkBoolean, checkInteger, checkKnown, checkNumber, checkObject, checkSignal, checkString, describe,
} from './options.js';
import { TurnScheduler, type Turn } from './scheduler.js';
import { allocState, type RunState } from './state.js';
import { uploadWeights, type LlamaWeights } from './weights.js';

export type ModelSource = string | Blob | ArrayBuffer | Uint8Array;

export interface LoadOptions {
  /** A llama2.c checkpoint: a path (Node), a Blob/File, or its bytes. */
  model: ModelSource;
  /** A llama2.c tokenizer.bin, in the same forms. */
  tokenizer: ModelSource;
  /** "cpu" (default), "webgpu", "auto" (WebGPU when an adapter exists, else CPU), or a Backend instance. */
  backend?: BackendChoice;
  /** Quantize an fp32 checkpoint's matrices to Q8_0 at load (runq.c numerics). */
  q80?: boolean;
  /** CPU worker threads (default: every core). */
  threads?: number;
  /** Positions processed together while reading a prompt (default 32). */
  batchSize?: number;
  /** KV cache length; default and maximum: the model's seq_len. */
  contextLength?: number;
  /** Options passed to the WebGPU backend (a GPUDevice, a forced binding limit, ...). */
  webgpu?: Record<string, unknown>;
  /**
   * How long a running generation may sit suspended (its consumer not asking
   * for the next token) while another waits, before the waiting one preempts
   * it (default 250 ms; see scheduler.ts).
   */
  preemptAfterMs?: number;
  /**
   * Most milliseconds of synchronous work between event-loop turns during a
   * generation (default 10; `Infinity` never yields, for benchmarks).
   */
  yieldEveryMs?: number;
}

const LOAD_OPTIONS = ['model', 'tokenizer', 'backend', 'q80', 'threads', 'batchSize', 'contextLength', 'webgpu', 'preemptAfterMs', 'yieldEveryMs'] as const;
const SAMPLER_OPTIONS = ['temperature', 'topp', 'topk', 'minp', 'repetitionPenalty', 'repetitionWindow', 'seed'] as const;
const GENERATE_OPTIONS = [...SAMPLER_OPTIONS, 'steps', 'echo', 'stopAtEos', 'logits', 'signal'] as const;
const CHAT_OPTIONS = [...SAMPLER_OPTIONS, 'system', 'maxTokens', 'logits', 'signal'] as const;

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

export class Llama {
  /** Where the next chat turn continues; undefined when no conversation is open. */
  private chatPos: number | undefined;
  /** The assistant's final EOS, fed at the start of the next turn (as llama2.c does). */
  private chatPending: number[] = [];
  private disposed = false;

  private constructor(
    readonly config: ModelConfig,
    readonly format: CheckpointFormat,
    readonly tokenizer: Tokenizer,
    readonly backend: Backend,
    private readonly ownsBackend: boolean,
    private readonly weights: LlamaWeights,
    private readonly state: RunState,
    private readonly tensors: Tensor[],
    /** KV cache length. */
    readonly contextLength: number,
    readonly batchSize: number,
    /** Whether matrices run as Q8_0 (a v2 file or q80: true). */
    readonly quantized: boolean,
    private readonly scheduler: TurnScheduler,
    private readonly yieldEveryMs: number,
  ) {}

  static async load(opts: LoadOptions): Promise<Llama> {
    checkLoadOptions(opts);
    const batchSize = opts.batchSize ?? 32;

    const ckpt = await openCheckpoint(opts.model);
    try {
      const config = ckpt.config;
      const tokenizer = await loadTokenizer(opts.tokenizer, config.vocabSize);
      const context = opts.contextLength ?? config.seqLen;
      checkInteger('Llama.load', `contextLength (the model's seq_len is ${config.seqLen})`, context, 1, config.seqLen);
      const quantizeGroupSize = opts.q80 && ckpt.format !== 'v2' ? chooseGroupSize([config.dim, config.hiddenDim]) : undefined;
      const { backend, owned } = await createBackend(opts.backend ?? 'cpu', { maxRows: batchSize, threads: opts.threads, webgpu: opts.webgpu });
      const tensors: Tensor[] = [];
      const track = (t: Tensor) => (tensors.push(t), t);
      try {
        // A backend the caller made may take fewer positions per step than asked for.
        const rows = Math.min(batchSize, backend.maxRows);
        const weights = await uploadWeights(backend, ckpt, { quantizeGroupSize }, track);
        const state = allocState(backend, config, rows, context, track);
        const quantized = ckpt.format === 'v2' || quantizeGroupSize !== undefined;
        const scheduler = new TurnScheduler(opts.preemptAfterMs ?? 250);
        return new Llama(config, ckpt.format, tokenizer, backend, owned, weights, state, tensors, context, rows, quantized, scheduler, opts.yieldEveryMs ?? 10);
      } catch (e) {
        if (owned) backend.dispose();
        else for (const t of tensors) backend.free(t);
        throw e;
      }
    } finally {
      await ckpt.close();
    }
  }

  /**
   * Completes `prompt` as llama2.c's generate mode does: BOS, the prompt, then
   * sampled tokens until `steps` positions ran or BOS is sampled. Starts a new
   * sequence (and ends any chat).
   */
  generate(prompt: string, opts: GenerateOptions = {}): Generation {
    checkString('generate', 'prompt', prompt, false);
    checkKnown('generate', opts, GENERATE_OPTIONS);
    checkInteger('generate', 'steps', opts.steps, 0);
    checkBoolean('generate', 'echo', opts.echo);
    checkBoolean('generate', 'stopAtEos', opts.stopAtEos);
    checkCommon('generate', opts);
    const steps = opts.steps ?? 256;
    const endPos = steps === 0 || steps > this.contextLength ? this.contextLength : steps;
    const feed = this.tokenizer.encode(prompt, { bos: true, eos: false });
    return this.run(() => {
      this.chatPos = undefined;
      return {
        ...this.common(opts),
        feed,
        startPos: 0,
        endPos,
        endReason: endPos === this.contextLength ? 'context' : 'steps',
        echo: opts.echo ?? true,
        stopAtEos: opts.stopAtEos ?? false,
        onEnd: () => {},
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
      const first = this.chatPos === undefined;
      const rendered = first && opts.system
        ? `[INST] <<SYS>>\n${opts.system}\n<</SYS>>\n\n${message} [/INST]`
        : `[INST] ${message} [/INST]`;
      const startPos = this.chatPos ?? 0;
      const feed = [...(first ? [] : this.chatPending), ...this.tokenizer.encode(rendered, { bos: true, eos: false })];
      const max = opts.maxTokens;
      const limit = max === undefined ? this.contextLength : Math.min(this.contextLength, startPos + feed.length - 1 + max);
      return {
        ...this.common(opts),
        feed,
        startPos,
        endPos: limit,
        endReason: limit === this.contextLength ? 'context' : 'steps',
        echo: false,
        stopAtEos: true,
        onEnd: (pos, last, reason) => {
          // The reply's last token has not entered the model yet: it goes first next turn.
          this.chatPos = reason === 'context' ? this.contextLength : pos;
          this.chatPending = reason === 'eos' || reason === 'steps' ? [last] : [];
        },
      };
    });
  }

  /**
   * Ends the conversation; the next chat turn starts a new one. Ordered with
   * the turns: turns already started finish in the old conversation.
   */
  resetChat(): void {
    this.scheduler.enqueue(() => {
      this.chatPos = undefined;
      this.chatPending = [];
    });
  }

  /** Frees the weights, the KV cache and (when Llama created it) the backend. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ownsBackend) this.backend.dispose();
    else for (const t of new Set(this.tensors)) this.backend.free(t);
  }

  private common(opts: SamplerOptions & { logits?: boolean; signal?: AbortSignal }): Pick<LoopPlan, 'sampler' | 'text' | 'signal' | 'withLogits'> {
    return {
      sampler: new Sampler(this.config.vocabSize, opts),
      text: new TextStream(this.tokenizer),
      signal: opts.signal,
      withLogits: opts.logits ?? false,
    };
  }

  private engine() {
    if (this.disposed) throw new BackendError('this Llama was disposed');
    return {
      backend: this.backend, config: this.config, weights: this.weights, state: this.state, maxRows: this.batchSize, yieldEveryMs: this.yieldEveryMs,
    };
  }

  /**
   * Runs a generation when the scheduler grants it (one at a time; see
   * scheduler.ts for the order and for preemption). `plan` is called then, so
   * everything the run depends on is decided when it runs.
   */
  private run(plan: () => LoopPlan): Generation {
    const self = this;
    const scheduler = this.scheduler;
    return new Generation(async function* (holder: ResultHolder, settle: () => void) {
      let inner: AsyncGenerator<GeneratedToken> | undefined;
      let preempted = false;
      let granted!: () => void;
      const ready = new Promise<void>((r) => (granted = r));
      const turn: Turn = {
        grant: () => granted(),
        // Only called while suspended at the yield below, where `inner` is suspended too:
        // returning it runs its cleanup, which settles the result and the chat state now.
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
        inner = runLoop(self.engine(), plan(), holder);
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

function checkLoadOptions(opts: LoadOptions): void {
  const o = checkKnown('Llama.load', opts, LOAD_OPTIONS);
  if (opts === undefined || o.model === undefined) throw new ArgumentError('Llama.load: the "model" option is required');
  if (o.tokenizer === undefined) throw new ArgumentError('Llama.load: the "tokenizer" option is required');
  for (const name of ['model', 'tokenizer'] as const) {
    const v = o[name];
    const ok = typeof v === 'string' || v instanceof Uint8Array || v instanceof ArrayBuffer || (typeof Blob !== 'undefined' && v instanceof Blob);
    if (!ok) throw new ArgumentError(`Llama.load: ${name} must be a path, a Blob, an ArrayBuffer or a Uint8Array, got ${describe(v)}`);
    if (v === '') throw new ArgumentError(`Llama.load: ${name} is an empty path`);
  }
  checkBoolean('Llama.load', 'q80', o.q80);
  checkInteger('Llama.load', 'threads', o.threads, 1);
  checkInteger('Llama.load', 'batchSize', o.batchSize, 1);
  checkInteger('Llama.load', 'contextLength', o.contextLength, 1);
  checkObject('Llama.load', 'webgpu', o.webgpu);
  checkNumber('Llama.load', 'preemptAfterMs', o.preemptAfterMs, 0);
  if (o.yieldEveryMs !== Infinity) checkNumber('Llama.load', 'yieldEveryMs', o.yieldEveryMs, 0);
}

async function loadTokenizer(source: ModelSource, vocabSize: number): Promise<Tokenizer> {
  const opts = { expectedVocabSize: vocabSize };
  if (typeof source === 'string') return Tokenizer.fromFile(source, opts);
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const name = (source as Blob & { name?: string }).name || '<blob>';
    return Tokenizer.fromBytes(new Uint8Array(await source.arrayBuffer()), { ...opts, source: name });
  }
  const bytes = source instanceof Uint8Array ? source : new Uint8Array(source as ArrayBuffer);
  return Tokenizer.fromBytes(bytes, { ...opts, source: '<buffer>' });
}
