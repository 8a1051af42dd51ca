/**
 * The worker engine's protocol in Node: `serve` on one end of a MessageChannel
 * stands in for the Web Worker (the browser tests in examples/web run the real
 * one). What comes out must be what the in-page Llama gives, and llama2.c's
 * golden where there is one.
 */
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateGoldens, missingMessage, sharedFile, startFakeHub } from '@rama/testkit';
import { AbortError, ArgumentError, BackendError, FormatError, Llama } from '../index.js';
import { createWorkerLlama, serve, type LoadProgress, type WorkerLike, type WorkerLlama, WorkerStartError } from './index.js';

const MODEL = 'models/aidreams260K.bin';
const TOKENIZER = 'models/tok512-aidreams.bin';
const modelPath = sharedFile(MODEL);
const tokenizerPath = sharedFile(TOKENIZER);
const golden = generateGoldens().find((g) => g.id === 'aidreams-greedy-bos');
const skip = !modelPath ? missingMessage(MODEL) : !tokenizerPath ? missingMessage(TOKENIZER) : !golden ? missingMessage('goldens/generate.jsonl') : undefined;

/** A worker stand-in: the engine served on one end of a channel, the page on the other. */
function channelWorker(): WorkerLike & { terminated: boolean } {
  const { port1, port2 } = new MessageChannel();
  serve(port2 as never);
  const w = port1 as unknown as WorkerLike & { terminated: boolean };
  w.terminated = false;
  w.terminate = () => {
    w.terminated = true;
    port1.close();
    port2.close();
  };
  return w;
}

const bytes = (path: string) => new Uint8Array(readFileSync(path));

describe('createWorkerLlama (over a MessageChannel)', () => {
  let reference: Llama;
  let remote: WorkerLlama;
  let worker: ReturnType<typeof channelWorker>;
  let server: Server | undefined;

  beforeAll(async () => {
    if (skip) return;
    reference = await Llama.load({ model: modelPath!, tokenizer: tokenizerPath!, sessions: 2 });
    worker = channelWorker();
    remote = await createWorkerLlama({ model: bytes(modelPath!), tokenizer: bytes(tokenizerPath!), sessions: 2, worker });
  });

  afterAll(async () => {
    reference?.dispose();
    remote?.dispose();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
  });

  it('generates llama2.c\'s golden exactly, streamed as the in-page Generation is', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const g = golden!;
    const gen = remote.generate(g.prompt, { steps: g.steps, temperature: g.temperature, topp: g.topp, seed: g.seed });
    let streamed = '';
    for await (const t of gen) streamed += t.text;
    const r = await gen.result();
    expect(r.tokens).toEqual(g.tokens);
    expect(r.text).toBe(g.text);
    expect(streamed).toBe(g.text);
  });

  it('describes the model and backend as the in-page Llama does', (ctx) => {
    if (skip) return ctx.skip(skip);
    expect(remote.config).toEqual(reference.config);
    expect(remote.spec.vocabSize).toBe(reference.spec.vocabSize);
    expect(remote.contextLength).toBe(reference.contextLength);
    expect(remote.sessions).toBe(2);
    expect(remote.backend.name).toBe(reference.backend.name);
    expect(remote.backend.description).toBe(reference.backend.description);
  });

  it('tokenize, countTokens and detokenize give what Llama gives', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const text = 'Once upon a time, a cat sat.';
    const ids = reference.tokenize(text);
    expect(await remote.tokenize(text)).toEqual(ids);
    expect(await remote.tokenize(text, { bos: false, eos: true })).toEqual(reference.tokenize(text, { bos: false, eos: true }));
    expect(await remote.countTokens(text)).toBe(ids.length);
    expect(await remote.detokenize(ids)).toBe(text);
  });

  it('sampled generation with a seed, logits and logprobs match the in-page run', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const opts = { steps: 40, temperature: 0.8, topp: 0.9, seed: 7, logits: true, logprobs: true, topLogprobs: 3 };
    const local = await reference.generate('A dog', opts);
    const here: unknown[] = [];
    for await (const t of local) here.push(t);
    const there: unknown[] = [];
    const gen = remote.generate('A dog', opts);
    for await (const t of gen) there.push(t);
    expect(there).toEqual(here);
    const r = await gen.result();
    expect(r.tokens).toEqual((await local.result()).tokens);
  });

  it('chat (a string, then whole messages) and sessions follow the in-page model', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const opts = { temperature: 0, maxTokens: 12 };
    const a = reference.session();
    const b = remote.session();
    try {
      for (const turn of ['Hi!', 'And then?']) {
        const want = await a.chat(turn, { ...opts, system: 'Be short.' }).result();
        const got = await b.chat(turn, { ...opts, system: 'Be short.' }).result();
        expect(got.text).toBe(want.text);
        expect(got.tokens).toEqual(want.tokens);
        expect(got.position).toBe(want.position);
      }
      expect(b.tokens).toEqual(a.tokens);
      const messages = [{ role: 'user' as const, content: 'Tell me a story' }];
      expect(await b.chat(messages, opts).text()).toBe(await a.chat(messages, opts).text());
      b.reset();
      a.reset();
      expect(await b.generate('The sun', { steps: 20, temperature: 0 }).text()).toBe(await a.generate('The sun', { steps: 20, temperature: 0 }).text());
      // One slot for this session, one for the default session (used above): no third.
      expect(() => remote.session()).toThrow(ArgumentError);
    } finally {
      a.dispose();
      b.dispose();
    }
    const c = remote.session();
    expect(await c.generate('Hi', { steps: 5, temperature: 0 }).text()).toBe(await reference.generate('Hi', { steps: 5, temperature: 0 }).text());
    c.dispose();
  });

  it('an AbortSignal stops the generation in the worker; breaking out ends it with reason "aborted"', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const ac = new AbortController();
    const ids: number[] = [];
    for await (const t of remote.generate('Once', { steps: 0, temperature: 0, echo: false, signal: ac.signal })) {
      ids.push(t.id);
      if (ids.length === 3) ac.abort();
    }
    // The worker runs at most a few tokens ahead of the consumer.
    expect(ids.length).toBeGreaterThanOrEqual(3);
    expect(ids.length).toBeLessThan(20);

    const pre = new AbortController();
    pre.abort();
    const r0 = await remote.generate('Once', { steps: 50, signal: pre.signal }).result();
    expect(r0.reason).toBe('aborted');
    expect(r0.generatedTokens).toBe(0);

    const g2 = remote.generate('Once', { steps: 0, temperature: 0, echo: false });
    let n = 0;
    for await (const _ of g2) if (++n === 2) break;
    const r = await g2.result();
    expect(r.reason).toBe('aborted');
    expect(r.generatedTokens).toBeLessThan(20);
    // The model is still usable.
    expect(await remote.generate('Once', { steps: 8, temperature: 0 }).text()).toBe(await reference.generate('Once', { steps: 8, temperature: 0 }).text());
  });

  it('errors thrown in the worker arrive as the same typed errors', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const bad = { steps: 5, temprature: 1 } as never;
    let want: unknown;
    try {
      reference.generate('x', bad);
    } catch (e) {
      want = e;
    }
    const got = await remote.generate('x', bad).result().catch((e: unknown) => e);
    expect(got).toBeInstanceOf(ArgumentError);
    expect((got as Error).message).toBe((want as Error).message);
    await expect(remote.detokenize([1, 999999])).rejects.toThrow(ArgumentError);
    const junk = new Uint8Array(64).fill(7);
    const e = await createWorkerLlama({ model: junk, tokenizer: bytes(tokenizerPath!), worker: channelWorker() }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(FormatError);
    expect(e).not.toBeInstanceOf(AbortError);
  });

  it('loads from URLs (fetched by the worker, with progress) and transfers bytes instead of copying', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const files: Record<string, string> = { '/m/model.bin': modelPath!, '/m/tok.bin': tokenizerPath! };
    server = createServer((req, res) => {
      const f = files[req.url ?? ''];
      if (!f) return void res.writeHead(404).end();
      res.writeHead(200, { 'Content-Length': statSync(f).size });
      createReadStream(f).pipe(res);
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const progress: LoadProgress[] = [];
    const w = channelWorker();
    const l = await createWorkerLlama({ model: new URL('/m/model.bin', base), tokenizer: `${base}/m/tok.bin`, worker: w, onProgress: (p) => progress.push(p) });
    try {
      const g = golden!;
      expect(await l.generate(g.prompt, { steps: g.steps, temperature: g.temperature }).text()).toBe(g.text);
      const size = statSync(modelPath!).size;
      expect(progress.some((p) => p.phase === 'download' && p.file === 'model' && p.loaded === size && p.total === size)).toBe(true);
      expect(progress.at(-1)!.phase).toBe('load');
    } finally {
      l.dispose();
    }
    const missing = await createWorkerLlama({ model: `${base}/m/nope.bin`, tokenizer: `${base}/m/tok.bin`, worker: channelWorker() }).catch((x: unknown) => x);
    expect((missing as Error).message).toMatch(/model: .*\/m\/nope\.bin: HTTP 404/);

    const m = bytes(modelPath!);
    const t = bytes(tokenizerPath!);
    const l2 = await createWorkerLlama({ model: m, tokenizer: t, worker: channelWorker() });
    expect(m.byteLength).toBe(0); // handed over
    l2.dispose();
    const kept = bytes(modelPath!);
    const l3 = await createWorkerLlama({ model: kept, tokenizer: bytes(tokenizerPath!), worker: channelWorker(), transfer: false });
    expect(kept.byteLength).toBe(size(modelPath!));
    l3.dispose();
  });

  it('a worker that dies fails the generation waiting on it and every later call, with a BackendError', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const w = channelWorker();
    const l = await createWorkerLlama({ model: bytes(modelPath!), tokenizer: bytes(tokenizerPath!), worker: w });
    const it = l.generate('Once', { steps: 0, temperature: 0 })[Symbol.asyncIterator]();
    await it.next();
    // What a Worker fires when its script throws outside any request, or it runs out of memory.
    (w as unknown as EventTarget).dispatchEvent(Object.assign(new Event('error'), { message: 'out of memory' }));
    const e = await (async () => {
      for (;;) if ((await it.next()).done) return undefined;
    })().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as Error).message).toBe('the engine worker failed: out of memory');
    await expect(l.tokenize('x')).rejects.toThrow('the engine worker failed');
    expect(() => l.session()).toThrow(BackendError);
    l.dispose();
  });

  it('an hf: name is downloaded (and cached) in the worker by @rama/hub, with progress', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const hub = await startFakeHub({ 'test/tiny': { files: { 'aidreams260K.bin': readFileSync(modelPath!), 'tok512-aidreams.bin': readFileSync(tokenizerPath!) } } });
    const cacheDir = mkdtempSync(join(tmpdir(), 'rama-worker-hub-'));
    try {
      const progress: LoadProgress[] = [];
      const l = await createWorkerLlama({
        model: 'hf:test/tiny/aidreams260K.bin',
        tokenizer: 'hf:test/tiny/tok512-aidreams.bin',
        hub: { endpoint: hub.endpoint, cacheDir },
        worker: channelWorker(),
        onProgress: (p) => progress.push(p),
      });
      try {
        const g = golden!;
        expect(await l.generate(g.prompt, { steps: g.steps, temperature: g.temperature }).text()).toBe(g.text);
      } finally {
        l.dispose();
      }
      const size = statSync(modelPath!).size;
      expect(progress.some((p) => p.phase === 'download' && p.file === 'aidreams260K.bin' && p.loaded === size)).toBe(true);
    } finally {
      await hub.close();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it('after dispose, calls are a BackendError and the worker is ended', async (ctx) => {
    if (skip) return ctx.skip(skip);
    const w = channelWorker();
    const l = await createWorkerLlama({ model: bytes(modelPath!), tokenizer: bytes(tokenizerPath!), worker: w });
    l.dispose();
    expect(() => l.generate('x')).toThrow(BackendError);
    await expect(l.tokenize('x')).rejects.toThrow(BackendError);
    for (let i = 0; i < 50 && !w.terminated; i++) await new Promise((r) => setTimeout(r, 20));
    expect(w.terminated).toBe(true);
  });
});

describe('createWorkerLlama: a worker that does not start', () => {
  it('is a BackendError naming the usual causes (CSP worker-src, module workers)', async () => {
    const target = new EventTarget();
    const fake: WorkerLike = {
      postMessage: () => {},
      addEventListener: (t, l) => target.addEventListener(t, l),
      removeEventListener: (t, l) => target.removeEventListener(t, l),
      terminate: () => {},
    };
    // A browser's error event for a refused worker script carries no message.
    setTimeout(() => target.dispatchEvent(new Event('error')), 10);
    const e = await createWorkerLlama({ model: new Uint8Array(8), tokenizer: new Uint8Array(8), worker: fake }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(WorkerStartError);
    expect(e).toBeInstanceOf(BackendError);
    expect((e as Error).name).toBe('WorkerStartError');
    expect((e as Error).message).toMatch(/cannot start the engine worker: .*worker-src.*module workers/);
  });

  it('refuses a Backend instance and a non-URL string without a page', async () => {
    await expect(createWorkerLlama({ model: 'x.bin', backend: {} as never })).rejects.toThrow(ArgumentError);
    await expect(createWorkerLlama({ model: 'relative/x.bin', worker: channelWorker() })).rejects.toThrow(/is not a URL/);
  });
});

function size(p: string): number {
  return statSync(p).size;
}
