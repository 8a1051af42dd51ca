/**
 * The rama command: llama2.c's run, on Rama. Generate mode prints the prompt
 * and its completion as they are produced, then "achieved tok/s" on stderr;
 * chat mode reads user turns from a terminal or from piped lines. With
 * --json, stdout carries one JSON object per generation or chat turn.
 */
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Llama, RamaError, type GenerationResult } from '@rama/llama';
import { isRemoteName } from '@rama/hub';
import { parseCliArgs, usage, UsageError, type CliOptions } from './args.js';
import { DownloadError, defaultSources, ensureCached, stallTimeoutMs } from './download.js';
import { BUILTIN_MODEL, MODEL_NAMES } from './models.js';
import { cacheCommand, fetchNamed } from './cache.js';

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const out = (s: string) => process.stdout.write(s);
const err = (s: string) => process.stderr.write(s);

/** Runs the command; resolves to the exit code (0 ok, 1 runtime error, 2 usage error). */
export async function main(argv: readonly string[]): Promise<number> {
  if (argv[0] === 'serve') return serveCommand(argv.slice(1));
  if (argv[0] === 'pull' || argv[0] === 'ls' || argv[0] === 'rm') {
    try {
      return await cacheCommand(argv[0], argv.slice(1), { out, err, version: version() });
    } catch (e) {
      return report(e);
    }
  }
  try {
    const opts = parseCliArgs(argv);
    if (opts.help) return out(usage(version())), 0;
    if (opts.version) return out(`rama ${version()}\n`), 0;
    const { model, parts, tokenizer } = await resolveFiles(opts);
    const llama = await Llama.load({
      model: parts ?? model,
      tokenizer,
      backend: opts.backend,
      q80: opts.q80,
      threads: opts.threads,
      kvCacheType: opts.kvCache,
      // In chat, --step bounds the whole conversation (as in llama2.c): a KV
      // cache that long ends the chat with reason "context" exactly there.
      contextLength: opts.mode === 'chat' ? chatContext(model, opts.steps) : undefined,
    });
    try {
      if (opts.mode === 'chat') await chat(llama, opts, model);
      else await generate(llama, opts, model);
    } finally {
      llama.dispose();
    }
    return 0;
  } catch (e) {
    return report(e);
  }
}

/**
 * `rama serve`: @rama/server's command (its flags, its drain on SIGTERM),
 * with the built-in model when no -m is given.
 */
async function serveCommand(argv: readonly string[]): Promise<number> {
  try {
    const { main: serverMain } = await import('@rama/server');
    const named = (flag: string, long: string) => argv.some((a) => a === flag || a === long || a.startsWith(`${long}=`));
    const withModel = named('-m', '--model') ? [...argv] : ['-m', BUILTIN_MODEL.model, ...(named('-t', '--tokenizer') ? [] : ['-t', BUILTIN_MODEL.tokenizer]), ...argv];
    return await serverMain(withModel, { program: 'rama serve', stdout: out, stderr: err, env: process.env });
  } catch (e) {
    return report(e);
  }
}

/** One line on stderr, never a stack trace (RAMA_DEBUG=1 adds it). */
function report(e: unknown): number {
  const line = (m: string) => err(`rama: error: ${m.replace(/\s*\n\s*/g, ' ').trim()}\n`);
  if (e instanceof UsageError) {
    line(e.message);
    return 2;
  }
  const error = e as Error & { code?: unknown; path?: unknown; syscall?: unknown };
  if (e instanceof RamaError || e instanceof DownloadError) line(error.message);
  else if (error?.code === 'ENOENT' && typeof error.path === 'string') line(`file not found: ${error.path}`);
  else line(error?.message ?? String(e));
  if (process.env.RAMA_DEBUG && error?.stack) {
    err(`${error.stack}\n`);
    // The cause keeps what a library saw underneath (for WebGPU: Dawn's own diagnostics).
    const cause = (error as { cause?: { message?: string } }).cause;
    if (cause) err(`caused by: ${cause.message ?? String(cause)}\n`);
  }
  return 1;
}

/** Whether `path` exists (as anything); a file that is not a regular file is refused by checkFile. */
function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A given path must be a regular file. */
function checkFile(what: 'model' | 'tokenizer', path: string, hint = ''): void {
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    throw new RamaError('E_NOT_FOUND', `${what} file not found: ${path}${hint}`);
  }
  if (!isFile) throw new RamaError('E_NOT_FOUND', `${what} path is not a file: ${path}`);
}

/**
 * The model and tokenizer. -m: a file, else a name (aidreams260K, built in;
 * stories15M, downloaded once); without -m, the built-in model, unless
 * --model-url says what to download. -t: a file; without it, the built-in
 * tokenizer for the built-in model (unless --tokenizer-url is given), else the
 * Llama 2 tokenizer.bin, downloaded once.
 */
async function resolveFiles(opts: CliOptions): Promise<{ model: string; parts?: string[]; tokenizer?: string }> {
  let model: string | undefined;
  let parts: string[] | undefined;
  let builtin = false;
  if (opts.model !== undefined && isRemoteName(opts.model) && !exists(opts.model)) {
    // hf:owner/repo/file or a URL: from the cache, downloaded first when missing (a split GGUF: every part).
    parts = await fetchNamed(opts.model);
    model = parts[0];
    if (parts.length === 1) parts = undefined;
    if (isGGUF(model)) return { model, parts, tokenizer: opts.tokenizer === undefined ? undefined : await localOrNamed('tokenizer', opts.tokenizer) };
  } else if (opts.model !== undefined && (exists(opts.model) || !MODEL_NAMES.includes(opts.model))) {
    checkFile('model', opts.model, ` (or a model name: ${MODEL_NAMES.join(', ')})`);
    model = opts.model;
    // A GGUF file carries its tokenizer (Llama.load refuses a -t beside it).
    if (isGGUF(model)) return { model, tokenizer: opts.tokenizer };
  } else if (opts.model === BUILTIN_MODEL.name || (opts.model === undefined && opts.modelUrl === undefined)) {
    builtin = true;
    model = BUILTIN_MODEL.model;
  }
  let tokenizer: string | undefined;
  if (opts.tokenizer !== undefined) {
    tokenizer = await localOrNamed('tokenizer', opts.tokenizer);
  } else if (builtin && opts.tokenizerUrl === undefined) {
    tokenizer = BUILTIN_MODEL.tokenizer;
  }
  if (model !== undefined && tokenizer !== undefined) return { model, parts, tokenizer };
  // Something to download: `-m stories15M`, --model-url, or the Llama 2 tokenizer.
  const sources = defaultSources(opts);
  const cache = { progress: process.stderr, stallMs: stallTimeoutMs() };
  model ??= await ensureCached(sources.model, cache);
  tokenizer ??= await ensureCached(sources.tokenizer, cache);
  return { model, parts, tokenizer };
}

/** -t: a file, or a name (hf:, URL) fetched like -m. */
async function localOrNamed(what: 'tokenizer', value: string): Promise<string> {
  if (isRemoteName(value) && !exists(value)) {
    const files = await fetchNamed(value);
    if (files.length !== 1) throw new RamaError('E_ARGUMENT', `${what} ${value} names ${files.length} files; a tokenizer is one file`);
    return files[0];
  }
  checkFile(what, value);
  return value;
}

/**
 * The chat's KV cache length: --step when it is below the model's seq_len
 * (read from the checkpoint header: int32 seq_len at byte 24, or at byte 32
 * after a v1/v2 file's "ak42" magic and version), else the default.
 */
function chatContext(model: string, steps: number): number | undefined {
  if (steps === 0 || isGGUF(model)) return undefined;
  const header = Buffer.alloc(36);
  const fd = openSync(model, 'r');
  try {
    if (readSync(fd, header, 0, 36, 0) < 36) return undefined;
  } finally {
    closeSync(fd);
  }
  const seqLen = header.readInt32LE(header.readUInt32LE(0) === 0x616b3432 ? 32 : 24);
  return seqLen > 0 && steps < seqLen ? steps : undefined;
}

/** Whether the file starts with GGUF's magic. */
function isGGUF(path: string): boolean {
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  try {
    return readSync(fd, head, 0, 4, 0) === 4 && head.toString('latin1') === 'GGUF';
  } finally {
    closeSync(fd);
  }
}

function samplerOptions(opts: CliOptions) {
  return {
    temperature: opts.temperature,
    topp: opts.topp,
    topk: opts.topk,
    minp: opts.minp,
    repetitionPenalty: opts.repeatPenalty,
    seed: opts.seed ?? Date.now(),
  };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/** The JSON fields every line shares: timing, model and backend. */
function describeRun(llama: Llama, modelPath: string, r: GenerationResult, seed: number) {
  const c = llama.config;
  const t = r.timing;
  return {
    stop_reason: r.reason,
    prompt_tokens: r.promptTokens,
    generated_tokens: r.generatedTokens,
    tokens_per_second: round(t.tokensPerSecond),
    timing: {
      prompt_ms: round(t.promptMs),
      generate_ms: round(t.generateMs),
      time_to_first_token_ms: round(t.timeToFirstTokenMs),
      prompt_tokens_per_second: round(t.promptTokensPerSecond),
      tokens_per_second: round(t.tokensPerSecond),
    },
    seed,
    model: {
      path: modelPath,
      format: llama.format,
      quantized: llama.quantized,
      context_length: llama.contextLength,
      kv_cache_type: llama.kvCacheType,
      dim: c.dim,
      hidden_dim: c.hiddenDim,
      n_layers: c.nLayers,
      n_heads: c.nHeads,
      n_kv_heads: c.nKvHeads,
      vocab_size: c.vocabSize,
      seq_len: c.seqLen,
      shared_classifier: c.sharedClassifier,
    },
    backend: { name: llama.backend.name, description: llama.backend.description },
  };
}

async function generate(llama: Llama, opts: CliOptions, modelPath: string): Promise<void> {
  const sampling = samplerOptions(opts);
  const gen = llama.generate(opts.prompt, { steps: opts.steps, ...sampling });
  for await (const t of gen) if (!opts.json) out(t.text);
  const r = await gen.result();
  if (opts.json) {
    out(`${JSON.stringify({ mode: 'generate', prompt: opts.prompt, tokens: r.tokens, text: r.text, ...describeRun(llama, modelPath, r, sampling.seed) })}\n`);
  } else {
    out('\n');
    if (r.tokens.length > 1) err(`achieved tok/s: ${r.timing.tokensPerSecond.toFixed(6)}\n`);
  }
}

/**
 * Chat: one turn per line of input. As in llama2.c, --step bounds the whole
 * conversation's positions; when they run out, the chat ends.
 */
async function chat(llama: Llama, opts: CliOptions, modelPath: string): Promise<void> {
  const limit = llama.contextLength;
  const sampling = samplerOptions(opts);
  const tty = !!process.stdin.isTTY;
  // On a terminal the prompt goes where a person reads it; --json keeps stdout for JSON.
  const promptOut = opts.json ? process.stderr : process.stdout;
  const rl = createInterface({ input: process.stdin, output: tty ? promptOut : undefined, terminal: tty, crlfDelay: Infinity });
  rl.setPrompt('User: ');
  let running: AbortController | undefined;
  // Ctrl-C stops a reply in progress; at the prompt (like Ctrl-D) it ends the chat.
  let atPrompt = false;
  rl.on('SIGINT', () => (running ? running.abort() : rl.close()));
  rl.on('close', () => atPrompt && promptOut.write('\n')); // leave the shell on a fresh line

  let pos = 0;
  let turn = 0;
  let sampled = 0;
  let sampleMs = 0;
  const lines = rl[Symbol.asyncIterator]();
  try {
    for (;;) {
      let message: string;
      if (turn === 0 && opts.prompt) {
        message = opts.prompt;
        if (!opts.json) out(`User: ${message}\n`);
      } else {
        if (tty) rl.prompt();
        atPrompt = tty;
        const next = await lines.next();
        atPrompt = false;
        if (next.done) break;
        message = next.value;
        if (!message.trim()) continue;
        if (!tty && !opts.json) out(`User: ${message}\n`);
      }
      running = new AbortController();
      // llama2.c's chat: the step limit (-s) ends the conversation, so no context shift here.
      const gen = llama.chat(message, { ...sampling, system: turn === 0 ? opts.system : undefined, signal: running.signal, contextShift: false });
      if (!opts.json) out('Assistant: ');
      for await (const t of gen) if (!opts.json) out(t.text);
      const r = await gen.result();
      running = undefined;
      // Positions this turn ran: its prompt, then one per sampled token but the last.
      const start = pos;
      pos += r.promptTokens + Math.max(0, r.generatedTokens - 1);
      turn++;
      if (r.generatedTokens > 1) {
        sampled += r.generatedTokens - 1;
        sampleMs += r.timing.generateMs;
      }
      const full = r.reason === 'context' || pos >= limit;
      if (opts.json) {
        out(`${JSON.stringify({ mode: 'chat', turn, user: message, tokens: r.tokens, text: r.text, position: { start, end: pos }, ...describeRun(llama, modelPath, r, sampling.seed) })}\n`);
      } else {
        out('\n');
      }
      if (full) {
        if (!opts.json) err(`rama: the conversation reached the step limit (${limit} position${limit === 1 ? '' : 's'})\n`);
        break;
      }
    }
  } finally {
    rl.close();
  }
  if (!opts.json && sampled > 0) err(`achieved tok/s: ${((sampled / sampleMs) * 1000).toFixed(6)}\n`);
}
