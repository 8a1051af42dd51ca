/**
 * `@rama/llama/worker`: the Llama API with the model in a dedicated Web
 * Worker, so the page stays responsive while it loads and generates (the CPU
 * backend's own threads run inside that worker). Calls cross as messages (see
 * protocol.ts); tokens stream over a MessageChannel per generation and come
 * out as the same `Generation` the in-page `Llama` returns.
 */
import { ArgumentError, BackendError } from '@rama/core';
import type { ModelConfig } from '@rama/checkpoint';
import { Generation, type GenerationResult } from '../generation.js';
import type { ModelFormat } from '../gguf.js';
import type { ChatMessage, ChatOptions, GenerateOptions, LoadOptions, ModelSource, TokenizeOptions } from '../llama.js';
import {
  CREDITS, fromWire, type BackendInfo, type LoadProgress, type ModelInfo, type PortOut, type Reply, type Request, type WireSource,
} from './protocol.js';

export type { BackendInfo, LoadProgress, ModelInfo } from './protocol.js';
export { serve, type Endpoint } from './serve.js';

/**
 * The engine worker did not start (a Content Security Policy that blocks it,
 * no module workers, the script missing): the page can run the model in
 * itself instead (`Llama.load`). Its message says what to change.
 */
export class WorkerStartError extends BackendError {
  // Spelt out: a minifier renames the class, and with it what RamaError reads as the name.
  override name = 'WorkerStartError';
}

/** The worker's end as the page sees it: a Worker, or any MessagePort-like object. */
export interface WorkerLike {
  postMessage(message: unknown, transfer: Transferable[]): void;
  addEventListener(type: 'message' | 'error' | 'messageerror', listener: (ev: Event) => void): void;
  removeEventListener(type: 'message' | 'error' | 'messageerror', listener: (ev: Event) => void): void;
  terminate?(): void;
  start?(): void;
}

/** A model or tokenizer for the worker: a URL (fetched by the worker, relative to the page), a Blob/File, or bytes. */
export type WorkerModelSource = Exclude<ModelSource, string> | string | URL;

export interface WorkerLoadOptions extends Omit<LoadOptions, 'model' | 'tokenizer' | 'backend' | 'onProgress'> {
  model: WorkerModelSource;
  tokenizer?: WorkerModelSource;
  /** "cpu" (default), "webgpu" or "auto", chosen in the worker (a Backend instance cannot cross). */
  backend?: 'cpu' | 'webgpu' | 'auto';
  /**
   * The worker to run in: the URL of a prebuilt copy of this package's
   * `dist/worker/thread.js` (started as a module worker), or a Worker (or
   * MessagePort-like object) already running it, which the model then owns.
   * Default: `thread.js` beside this module, which bundlers pick up.
   */
  worker?: string | URL | WorkerLike;
  /** Download and load progress. */
  onProgress?: (progress: LoadProgress) => void;
  /**
   * Bytes given as an ArrayBuffer (or a Uint8Array spanning its whole buffer)
   * are transferred to the worker, not copied: the caller's buffer is
   * detached afterwards (default true). False: they are copied.
   */
  transfer?: boolean;
}

const WORKER_ONLY = ['worker', 'onProgress', 'transfer'] as const;

/**
 * Starts the engine worker and loads a model in it. Resolves once the model
 * is loaded; a worker that cannot start (a Content Security Policy that
 * blocks it, no module workers) is a BackendError saying so.
 */
export async function createWorkerLlama(opts: WorkerLoadOptions): Promise<WorkerLlama> {
  if (opts === null || typeof opts !== 'object') throw new ArgumentError('createWorkerLlama: options must be an object with at least "model"');
  if (opts.backend !== undefined && typeof opts.backend !== 'string') {
    throw new ArgumentError('createWorkerLlama: backend must be "cpu", "webgpu" or "auto" (a Backend instance cannot be sent to a worker)');
  }
  if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') throw new ArgumentError('createWorkerLlama: onProgress must be a function');
  const { worker: which, onProgress, transfer = true, model, tokenizer, ...rest } = opts;
  const transfers: Transferable[] = [];
  const options = {
    ...rest,
    model: toWire('model', model, transfer, transfers),
    ...(tokenizer === undefined ? {} : { tokenizer: toWire('tokenizer', tokenizer, transfer, transfers) }),
  };
  const { worker, owned, url } = await startWorker(which);
  const channel = new Channel(worker, owned);
  try {
    await channel.ready(url);
    const info = (await channel.request({ op: 'load', options }, transfers, onProgress)) as ModelInfo;
    return new WorkerLlama(channel, info);
  } catch (e) {
    channel.close();
    throw e;
  }
}

/** The model in its worker: the API of `Llama`, with tokenize and friends returning promises. */
export class WorkerLlama {
  /** The model's description (its chat template stays in the worker). */
  readonly spec: ModelInfo['spec'];
  readonly config: ModelConfig;
  readonly format: ModelFormat;
  readonly contextLength: number;
  readonly batchSize: number;
  readonly sessions: number;
  readonly quantized: boolean;
  /** The backend in the worker: its name, description and any notice (e.g. one thread for want of cross-origin isolation). */
  readonly backend: BackendInfo;
  private nextSession = 1;
  private liveSessions = 0;
  private defaultUsed = false;

  /** @internal */
  constructor(private readonly channel: Channel, info: ModelInfo) {
    this.spec = info.spec;
    this.config = info.config;
    this.format = info.format;
    this.contextLength = info.contextLength;
    this.batchSize = info.batchSize;
    this.sessions = info.sessions;
    this.quantized = info.quantized;
    this.backend = info.backend;
  }

  /** As Llama.generate. Bad options surface when the generation starts (its first `next()` or `result()`). */
  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): Generation {
    this.useDefault();
    return this.channel.generation('generate', 0, prompt, opts, undefined);
  }

  /** As Llama.chat: a message, or a whole conversation of messages. */
  chat(messages: string | readonly ChatMessage[], opts: ChatOptions = {}): Generation {
    this.useDefault();
    return this.channel.generation('chat', 0, messages, opts, undefined);
  }

  /** As Llama.session(): its own KV slot; throws when every slot is taken. */
  session(): WorkerSession {
    this.channel.checkLive();
    if (this.liveSessions + (this.defaultUsed ? 1 : 0) >= this.sessions) {
      throw new ArgumentError(`all ${this.sessions} session slots are in use: load with a larger \`sessions\` or dispose a session`);
    }
    const id = this.nextSession++;
    this.liveSessions++;
    this.channel.send({ op: 'session', session: id });
    return new WorkerSession(this.channel, id, () => this.liveSessions--);
  }

  tokenize(text: string, opts: TokenizeOptions = {}): Promise<number[]> {
    return this.channel.request({ op: 'tokenize', text, options: opts }) as Promise<number[]>;
  }

  countTokens(text: string, opts: TokenizeOptions = {}): Promise<number> {
    return this.channel.request({ op: 'countTokens', text, options: opts }) as Promise<number>;
  }

  detokenize(ids: readonly number[]): Promise<string> {
    return this.channel.request({ op: 'detokenize', ids }) as Promise<string>;
  }

  /** Ends the default session's conversation, in order with its turns. */
  resetChat(): void {
    this.useDefault();
    this.channel.send({ op: 'reset', session: 0 });
  }

  /** Frees the model and ends the worker (once it has freed its tensors). */
  dispose(): void {
    this.channel.dispose();
  }

  private useDefault(): void {
    this.channel.checkLive();
    this.defaultUsed = true;
  }
}

/** As Session, in the worker. `tokens` mirrors the session's KV cache as of its last finished call. */
export class WorkerSession {
  private disposed = false;
  private cache: readonly number[] = [];

  /** @internal */
  constructor(private readonly channel: Channel, private readonly id: number, private readonly released: () => void) {}

  /** The token ids in this session's KV cache when its last call ended. */
  get tokens(): readonly number[] {
    return this.cache;
  }

  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): Generation {
    this.checkLive();
    return this.channel.generation('generate', this.id, prompt, opts, (t) => (this.cache = t));
  }

  chat(messages: string | readonly ChatMessage[], opts: ChatOptions = {}): Generation {
    this.checkLive();
    return this.channel.generation('chat', this.id, messages, opts, (t) => (this.cache = t));
  }

  reset(): void {
    this.checkLive();
    this.channel.send({ op: 'reset', session: this.id });
  }

  /** Gives the slot back once the session's queued calls are done. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.released();
    if (!this.channel.closed) this.channel.send({ op: 'disposeSession', session: this.id });
  }

  private checkLive(): void {
    this.channel.checkLive();
    if (this.disposed) throw new BackendError('this session was disposed');
  }
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  onProgress?: (p: LoadProgress) => void;
}

/** @internal The page's end: requests by id, generations by port, and the worker's failure. */
class Channel {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  /** Wakes every generation waiting on its port, to see `failure`. */
  private readonly waiters = new Set<() => void>();
  private failure: Error | undefined;
  private disposed = false;
  closed = false;
  private readyWaiter: { resolve(): void; reject(e: Error): void } | undefined;
  private isReady = false;
  private readonly onMessage = (ev: Event) => this.message((ev as MessageEvent<Reply>).data);
  private readonly onError = (ev: Event) => this.fail(ev);

  constructor(private readonly worker: WorkerLike, private readonly owned: boolean) {
    worker.addEventListener('message', this.onMessage);
    worker.addEventListener('error', this.onError);
    worker.addEventListener('messageerror', this.onError);
    worker.start?.();
  }

  /** Waits for the worker script to start; a refusal becomes a BackendError that says why. */
  ready(url: string | undefined): Promise<void> {
    if (this.isReady) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const violations: string[] = [];
      const onViolation = (ev: Event) => {
        const v = ev as SecurityPolicyViolationEvent;
        violations.push(`${v.effectiveDirective || v.violatedDirective} (blocked ${v.blockedURI || 'the script'})`);
      };
      const target = globalThis as unknown as Partial<EventTarget>;
      target.addEventListener?.('securitypolicyviolation', onViolation);
      const done = () => target.removeEventListener?.('securitypolicyviolation', onViolation);
      this.readyWaiter = {
        resolve: () => (done(), resolve()),
        reject: (e) => {
          // The violation event may come just after the worker's error event.
          setTimeout(() => {
            done();
            reject(workerStartError(url, violations, e));
          }, 50);
        },
      };
    });
  }

  checkLive(): void {
    if (this.failure) throw this.failure;
    if (this.disposed) throw new BackendError('this WorkerLlama was disposed');
  }

  send(request: Request, transfer: Transferable[] = []): void {
    void this.request(request, transfer).catch(() => {});
  }

  request(request: Request, transfer: Transferable[] = [], onProgress?: (p: LoadProgress) => void): Promise<unknown> {
    try {
      this.checkLive();
    } catch (e) {
      return Promise.reject(e);
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      try {
        this.worker.postMessage({ id, request }, transfer);
      } catch (e) {
        this.pending.delete(id);
        reject(e instanceof DOMException && e.name === 'DataCloneError' ? new ArgumentError(`cannot send to the worker: ${e.message}`) : e);
      }
    });
  }

  /** A Generation whose tokens come from the worker, pulled with credits. */
  generation(op: 'generate' | 'chat', session: number, input: unknown, opts: GenerateOptions | ChatOptions, onTokens: ((t: readonly number[]) => void) | undefined): Generation {
    if (opts === null || typeof opts !== 'object') throw new ArgumentError(`${op}: options must be an object, got ${String(opts)}`);
    const { signal, ...options } = opts;
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new ArgumentError(`${op}: signal must be an AbortSignal`);
    const channel = this;
    return new Generation(async function* (holder) {
      channel.checkLive();
      const { port1, port2 } = new MessageChannel();
      const queue: PortOut[] = [];
      let wake: (() => void) | undefined;
      const waiter = () => wake?.();
      channel.waiters.add(waiter);
      port1.onmessage = (ev: MessageEvent<PortOut>) => {
        queue.push(ev.data);
        wake?.();
      };
      const next = async (): Promise<PortOut> => {
        while (queue.length === 0) {
          if (channel.failure) throw channel.failure;
          await new Promise<void>((r) => (wake = r));
        }
        return queue.shift()!;
      };
      const ended = (m: PortOut): boolean => {
        if ('end' in m) {
          holder.value = m.end as GenerationResult;
          onTokens?.(m.tokens);
          return true;
        }
        return 'error' in m;
      };
      const onAbort = () => port1.postMessage({ abort: true });
      signal?.addEventListener('abort', onAbort, { once: true });
      let done = false;
      try {
        await channel.request({ op, session, input, options, aborted: signal?.aborted ?? false, port: port2 }, [port2]);
        port1.postMessage({ credit: CREDITS });
        for (;;) {
          const m = await next();
          if ('token' in m) {
            yield m.token;
            port1.postMessage({ credit: 1 });
            continue;
          }
          done = true;
          if ('error' in m) throw fromWire(m.error);
          ended(m);
          return;
        }
      } finally {
        signal?.removeEventListener('abort', onAbort);
        if (!done && !channel.failure) {
          // The consumer left early: the worker ends the generation (reason "aborted") and sends its result.
          port1.postMessage({ cancel: true });
          try {
            while (!ended(await next()));
          } catch {
            // the worker died meanwhile: nothing to wait for
          }
        }
        channel.waiters.delete(waiter);
        port1.onmessage = null;
        port1.close();
      }
    });
  }

  dispose(): void {
    if (this.disposed || this.closed) return;
    // The worker frees the model (GPU buffers included) before it is ended.
    const freed = this.failure ? Promise.resolve() : this.request({ op: 'dispose' }).catch(() => {});
    this.disposed = true;
    void freed.finally(() => this.close());
  }


  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.worker.removeEventListener('message', this.onMessage);
    this.worker.removeEventListener('error', this.onError);
    this.worker.removeEventListener('messageerror', this.onError);
    if (this.owned) this.worker.terminate?.();
  }

  private message(m: Reply): void {
    if (m.type === 'ready') {
      this.isReady = true;
      this.readyWaiter?.resolve();
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.type === 'progress') p.onProgress?.(m.progress);
    else {
      this.pending.delete(m.id);
      if (m.type === 'reply') p.resolve(m.value);
      else p.reject(fromWire(m.error));
    }
  }

  /** The worker failed (its script did not load, or threw outside any request): everything waiting fails. */
  private fail(ev: Event): void {
    const detail = (ev as ErrorEvent).message;
    const e = new BackendError(`the engine worker failed${detail ? `: ${detail}` : ''}`);
    if (!this.isReady) {
      this.readyWaiter?.reject(e);
      this.failure = e;
      return;
    }
    this.failure ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    for (const w of this.waiters) w();
  }
}

/** The default worker, or the one asked for. */
async function startWorker(which: WorkerLoadOptions['worker']): Promise<{ worker: WorkerLike; owned: boolean; url: string | undefined }> {
  if (which !== undefined && typeof which !== 'string' && !(which instanceof URL)) {
    if (typeof which.postMessage !== 'function' || typeof which.addEventListener !== 'function') {
      throw new ArgumentError('createWorkerLlama: worker must be a URL or a Worker running @rama/llama/worker\'s thread.js');
    }
    return { worker: which, owned: true, url: undefined };
  }
  if (typeof Worker === 'undefined') {
    throw new BackendError('createWorkerLlama: this environment has no Web Workers (in Node, use Llama from @rama/llama: its CPU backend already runs on worker threads)');
  }
  const url = which === undefined ? undefined : new URL(String(which), globalThis.location?.href).href;
  try {
    // The literal `new URL('./thread.js', import.meta.url)` is what bundlers look for to bundle the worker.
    const w = url === undefined ? new Worker(new URL('./thread.js', import.meta.url), { type: 'module' }) : new Worker(url, { type: 'module' });
    return { worker: w as unknown as WorkerLike, owned: true, url: url ?? 'thread.js' };
  } catch (e) {
    throw workerStartError(url ?? 'thread.js', [], e);
  }
}

/** Why the worker did not start, in words a site owner can act on. */
function workerStartError(url: string | undefined, violations: string[], cause: unknown): WorkerStartError {
  const what = `cannot start the engine worker${url ? ` (${url})` : ''}`;
  if (violations.length) {
    return new WorkerStartError(
      `${what}: the page's Content Security Policy blocks it: ${violations.join('; ')}. ` +
        `Allow the worker script in \`worker-src\` (e.g. \`worker-src 'self'\`; without worker-src, script-src applies), ` +
        `and \`script-src 'wasm-unsafe-eval'\` for the CPU backend`,
      { cause },
    );
  }
  const said = cause instanceof Error && !/^the engine worker failed$/.test(cause.message) ? ` (${cause.message})` : '';
  return new WorkerStartError(
    `${what}: the browser refused it or it failed to load${said}. Usual causes: a Content Security Policy whose \`worker-src\` ` +
      `(or \`script-src\`) does not allow the script, a browser without module workers, or the script missing at that URL`,
    { cause },
  );
}

/** A source as it is sent: a URL made absolute (the worker resolves nothing), a Blob as is, bytes transferred when allowed. */
function toWire(name: string, source: WorkerModelSource, transfer: boolean, transfers: Transferable[]): WireSource {
  if (typeof source === 'string' || source instanceof URL) {
    if (source === '') throw new ArgumentError(`createWorkerLlama: ${name} is an empty URL`);
    try {
      return { url: new URL(String(source), globalThis.location?.href).href };
    } catch {
      throw new ArgumentError(`createWorkerLlama: ${name} ${JSON.stringify(String(source))} is not a URL (and there is no page to resolve it against)`);
    }
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) return source;
  if (source instanceof ArrayBuffer) {
    if (transfer) transfers.push(source);
    return source;
  }
  if (source instanceof Uint8Array) {
    const whole = source.byteOffset === 0 && source.byteLength === source.buffer.byteLength && source.buffer instanceof ArrayBuffer;
    if (transfer && whole) transfers.push(source.buffer as ArrayBuffer);
    return source;
  }
  if (source !== null && typeof source === 'object') return source as WireSource; // another form Llama.load reads (structured-cloned; it checks it)
  throw new ArgumentError(`createWorkerLlama: ${name} must be a URL, a Blob, an ArrayBuffer or a Uint8Array, got ${source === null ? 'null' : typeof source}`);
}
