/**
 * The Llama model: loads a llama2.c checkpoint and tokenizer onto a backend,
 * then generates text (llama2.c's generate mode) or chats (Llama 2's [INST]
 * template), continuing the KV cache across chat turns.
 */
import { ArgumentError, BackendError, type Backend, type Tensor } from '@rama/backend';
import { openCheckpoint, type CheckpointFormat, type ModelConfig } from '@rama/checkpoint';
import { chooseGroupSize } from '@rama/quant-q80';
import { Sampler, type SamplerOptions } from '@rama/sampler';
import { EOS_ID, TextStream, Tokenizer } from '@rama/tokenizer';
import { createBackend, type BackendChoice } from './backends.js';
import { Generation, runLoop, type GenerationResult, type LoopPlan } from './generation.js';
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
}

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
  private queue: Promise<unknown> = Promise.resolve();
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
  ) {}

  static async load(opts: LoadOptions): Promise<Llama> {
    if (!opts || opts.model === undefined) throw new ArgumentError('Llama.load: the "model" option is required');
    if (opts.tokenizer === undefined) throw new ArgumentError('Llama.load: the "tokenizer" option is required');
    const batchSize = opts.batchSize ?? 32;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new ArgumentError(`batchSize must be an integer >= 1, got ${batchSize}`);

    const ckpt = await openCheckpoint(opts.model);
    try {
      const config = ckpt.config;
      const tokenizer = await loadTokenizer(opts.tokenizer, config.vocabSize);
      const context = opts.contextLength ?? config.seqLen;
      if (!Number.isInteger(context) || context < 1 || context > config.seqLen) {
        throw new ArgumentError(`contextLength must be an integer in 1..${config.seqLen} (the model's seq_len), got ${context}`);
      }
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
        return new Llama(config, ckpt.format, tokenizer, backend, owned, weights, state, tensors, context, rows, quantized);
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
    const steps = opts.steps ?? 256;
    if (!Number.isInteger(steps) || steps < 0) throw new ArgumentError(`steps must be an integer >= 0, got ${steps}`);
    const endPos = steps === 0 || steps > this.contextLength ? this.contextLength : steps;
    const feed = this.tokenizer.encode(prompt, { bos: true, eos: false });
    return this.run((h) => {
      this.chatPos = undefined;
      return runLoop(this.engine(), {
        ...this.common(opts),
        feed,
        startPos: 0,
        endPos,
        endReason: endPos === this.contextLength ? 'context' : 'steps',
        echo: opts.echo ?? true,
        stopAtEos: opts.stopAtEos ?? false,
        onEnd: () => {},
      }, h);
    });
  }

  /**
   * One chat turn: the user's message in Llama 2's template ([INST] ... [/INST],
   * with <<SYS>> on the first turn), then the reply until EOS. The KV cache
   * carries over, so each turn only reads its own new tokens.
   */
  chat(message: string, opts: ChatOptions = {}): Generation {
    const first = this.chatPos === undefined;
    const rendered = first && opts.system
      ? `[INST] <<SYS>>\n${opts.system}\n<</SYS>>\n\n${message} [/INST]`
      : `[INST] ${message} [/INST]`;
    return this.run((h) => {
      const startPos = this.chatPos ?? 0;
      const feed = [...(first ? [] : this.chatPending), ...this.tokenizer.encode(rendered, { bos: true, eos: false })];
      const max = opts.maxTokens;
      if (max !== undefined && !(Number.isInteger(max) && max > 0)) throw new ArgumentError(`maxTokens must be an integer > 0, got ${max}`);
      const limit = max === undefined ? this.contextLength : Math.min(this.contextLength, startPos + feed.length - 1 + max);
      return runLoop(this.engine(), {
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
          if (reason === 'aborted' && last !== EOS_ID) this.chatPending = [];
        },
      }, h);
    });
  }

  /** Ends the conversation; the next chat turn starts a new one. */
  resetChat(): void {
    this.chatPos = undefined;
    this.chatPending = [];
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
    return { backend: this.backend, config: this.config, weights: this.weights, state: this.state, maxRows: this.batchSize };
  }

  /** Runs generations one at a time: a second one waits for the first to finish. */
  private run(start: (h: { value?: GenerationResult }) => AsyncGenerator<import('./generation.js').GeneratedToken>): Generation {
    const self = this;
    return new Generation(async function* (h) {
      const previous = self.queue;
      let release!: () => void;
      self.queue = new Promise<void>((r) => (release = r));
      await previous;
      try {
        yield* start(h);
      } finally {
        release();
      }
    });
  }
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
