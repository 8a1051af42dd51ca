/**
 * serve(): an HTTP server for one loaded Llama. Every generation request
 * borrows one of `parallel` sessions (the library decodes them together),
 * waits in a bounded line when all are busy, and gives its session back when
 * it ends, fails, or its client goes away (which aborts the generation).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ArgumentError, type ChatMessage, type GeneratedToken, type Generation, type GenerationResult, type Llama, type Session } from '@rama/llama';
import { HttpError, invalid, parseJsonObject, readBody, sendError, sendJson, startEvents, writeEvent } from './http.js';
import { ServerMetrics } from './metrics.js';
import {
  chatLogprobs, completionLogprobs, finishReason, parseChatRequest, parseCompletionRequest, tokenInfo,
  type ChatRequest, type CompletionRequest, type TokenInfo,
} from './openai.js';
import { PAGE } from './page.js';
import { PoolRefusal, SessionPool } from './pool.js';

/** Options of `serve`. */
export interface ServeOptions {
  /** Interface to listen on (default 127.0.0.1: loopback only; '0.0.0.0' for every interface). */
  host?: string;
  /** Port (default 0: any free port; the handle says which). */
  port?: number;
  /** Requests generating at once, each on its own session (default: the Llama's `sessions`). Load the Llama with at least this many. */
  parallel?: number;
  /** Requests that may wait for a session when all are busy (default 64); beyond it a 429 with Retry-After. */
  queue?: number;
  /** When set, every endpoint but `/health` and `/` needs `Authorization: Bearer <apiKey>` (else 401). */
  apiKey?: string;
  /** The model's name in `/v1/models` and in responses (default "rama"). Requests may name any model. */
  modelName?: string;
  /** Largest request body in bytes (default 1 MiB); beyond it a 413. */
  bodyLimit?: number;
  /** Most ms a client may take to send a request's headers (default 10 s): slowloris protection. */
  headersTimeout?: number;
  /** Most ms a client may take to send a whole request (default 30 s). Responses may take longer. */
  requestTimeout?: number;
  /** How long an idle keep-alive connection stays open, in ms (default 5 s). */
  keepAliveTimeout?: number;
  /** Most ms a stream may wait on a client that does not read (default 30 s); then it is cut off and its session freed. */
  stallTimeout?: number;
  /** Answer CORS preflights and allow any origin (default false). */
  cors?: boolean;
}

/** Options of `ServerHandle.close`. */
export interface CloseOptions {
  /**
   * How long running requests may go on before they are aborted, in ms
   * (default 0: abort at once). Meanwhile new requests and those still
   * waiting for a session get 503, and /health says "draining".
   */
  drainMs?: number;
}

/** A running server, as `serve` returns it. */
export interface ServerHandle {
  /** e.g. http://127.0.0.1:43125 */
  readonly url: string;
  /** The port it listens on (the one chosen when `port` was 0). */
  readonly port: number;
  /** The interface it listens on. */
  readonly host: string;
  /** The node:http server (for its events; do not close it directly). */
  readonly server: Server;
  /**
   * Stops: drains (see CloseOptions), then closes every connection and gives
   * the sessions back to the Llama, which the caller still owns (dispose it after).
   */
  close(opts?: CloseOptions): Promise<void>;
}

/** Endpoints by path, for routing, auth and the metrics' `endpoint` label. */
const ROUTES: Record<string, { methods: string[]; open?: boolean }> = {
  '/': { methods: ['GET', 'HEAD'], open: true },
  '/health': { methods: ['GET', 'HEAD'], open: true },
  '/metrics': { methods: ['GET'] },
  '/v1/models': { methods: ['GET'] },
  '/v1/chat/completions': { methods: ['POST'] },
  '/v1/completions': { methods: ['POST'] },
  '/gen': { methods: ['GET'] },
};

/** One generation in flight: how to cut it short, and when it is over. */
interface Job {
  abort(): void;
  done: Promise<void>;
}

/**
 * Serves `llama` over HTTP (OpenAI-compatible API, /gen, a page, /health, /metrics) and resolves
 * once it listens. Takes `parallel` sessions from the Llama; an ArgumentError for a bad option.
 */
export async function serve(llama: Llama, opts: ServeOptions = {}): Promise<ServerHandle> {
  const o = checkOptions(llama, opts);
  const sessions: Session[] = [];
  try {
    for (let i = 0; i < o.parallel; i++) sessions.push(llama.session());
  } catch (e) {
    for (const s of sessions) s.dispose();
    throw new ArgumentError(
      `serve: parallel ${o.parallel} needs ${o.parallel} free sessions, and the Llama had ${sessions.length} free of its ${llama.sessions} ` +
        `(other sessions, and the default one llama.generate/chat use, take slots too): load it with more sessions (${(e as Error).message})`,
    );
  }
  const metrics = new ServerMetrics();
  metrics.slots.set(o.parallel);
  const pool = new SessionPool(sessions, o.queue, () => {
    metrics.queueDepth.set(pool.waiting);
    metrics.active.set(pool.busy);
  });
  const jobs = new Set<Job>();
  /** Responses not yet finished, so that closing does not cut one mid-write. */
  const open = new Set<ServerResponse>();
  let draining = false;
  const keyHash = o.apiKey === undefined ? undefined : sha256(o.apiKey);
  const created = Math.floor(Date.now() / 1000);

  const server = createServer(
    {
      headersTimeout: o.headersTimeout,
      requestTimeout: o.requestTimeout,
      keepAliveTimeout: o.keepAliveTimeout,
      // Timeouts are enforced when connections are checked: often enough that they hold to about a second.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, o.headersTimeout / 4)),
    },
    (req, res) => {
      handle(req, res).catch((e) => {
        // A bug or a broken socket: answer if we still can, never crash the server.
        if (!res.headersSent && !res.destroyed) sendError(res, new HttpError(500, `Internal error: ${(e as Error)?.message ?? e}`));
        else res.destroy();
      });
    },
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const path = pathOf(req.url);
    const route = ROUTES[path] ?? (path.startsWith('/v1/models/') ? ROUTES['/v1/models'] : undefined);
    const endpoint = route ? (path.startsWith('/v1/models/') ? '/v1/models/{id}' : path) : 'other';
    open.add(res);
    res.on('close', () => {
      open.delete(res);
      metrics.requests.inc({ endpoint, status: String(res.writableFinished ? res.statusCode : 499) });
    });
    if (o.cors) {
      res.setHeader('access-control-allow-origin', '*');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          'access-control-allow-methods': 'GET, POST, OPTIONS',
          'access-control-allow-headers': 'authorization, content-type',
          'access-control-max-age': '86400',
        });
        res.end();
        return;
      }
    }
    if (draining) res.setHeader('connection', 'close');
    try {
      if (!route) throw new HttpError(404, `No such endpoint: ${req.method} ${path}`, null, 'not_found');
      if (!route.methods.includes(req.method ?? '')) {
        throw new HttpError(405, `${req.method} is not allowed on ${path} (allowed: ${route.methods.join(', ')})`, null, 'method_not_allowed', 'invalid_request_error', {
          allow: route.methods.join(', '),
        });
      }
      if (!route.open && keyHash && !authorized(req.headers.authorization, keyHash)) {
        throw new HttpError(401, 'Incorrect or missing API key: send it as "Authorization: Bearer <key>".', null, 'invalid_api_key', 'invalid_request_error', {
          'www-authenticate': 'Bearer',
        });
      }
      if (path === '/health') {
        sendJson(res, draining ? 503 : 200, { status: draining ? 'draining' : 'ok' });
        return;
      }
      if (path === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(PAGE) });
        res.end(req.method === 'HEAD' ? undefined : PAGE);
        return;
      }
      if (path === '/metrics') {
        const text = metrics.render();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
        return;
      }
      if (path === '/v1/models') {
        sendJson(res, 200, { object: 'list', data: [modelCard()] });
        return;
      }
      if (path.startsWith('/v1/models/')) {
        const id = decodeURIComponentSafe(path.slice('/v1/models/'.length));
        if (id !== o.modelName) throw new HttpError(404, `The model '${id}' does not exist (this server has '${o.modelName}').`, 'model', 'model_not_found');
        sendJson(res, 200, modelCard());
        return;
      }
      if (draining) throw new HttpError(503, 'The server is shutting down.', null, 'server_shutting_down');
      if (path === '/gen') {
        await simple(req, res, t0);
        return;
      }
      const body = parseJsonObject(await readBody(req, o.bodyLimit));
      const parsed = path === '/v1/chat/completions' ? parseChatRequest(body) : parseCompletionRequest(body, llama.spec.vocabSize);
      await completion(res, parsed, t0);
    } catch (e) {
      if (e instanceof HttpError) {
        sendError(res, e);
      } else if (res.destroyed || req.destroyed) {
        // The client went away while sending (ECONNRESET): nobody to answer.
      } else throw e;
    }
  }

  function modelCard() {
    return { id: o.modelName, object: 'model', created, owned_by: 'rama', context_length: llama.contextLength };
  }

  /**
   * Runs `start` on a borrowed session: waits for one (429 when the line is
   * full, 503 when closing), aborts when the client goes away, and hands the
   * session back when the generation is over. `body` consumes the generation;
   * library errors thrown before anything was sent become 400s.
   */
  async function withSession(
    res: ServerResponse,
    t0: number,
    start: (s: Session, signal: AbortSignal) => Generation,
    param: string,
    body: (gen: RunningGeneration) => Promise<void>,
    want?: readonly number[],
  ): Promise<void> {
    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort();
    };
    res.on('close', onClose);
    let session: Session;
    try {
      session = await pool.acquire(ac.signal, want);
    } catch (e) {
      if (!(e instanceof PoolRefusal)) throw e;
      if (e.why === 'full') {
        metrics.rejected.inc();
        throw new HttpError(429, `The server is busy: ${o.parallel} requests are generating and ${o.queue} waiting. Retry later.`, null, 'rate_limit_exceeded', 'rate_limit_error', {
          'retry-after': '1',
        });
      }
      if (e.why === 'closing') throw new HttpError(503, 'The server is shutting down.', null, 'server_shutting_down');
      return; // the client left while waiting
    }
    let finish!: () => void;
    const job: Job = { abort: () => ac.abort(), done: new Promise<void>((r) => (finish = r)) };
    jobs.add(job);
    let it: AsyncIterator<GeneratedToken> | undefined;
    try {
      let gen: Generation;
      try {
        gen = start(session, ac.signal);
        it = gen[Symbol.asyncIterator]();
        // The first token (or the end) before any answer: an over-long prompt is a 400, not a broken stream.
        const first = await it.next();
        await body(new RunningGeneration(gen, it, first, t0, metrics));
      } catch (e) {
        throw libraryError(e, param);
      }
    } finally {
      res.off('close', onClose);
      // Ends the generation if the body stopped early (the client left), so the session is free for the next.
      await it?.return?.(undefined).catch(() => {});
      pool.release(session);
      jobs.delete(job);
      finish();
    }
  }

  async function completion(res: ServerResponse, r: ChatRequest | CompletionRequest, t0: number): Promise<void> {
    const id = `${r.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    const createdAt = Math.floor(Date.now() / 1000);
    const model = o.modelName;
    const lib = {
      temperature: r.temperature,
      topp: r.topp,
      ...(r.seed !== undefined && { seed: r.seed }),
      ...(r.maxTokens !== undefined && { maxTokens: r.maxTokens }),
      ...(r.stop.length > 0 && { stop: r.stop }),
      ...(r.logprobs && { logprobs: true, topLogprobs: r.topLogprobs }),
    };
    // decodePiece needs the token before: only BOS changes a piece (its leading space goes).
    let prev = r.kind === 'completion' ? lastPromptToken(r.prompt) : -1;
    const info = (t: GeneratedToken): TokenInfo | undefined => {
      if (t.logprob === undefined) return undefined;
      const ti = tokenInfo(t, llama.tokenizer.decodePiece(prev, t.id));
      prev = t.id;
      return ti;
    };
    const echo = r.kind === 'completion' && r.echo ? (typeof r.prompt === 'string' ? r.prompt : llama.detokenize(r.prompt)) : '';
    const start = (s: Session, signal: AbortSignal) =>
      r.kind === 'chat' ? s.chat(r.messages, { ...lib, signal }) : s.generate(r.prompt, { ...lib, signal, steps: 0, echo: false, stopAtEos: true });
    const usageOf = (res: GenerationResult) => {
      const prompt = res.position + res.promptTokens;
      return {
        prompt_tokens: prompt,
        completion_tokens: res.generatedTokens,
        total_tokens: prompt + res.generatedTokens,
        prompt_tokens_details: { cached_tokens: res.position },
      };
    };

    await withSession(res, t0, start, r.kind === 'chat' ? 'messages' : 'prompt', async (g) => {
      if (!r.stream) {
        const infos: TokenInfo[] = [];
        for await (const t of g.tokens()) {
          const ti = info(t);
          if (ti) infos.push(ti);
        }
        const result = await g.result();
        const text = echo + result.text;
        // The tokens of a stop string are not part of the text: neither are their logprobs.
        if (result.reason === 'stop') {
          let covered = 0;
          const kept = infos.findIndex((i) => (covered += i.token.length) >= result.text.length);
          infos.splice(result.text.length === 0 ? 0 : kept < 0 ? infos.length : kept + 1);
        }
        const logprobs = r.logprobs ? (r.kind === 'chat' ? chatLogprobs(infos) : completionLogprobs(infos, r.topLogprobs, echo.length)) : null;
        const choice =
          r.kind === 'chat'
            ? { index: 0, message: { role: 'assistant', content: text, refusal: null }, logprobs, finish_reason: finishReason(result.reason) }
            : { text, index: 0, logprobs, finish_reason: finishReason(result.reason) };
        const object = r.kind === 'chat' ? 'chat.completion' : 'text_completion';
        if (!res.destroyed) sendJson(res, 200, { id, object, created: createdAt, model, choices: [choice], usage: usageOf(result) });
        return;
      }

      startEvents(res, o.stallTimeout);
      const object = r.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
      const usage = r.includeUsage ? { usage: null } : {};
      const chunk = (choice: Record<string, unknown>) =>
        writeEvent(res, JSON.stringify({ id, object, created: createdAt, model, choices: [{ index: 0, ...choice }], ...usage }));
      let offset = echo.length;
      if (r.kind === 'chat') await chunk({ delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
      else if (echo) await chunk({ text: echo, logprobs: null, finish_reason: null });
      for await (const t of g.tokens()) {
        if (res.destroyed) break;
        const ti = info(t);
        if (!t.text && !ti) continue; // text held back (a character or a stop string still arriving)
        const logprobs = ti ? (r.kind === 'chat' ? chatLogprobs([ti]) : completionLogprobs([ti], r.topLogprobs, offset)) : null;
        offset += t.text.length;
        await chunk(r.kind === 'chat' ? { delta: { content: t.text }, logprobs, finish_reason: null } : { text: t.text, logprobs, finish_reason: null });
      }
      if (res.destroyed) return;
      const result = await g.result();
      const fr = finishReason(result.reason);
      await chunk(r.kind === 'chat' ? { delta: {}, logprobs: null, finish_reason: fr } : { text: '', logprobs: null, finish_reason: fr });
      if (r.includeUsage) await writeEvent(res, JSON.stringify({ id, object, created: createdAt, model, choices: [], usage: usageOf(result) }));
      await writeEvent(res, '[DONE]');
      res.end();
    }, r.kind === 'chat' ? conversationTokens(r.messages) : undefined);
  }

  /**
   * The tokens a chat request's conversation reads, rendered as the library's
   * session.chat(messages) renders them (its chat template, turn by turn), so
   * that the pool can lend the session whose cache already holds the longest
   * part of them. Only a hint: a conversation the library will refuse renders
   * as far as it is well formed.
   */
  function conversationTokens(messages: readonly ChatMessage[]): number[] {
    const { tokenizer, spec } = llama;
    const t = spec.chatTemplate;
    let i = 0;
    const system = messages[0]?.role === 'system' ? messages[i++].content : undefined;
    const out: number[] = [];
    for (let turn = 0; i < messages.length && messages[i].role === 'user'; turn++) {
      out.push(...tokenizer.encode(t.userTurn(messages[i++].content, turn === 0 ? system : undefined), { bos: t.bosPerTurn, eos: false }));
      if (i >= messages.length || messages[i].role !== 'assistant') break;
      out.push(...tokenizer.encode(t.assistantTurn(messages[i++].content), { bos: false, eos: t.eosPerReply }));
    }
    return out;
  }

  /** The last token generate reads before sampling: BOS for an empty prompt. */
  function lastPromptToken(prompt: string | number[]): number {
    const ids = typeof prompt === 'string' ? llama.tokenize(prompt) : prompt;
    return ids[ids.length - 1];
  }

  /**
   * GET /gen?prompt=...: Rama's own streaming API. Each token is an SSE
   * `data: {"id","text"}`; the last event, `end`, says why it stopped, with
   * counts and speed. Options: steps (positions, prompt included; default
   * 256), max_tokens, temperature (default 1), topp (0.9), seed, chat=1
   * (the model's chat template), system (with chat).
   */
  async function simple(req: IncomingMessage, res: ServerResponse, t0: number): Promise<void> {
    const q = queryOf(req.url ?? '');
    const prompt = q.get('prompt');
    if (prompt === null) throw invalid('prompt', "The query parameter 'prompt' is required: /gen?prompt=...", 'missing_required_parameter');
    const number = (name: string, integer: boolean, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined => {
      const v = q.get(name);
      if (v === null || v === '') return undefined;
      const n = Number(v);
      if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
        throw invalid(name, `'${name}' must be ${integer ? 'an integer' : 'a number'} in ${min}..${max}, got ${JSON.stringify(v)}.`, 'invalid_value');
      }
      return n;
    };
    const steps = number('steps', true, 0);
    const maxTokens = number('max_tokens', true, 1);
    const temperature = number('temperature', false, 0, 100);
    const topp = number('topp', false, 0, 1);
    let seed = number('seed', true, Number.MIN_SAFE_INTEGER);
    if (seed === 0) seed = 0x5eed;
    const chat = ['1', 'true', 'yes'].includes(q.get('chat') ?? '');
    const system = q.get('system') ?? undefined;
    const common = {
      ...(temperature !== undefined && { temperature }),
      ...(topp !== undefined && { topp }),
      ...(seed !== undefined && { seed }),
      ...(maxTokens !== undefined && { maxTokens }),
    };
    const messages: ChatMessage[] = [...(system ? [{ role: 'system' as const, content: system }] : []), { role: 'user' as const, content: prompt }];
    const start = (s: Session, signal: AbortSignal) =>
      chat
        ? s.chat(messages, { ...common, signal })
        : s.generate(prompt, { ...common, signal, echo: false, ...(steps !== undefined && { steps }) });
    await withSession(res, t0, start, 'prompt', async (g) => {
      startEvents(res, o.stallTimeout);
      for await (const t of g.tokens()) {
        if (res.destroyed) return;
        if (t.text) await writeEvent(res, JSON.stringify({ id: t.id, text: t.text }));
      }
      if (res.destroyed) return;
      const r = await g.result();
      await writeEvent(
        res,
        JSON.stringify({
          reason: r.reason,
          prompt_tokens: r.position + r.promptTokens,
          completion_tokens: r.generatedTokens,
          time_to_first_token_ms: r.timing.timeToFirstTokenMs,
          tokens_per_second: r.timing.tokensPerSecond,
        }),
        'end',
      );
      res.end();
    }, chat ? conversationTokens(messages) : undefined);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((e) => {
    for (const s of sessions) s.dispose();
    throw e;
  });

  const port = (server.address() as AddressInfo).port;
  const hostForUrl = o.host.includes(':') ? `[${o.host}]` : o.host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${hostForUrl}:${port}`,
    port,
    host: o.host,
    server,
    close(copts: CloseOptions = {}) {
      const drainMs = copts.drainMs ?? 0;
      if (typeof drainMs !== 'number' || !(drainMs >= 0)) throw new ArgumentError(`close: drainMs must be a number >= 0, got ${String(drainMs)}`);
      closed ??= (async () => {
        draining = true;
        pool.close();
        server.closeIdleConnections();
        const running = () => Promise.all([...jobs].map((j) => j.done));
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([running(), new Promise<void>((r) => (timer = setTimeout(r, drainMs)))]);
        clearTimeout(timer);
        for (const j of jobs) j.abort();
        await running();
        // Answers being written (the last events of a stream, 503s) get a moment to reach their clients.
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const grace = Date.now() + 1000;
        while (open.size > 0 && Date.now() < grace) await new Promise((r) => setTimeout(r, 10));
        server.closeAllConnections();
        await stopped;
        for (const s of sessions) s.dispose();
      })();
      return closed;
    },
  };
}

/**
 * A generation being consumed: the token already taken (to catch errors
 * before answering), then the rest; records time to first token, tokens and
 * speed in the metrics once.
 */
class RunningGeneration {
  private recorded = false;
  constructor(
    private readonly gen: Generation,
    private readonly it: AsyncIterator<GeneratedToken>,
    private readonly first: IteratorResult<GeneratedToken>,
    private readonly t0: number,
    private readonly metrics: ServerMetrics,
  ) {}

  async *tokens(): AsyncGenerator<GeneratedToken> {
    let r = this.first;
    let seen = false;
    while (!r.done) {
      if (!seen && !r.value.prompt) {
        seen = true;
        this.metrics.ttft.observe((performance.now() - this.t0) / 1000);
      }
      yield r.value;
      r = await this.it.next();
    }
  }

  async result(): Promise<GenerationResult> {
    const r = await this.gen.result();
    if (!this.recorded) {
      this.recorded = true;
      this.metrics.promptTokens.inc({}, r.promptTokens);
      this.metrics.completionTokens.inc({}, r.generatedTokens);
      if (r.generatedTokens >= 2) this.metrics.tokensPerSecond.observe(r.timing.tokensPerSecond);
      this.metrics.duration.observe((performance.now() - this.t0) / 1000);
    }
    return r;
  }
}

/** A library error as an HTTP error: bad input (ArgumentError) is a 400, anything else a 500. */
function libraryError(e: unknown, param: string): unknown {
  if (e instanceof HttpError) return e;
  if (e instanceof ArgumentError) {
    const long = /longer than the context/.test(e.message);
    return invalid(param, e.message, long ? 'context_length_exceeded' : 'invalid_value');
  }
  const err = e as Error;
  return new HttpError(500, `Generation failed: ${err?.message ?? String(e)}`, null, (err as { code?: string })?.code ?? null);
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** Compares hashes in constant time, so the key's length and prefix do not leak through timing. */
function authorized(header: string | undefined, keyHash: Buffer): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '');
  return m !== null && timingSafeEqual(sha256(m[1].trim()), keyHash);
}

function pathOf(url: string | undefined): string {
  const raw = url ?? '/';
  const q = raw.indexOf('?');
  const p = q >= 0 ? raw.slice(0, q) : raw;
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/** The query string's parameters; 400 when it holds a percent-escape that is not UTF-8 (URLSearchParams would hide it as U+FFFD). */
function queryOf(url: string): URLSearchParams {
  const q = url.indexOf('?');
  const raw = q >= 0 ? url.slice(q + 1) : '';
  for (const part of raw.split('&')) {
    try {
      decodeURIComponent(part.replace(/\+/g, ' '));
    } catch {
      throw invalid(null, 'The query string is not valid percent-encoded UTF-8.', 'invalid_encoding');
    }
  }
  return new URLSearchParams(raw);
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw invalid(null, 'The path is not valid percent-encoded UTF-8.', 'invalid_encoding');
  }
}

interface Checked {
  host: string;
  port: number;
  parallel: number;
  queue: number;
  apiKey?: string;
  modelName: string;
  bodyLimit: number;
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  stallTimeout: number;
  cors: boolean;
}

const KNOWN = [
  'host', 'port', 'parallel', 'queue', 'apiKey', 'modelName', 'bodyLimit', 'headersTimeout', 'requestTimeout', 'keepAliveTimeout', 'stallTimeout', 'cors',
];

function checkOptions(llama: Llama, opts: ServeOptions): Checked {
  if (llama === null || typeof llama !== 'object' || typeof (llama as Llama).session !== 'function') {
    throw new ArgumentError('serve: the first argument must be a loaded Llama (await Llama.load(...))');
  }
  if (opts === null || typeof opts !== 'object') throw new ArgumentError('serve: options must be an object');
  for (const k of Object.keys(opts)) if (!KNOWN.includes(k)) throw new ArgumentError(`serve: unknown option "${k}" (known: ${KNOWN.join(', ')})`);
  const int = (name: keyof ServeOptions, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const v = opts[name] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ArgumentError(`serve: ${name} must be an integer in ${min}..${max}, got ${String(v)}`);
    return v;
  };
  const text = (name: keyof ServeOptions, dflt: string | undefined): string | undefined => {
    const v = opts[name] ?? dflt;
    if (v !== undefined && (typeof v !== 'string' || v === '')) throw new ArgumentError(`serve: ${name} must be a non-empty string, got ${String(v)}`);
    return v as string | undefined;
  };
  const headersTimeout = int('headersTimeout', 10_000, 1);
  const requestTimeout = int('requestTimeout', Math.max(30_000, headersTimeout), 1);
  if (headersTimeout > requestTimeout) throw new ArgumentError('serve: headersTimeout must not exceed requestTimeout');
  if (opts.cors !== undefined && typeof opts.cors !== 'boolean') throw new ArgumentError('serve: cors must be true or false');
  return {
    host: text('host', '127.0.0.1')!,
    port: int('port', 0, 0, 65535),
    parallel: int('parallel', llama.sessions, 1),
    queue: int('queue', 64, 0),
    apiKey: text('apiKey', undefined),
    modelName: text('modelName', 'rama')!,
    bodyLimit: int('bodyLimit', 1 << 20, 1),
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: int('keepAliveTimeout', 5_000, 1),
    stallTimeout: int('stallTimeout', 30_000, 1),
    cors: opts.cors ?? false,
  };
}
