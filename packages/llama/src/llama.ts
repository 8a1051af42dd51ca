/**
 * The Llama model: loads a llama2.c checkpoint and tokenizer onto a backend
 * once, then serves any number of sessions (sequences) on it, each with its
 * own KV slot, their steps batched together. `generate` and `chat` on the
 * model itself use a default session.
 */
import type { Backend, Tensor } from '@rama/backend';
import { ArgumentError, BackendError } from '@rama/core';
import type { ModelConfig } from '@rama/checkpoint';
import { chooseGroupSize } from '@rama/quant-q80';
import { Tokenizer } from '@rama/tokenizer';
import { createBackend, type BackendChoice } from './backends.js';
import { BatchRunner } from './batch.js';
import type { Generation } from './generation.js';
import { openModel, type ModelFormat } from './gguf.js';
import { isHfModelFiles, type HfModelFiles } from './hf-model.js';
import { checkBoolean, checkInteger, checkKnown, checkNumber, checkObject, checkString, describe } from './options.js';
import { Session, type ChatMessage, type ChatOptions, type GenerateOptions } from './session.js';
import { allocState, type KvCacheType } from './state.js';
import { checkSupported, type ModelSpec } from './spec.js';
import { checkModelFits, uploadWeights } from './weights.js';
import { resolveSource, type HubOptions, type Progress } from './resolve.js';

export type { ChatMessage, ChatOptions, GenerateOptions, OutputOptions } from './session.js';

/** A file: a path (Node), a Blob or File, or its bytes. */
export type ModelSource = string | Blob | ArrayBuffer | Uint8Array;

/** Options of `Llama.load`. */
export interface LoadOptions {
  /**
   * A llama2.c checkpoint or a GGUF file (told apart by its first bytes): a path (Node), a Blob/File, or its bytes.
   * An array: the splits of one GGUF model (gguf-split); a path named `*-00001-of-00003.gguf` opens its siblings too.
   * A name, `hf:owner/repo/file.gguf[@revision]` or an http(s) URL, is downloaded once into the cache by
   * @rama/hub (a split GGUF name: every part); a string that is an existing local file stays that file.
   */
  model: ModelSource | readonly ModelSource[] | HfModelFiles;
  /**
   * A tokenizer.bin (llama2.c) or a Hugging Face tokenizer.json, in the same forms (a name too). Required for a llama2.c
   * checkpoint; optional with a GGUF file or a Hugging Face folder, which carry their own: given anyway, it must hold the
   * same pieces (an ArgumentError names the first that differs) and is then used (e.g. llama2.c's spelling of BOS and EOS).
   */
  tokenizer?: ModelSource;
  /** Download progress of a model or tokenizer given by name: `{ file, url, loaded, total, done }`, per file. */
  onProgress?: (p: Progress) => void;
  /** @rama/hub's options for names: `offline`, `token`, `endpoint`, `cacheDir`, `signal`, ... (defaults: HF_HUB_OFFLINE, HF_TOKEN, HF_ENDPOINT, RAMA_CACHE). */
  hub?: HubOptions;
  /** "cpu" (default), "webgpu", "auto" (WebGPU when an adapter exists, else CPU), or a Backend instance. */
  backend?: BackendChoice;
  /** Quantize an fp32 checkpoint's matrices to Q8_0 at load (runq.c numerics). */
  q80?: boolean;
  /** CPU worker threads (default: every core). */
  threads?: number;
  /** Most rows in one step: prompt positions read together, and sequences decoding together (default 32). */
  batchSize?: number;
  /** KV slots: how many sessions can hold a sequence at once (default 1). Each costs a KV cache. */
  sessions?: number;
  /** KV cache length; default and maximum: the model's seq_len. */
  contextLength?: number;
  /**
   * The KV cache's element type: 'f32' (default) or 'f16', which halves the cache (what llama.cpp's
   * `--cache-type-k f16 --cache-type-v f16` store, its default): each key and value is stored as the nearest
   * f16 (round half to even) and read back exactly, so a 7B model's 4096 positions take 1 GiB of keys and
   * values each instead of 2, and fit one 4 GiB WebAssembly memory. Logits move by that rounding only (a
   * relative 2^-11 per value). A backend without f16 tensors refuses it (a BackendError naming the option).
   */
  kvCacheType?: KvCacheType;
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

/** Options of `Llama.tokenize` and `countTokens`. */
export interface TokenizeOptions {
  /** Start with BOS (default: whether the vocabulary adds one, true for llama2.c, Llama 2 and 3, false for SmolLM2 and Qwen2; the ids generate feeds for a string prompt). */
  bos?: boolean;
  /** End with EOS (default false). */
  eos?: boolean;
}

const LOAD_OPTIONS = [
  'model', 'tokenizer', 'backend', 'q80', 'threads', 'batchSize', 'sessions', 'contextLength', 'kvCacheType', 'webgpu', 'preemptAfterMs',
  'yieldEveryMs', 'onProgress', 'hub',
] as const;

/**
 * A loaded model: its weights on a backend, its tokenizer, and KV slots for sessions.
 * Generate with `generate` / `chat` (the default session) or with `session()`s; `dispose()` frees it.
 */
export class Llama {
  /** Free KV slots. */
  private readonly freeSlots: number[];
  private defaultSession: Session | undefined;
  private disposed = false;

  private constructor(
    /** The model, described by data (dimensions, RoPE, special ids, chat template). */
    readonly spec: ModelSpec,
    /** The llama2.c header it was read from (for a GGUF file: the same fields, from its metadata). */
    readonly config: ModelConfig,
    /** The file format it was read from. */
    readonly format: ModelFormat,
    /** Its tokenizer (from tokenizer.bin, or the GGUF file's vocabulary). */
    readonly tokenizer: Tokenizer,
    /** Where the weights live and the forward pass runs. */
    readonly backend: Backend,
    private readonly ownsBackend: boolean,
    private readonly tensors: Tensor[],
    /** KV cache length per session. */
    readonly contextLength: number,
    /** Most rows per step. */
    readonly batchSize: number,
    /** KV slots (sessions that can exist at once). */
    readonly sessions: number,
    /** Whether matrices run as Q8_0 (a v2 file or q80: true). */
    readonly quantized: boolean,
    /** The KV cache's element type (LoadOptions.kvCacheType). */
    readonly kvCacheType: KvCacheType,
    private readonly runner: BatchRunner,
    private readonly preemptAfterMs: number,
  ) {
    this.freeSlots = Array.from({ length: sessions }, (_, i) => i);
  }

  /**
   * Opens the model (and tokenizer), checks it, makes or takes the backend and uploads the weights.
   * A FormatError names a malformed file, an ArgumentError a bad option; nothing is left allocated on failure.
   */
  static async load(opts: LoadOptions): Promise<Llama> {
    checkLoadOptions(opts);
    const batchSize = opts.batchSize ?? 32;
    const sessions = opts.sessions ?? 1;
    const kvCacheType = opts.kvCacheType ?? 'f32';

    // Names (hf:, URLs) become their cached files first.
    const names = { onProgress: opts.onProgress, hub: opts.hub };
    const modelSource = (await resolveSource(opts.model, names)) as ModelSource | readonly ModelSource[];
    const tokenizerSource = opts.tokenizer === undefined ? undefined : ((await resolveSource(opts.tokenizer, names)) as ModelSource | readonly ModelSource[]);
    if (Array.isArray(tokenizerSource)) throw new ArgumentError(`Llama.load: the tokenizer ${String(opts.tokenizer)} names several files`);
    const model = await openModel(modelSource);
    try {
      const { config, spec, weights: ckpt } = model;
      checkSupported(spec, ckpt.source);
      if (!model.tokenizer && opts.tokenizer === undefined) {
        const what = model.format === 'safetensors' ? 'a Hugging Face model without tokenizer.json' : 'a llama2.c checkpoint';
        throw new ArgumentError(`Llama.load: the "tokenizer" option is required for ${what}`);
      }
      const given = opts.tokenizer === undefined ? undefined : await loadTokenizer(tokenizerSource as ModelSource, config.vocabSize);
      // A model that carries its vocabulary takes another tokenizer only if it is the same vocabulary.
      if (model.tokenizer && given) checkSameVocabulary(model.tokenizer, given, spec, ckpt.source);
      const tokenizer = given ?? model.tokenizer!;
      const context = opts.contextLength ?? config.seqLen;
      checkInteger('Llama.load', `contextLength (the model's seq_len is ${config.seqLen})`, context, 1, config.seqLen);
      const quantizeGroupSize = opts.q80 && model.format !== 'v2' ? chooseGroupSize([config.dim, config.hiddenDim]) : undefined;
      const { backend, owned } = await createBackend(opts.backend ?? 'cpu', { maxRows: batchSize, threads: opts.threads, webgpu: opts.webgpu });
      const tensors: Tensor[] = [];
      const track = (t: Tensor) => (tensors.push(t), t);
      try {
        // A backend the caller made may take fewer rows per step than asked for.
        const rows = Math.min(batchSize, backend.maxRows);
        if (kvCacheType !== 'f32' && !backend.supports(kvCacheType)) {
          throw new BackendError(`Llama.load: kvCacheType '${kvCacheType}' needs ${kvCacheType} tensors, which the ${backend.name} backend does not support; use kvCacheType 'f32'`);
        }
        await checkModelFits(backend, ckpt, { quantizeGroupSize }, spec, { rows, context, sessions, kvCacheType });
        // The state first: on a backend with several memories (the CPU past 4 GiB), the activations
        // and the KV cache then share the first one, and the weights fill it and the next.
        const state = allocState(backend, spec, rows, context, sessions, track, kvCacheType);
        const weights = await uploadWeights(backend, ckpt, { quantizeGroupSize }, track);
        const quantized = model.quantized || quantizeGroupSize !== undefined;
        const runner = new BatchRunner(backend, spec, weights, state, rows, opts.yieldEveryMs ?? 10);
        return new Llama(spec, config, model.format, tokenizer, backend, owned, tensors, context, rows, sessions, quantized, kvCacheType, runner, opts.preemptAfterMs ?? 250);
      } catch (e) {
        if (owned) backend.dispose();
        else for (const t of tensors) backend.free(t);
        throw e;
      }
    } finally {
      await model.close();
    }
  }

  /**
   * A new session: its own sequence (KV slot and position) on this model.
   * Sessions generate at the same time, their steps batched together; a
   * session's calls run in order. Throws when every slot is taken (load with
   * a larger `sessions`, or dispose a session).
   */
  session(): Session {
    this.checkLive();
    return this.newSession();
  }

  private newSession(): Session {
    const slot = this.freeSlots.shift();
    if (slot === undefined) {
      throw new ArgumentError(`all ${this.sessions} session slots are in use: load with a larger \`sessions\` or dispose a session`);
    }
    const host = {
      spec: this.spec,
      tokenizer: this.tokenizer,
      contextLength: this.contextLength,
      runner: this.runner,
      checkLive: () => this.checkLive(),
      releaseSlot: (s: number) => {
        if (!this.disposed) this.freeSlots.push(s);
      },
    };
    return new Session(host, slot, this.preemptAfterMs);
  }

  /**
   * Completes `prompt` as llama2.c's generate mode does (in the default
   * session): BOS, the prompt, then sampled tokens until `steps` positions ran
   * or BOS is sampled (or `maxTokens`, a `stop` string, EOS with `stopAtEos`).
   * Ends any chat of the default session. The prompt may also be token ids
   * (fed as they are, no BOS added).
   */
  generate(prompt: string | readonly number[], opts: GenerateOptions = {}): Generation {
    return this.default().generate(prompt, opts);
  }

  /** One chat turn in the default session: a message, or a whole conversation of messages (see Session.chat). */
  chat(messages: string | readonly ChatMessage[], opts: ChatOptions = {}): Generation {
    return this.default().chat(messages, opts);
  }

  /**
   * The model's token ids for `text`, as llama2.c encodes a prompt (a leading
   * space is added, sentencepiece's dummy prefix). With the defaults these are
   * the ids generate(text) reads.
   */
  tokenize(text: string, opts: TokenizeOptions = {}): number[] {
    checkString('tokenize', 'text', text, false);
    const o = checkKnown('tokenize', opts, ['bos', 'eos']);
    checkBoolean('tokenize', 'bos', o.bos);
    checkBoolean('tokenize', 'eos', o.eos);
    return this.tokenizer.encode(text, { bos: opts.bos ?? this.tokenizer.addBos, eos: opts.eos ?? false });
  }

  /**
   * The text of token ids, as generation shows it: each token decoded after
   * the one before, the leading space of the first text token dropped (the
   * dummy prefix tokenize adds), special tokens as their pieces, bytes that
   * form no UTF-8 dropped. detokenize(tokenize(text)) is text, with or without BOS.
   */
  detokenize(ids: readonly number[]): string {
    if (!Array.isArray(ids)) throw new ArgumentError(`detokenize: ids must be an array of token ids, got ${describe(ids)}`);
    const vocab = this.spec.vocabSize;
    for (const id of ids) {
      if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new ArgumentError(`detokenize: token id ${describe(id)} outside the vocabulary (0..${vocab - 1})`);
    }
    // llama2.c decodes a token after its predecessor; after BOS the dummy prefix's space goes.
    return this.tokenizer.decode(ids[0] === this.spec.bosId ? ids : [this.spec.bosId, ...ids]);
  }

  /** How many tokens `text` is: tokenize(text, opts).length (so BOS counts where the vocabulary adds one, unless `bos: false`). */
  countTokens(text: string, opts: TokenizeOptions = {}): number {
    return this.tokenize(text, opts).length;
  }

  /** Ends the default session's conversation, in order with its turns. */
  resetChat(): void {
    this.default().reset();
  }

  /** Frees the weights, every KV cache and (when Llama created it) the backend. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.runner.close();
    if (this.ownsBackend) this.backend.dispose();
    else for (const t of new Set(this.tensors)) this.backend.free(t);
  }

  private checkLive(): void {
    if (this.disposed) throw new BackendError('this Llama was disposed');
  }

  private default(): Session {
    this.defaultSession ??= this.newSession();
    return this.defaultSession;
  }
}

function checkLoadOptions(opts: LoadOptions): void {
  const o = checkKnown('Llama.load', opts, LOAD_OPTIONS);
  if (opts === undefined || o.model === undefined) throw new ArgumentError('Llama.load: the "model" option is required');
  if (Array.isArray(o.model) && o.model.length === 0) throw new ArgumentError('Llama.load: model is an empty array (expected the GGUF splits of one model)');
  // The object form of a Hugging Face model ({ config, weights }) is checked when it is opened.
  const sources: [string, unknown][] = Array.isArray(o.model) ? o.model.map((m, i) => [`model[${i}]`, m]) : isHfModelFiles(o.model) ? [] : [['model', o.model]];
  for (const [name, v] of [...sources, ['tokenizer', o.tokenizer]]) {
    if (name === 'tokenizer' && v === undefined) continue;
    const ok = typeof v === 'string' || v instanceof Uint8Array || v instanceof ArrayBuffer || (typeof Blob !== 'undefined' && v instanceof Blob);
    if (!ok) throw new ArgumentError(`Llama.load: ${name} must be a path, a Blob, an ArrayBuffer or a Uint8Array, got ${describe(v)}`);
    if (v === '') throw new ArgumentError(`Llama.load: ${name} is an empty path`);
  }
  checkBoolean('Llama.load', 'q80', o.q80);
  checkInteger('Llama.load', 'threads', o.threads, 1);
  checkInteger('Llama.load', 'batchSize', o.batchSize, 1);
  checkInteger('Llama.load', 'sessions', o.sessions, 1);
  checkInteger('Llama.load', 'contextLength', o.contextLength, 1);
  if (o.kvCacheType !== undefined && o.kvCacheType !== 'f32' && o.kvCacheType !== 'f16') {
    throw new ArgumentError(`Llama.load: kvCacheType must be 'f32' or 'f16', got ${describe(o.kvCacheType)}`);
  }
  checkObject('Llama.load', 'webgpu', o.webgpu);
  checkObject('Llama.load', 'hub', o.hub);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw new ArgumentError(`Llama.load: onProgress must be a function, got ${describe(o.onProgress)}`);
  checkNumber('Llama.load', 'preemptAfterMs', o.preemptAfterMs, 0);
  if (o.yieldEveryMs !== Infinity) checkNumber('Llama.load', 'yieldEveryMs', o.yieldEveryMs, 0);
}

/**
 * A llama2.c tokenizer.bin or a Hugging Face tokenizer.json, told apart by
 * content (a JSON object). A tokenizer.json path also reads the
 * tokenizer_config.json beside it, if any (BOS/EOS, clean-up).
 */
async function loadTokenizer(source: ModelSource, vocabSize: number): Promise<Tokenizer> {
  const opts = { expectedVocabSize: vocabSize };
  if (typeof source === 'string') return Tokenizer.fromFile(source, opts);
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    const name = (source as Blob & { name?: string }).name || '<blob>';
    return Tokenizer.load(new Uint8Array(await source.arrayBuffer()), { ...opts, source: name });
  }
  const bytes = source instanceof Uint8Array ? source : new Uint8Array(source as ArrayBuffer);
  return Tokenizer.load(bytes, { ...opts, source: '<buffer>' });
}

/**
 * A tokenizer given beside a file that carries its own (GGUF, a Hugging Face
 * folder) must hold the same pieces for every token but the special ones
 * (llama2.c's tokenizer.bin spells BOS and EOS "\n<s>\n" and "\n</s>\n").
 */
function checkSameVocabulary(own: Tokenizer, given: Tokenizer, spec: ModelSpec, source: string): void {
  const special = new Set([0, spec.bosId, spec.eosId, ...spec.stopIds]);
  const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
  for (let id = 0; id < own.vocabSize; id++) {
    if (special.has(id) || same(own.piece(id), given.piece(id))) continue;
    const text = (t: Tokenizer) => JSON.stringify(new TextDecoder().decode(t.piece(id)));
    throw new ArgumentError(
      `Llama.load: the "tokenizer" ${given.source} does not match the vocabulary ${source} carries: token ${id} is ${text(given)} there, ${text(own)} in the model (leave out the "tokenizer" option to use the model's own)`,
    );
  }
}
