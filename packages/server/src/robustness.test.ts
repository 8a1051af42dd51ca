/**
 * Clients that go away at random times leave nothing behind, and close()
 * drains: running requests finish while new ones get 503.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama } from '@rama/llama';
import { serve, type ServerHandle } from './index.js';
import { loadModel, modelPaths, parseSse, post, prng, send, slowLlama } from './testing.js';

const MESSAGES = [
  { role: 'system', content: 'You are a dreamer.' },
  { role: 'user', content: 'Tell me about the sea.' },
];
const PROMPT = 'I dreamed of';

/** The requests compared before and after: greedy chat and completion, each streamed and not. */
const PROBES: [string, Record<string, unknown>][] = [
  ['/v1/chat/completions', { messages: MESSAGES, temperature: 0, max_tokens: 48 }],
  ['/v1/chat/completions', { messages: MESSAGES, temperature: 0, max_tokens: 48, stream: true }],
  ['/v1/completions', { prompt: PROMPT, temperature: 0, max_tokens: 48 }],
  ['/v1/completions', { prompt: PROMPT, temperature: 0, max_tokens: 48, stream: true }],
  ['/v1/chat/completions', { messages: MESSAGES, temperature: 0.8, seed: 7, max_tokens: 48 }],
];

/** A reply's text (streamed or not) and finish reason. */
async function probe(url: string, [path, body]: [string, Record<string, unknown>]): Promise<{ text: string; finish: string }> {
  const r = await post(url, path, body);
  expect(r.status).toBe(200);
  if (!body.stream) {
    const c = r.json().choices[0];
    return { text: c.message?.content ?? c.text, finish: c.finish_reason };
  }
  const events = parseSse(r.text);
  expect(events.at(-1)!.data).toBe('[DONE]');
  let text = '';
  let finish = '';
  for (const e of events.slice(0, -1)) {
    const c = JSON.parse(e.data).choices[0];
    text += c.delta?.content ?? c.text ?? '';
    finish = c.finish_reason ?? finish;
  }
  return { text, finish };
}

/** Clients that connect 3 ms apart and leave at random times. */
const CLIENTS = 100;

/** Promise.withResolvers, which Node 20 lacks. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function metric(url: string, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec((await send(url, '/metrics')).text);
  return Number(m?.[1]);
}

describe.skipIf(!modelPaths())('robustness', () => {
  let fresh: { text: string; finish: string }[];

  beforeAll(async () => {
    // What a fresh server answers.
    const llama = await loadModel(2);
    const s = await serve(llama, { parallel: 2 });
    fresh = [];
    for (const p of PROBES) fresh.push(await probe(s.url, p));
    await s.close();
    llama.dispose();
  });

  describe('100 clients that disconnect at random times', () => {
    let llama: Llama;
    let server: ServerHandle;
    beforeAll(async () => {
      llama = await loadModel(2);
      server = await serve(llama, { parallel: 2, queue: 128 });
    });
    afterAll(async () => {
      await server?.close();
      llama?.dispose();
    });

    it('leave the server answering exactly what a fresh one does', async () => {
      const seed = Date.now() % 100_000;
      const random = prng(seed);
      const kinds = [
        ...PROBES,
        ['/v1/chat/completions', { messages: MESSAGES, temperature: 0, stream: true, logprobs: true, top_logprobs: 2 }],
        ['/v1/completions', { prompt: PROMPT, temperature: 1, stream: true }],
        ['/gen?prompt=I%20dreamed&steps=0', undefined],
      ] as [string, Record<string, unknown> | undefined][];
      const outcomes = await Promise.all(
        Array.from({ length: CLIENTS }, (_, i) => {
          const [path, body] = kinds[Math.floor(random() * kinds.length)];
          const delay = random() * 300;
          // Some leave while still sending their body, the others while waiting or reading.
          const partial = body !== undefined && random() < 0.25;
          return new Promise<string>((resolve) => setTimeout(resolve, i * 3)).then(() => new Promise<string>((resolve) => {
            let got = -1; // bytes of response read; -1: no response yet
            const req = request(`${server.url}${path}`, { method: body ? 'POST' : 'GET', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
              got = 0;
              res.on('data', (d) => (got += d.length));
              res.on('end', () => resolve('finished'));
            });
            const left = () => resolve(got < 0 ? 'left before the answer' : `left after ${got} bytes`);
            req.on('error', left);
            req.on('close', left);
            if (body) {
              const text = JSON.stringify(body);
              if (partial) {
                req.setHeader('content-length', Buffer.byteLength(text));
                req.write(text.slice(0, text.length >> 1));
              } else req.end(text);
            } else req.end();
            setTimeout(() => req.destroy(), delay);
          }));
        }),
      );
      expect(outcomes).toHaveLength(CLIENTS);
      if (process.env.RAMA_SERVER_DEBUG) console.log(outcomes.join(", "));
      // Every generation ends and gives its session back.
      for (let t = 0; t < 100 && ((await metric(server.url, 'rama_active_sequences')) !== 0 || (await metric(server.url, 'rama_queue_depth')) !== 0); t++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await metric(server.url, 'rama_active_sequences'), `seed ${seed}`).toBe(0);
      expect(await metric(server.url, 'rama_queue_depth'), `seed ${seed}`).toBe(0);
      // Both sessions, one after the other and together, answer as a fresh server does.
      for (const [i, p] of PROBES.entries()) expect(await probe(server.url, p), `probe ${i}, seed ${seed}`).toEqual(fresh[i]);
      const together = await Promise.all(PROBES.map((p) => probe(server.url, p)));
      expect(together, `seed ${seed}`).toEqual(fresh);
    });
  });

  describe('close()', () => {
    it('drains: the running stream finishes whole, new requests and /health get 503', async () => {
      const llama = await loadModel(2);
      // 15 ms a token: the stream surely runs while the test sends its requests.
      const server = await serve(slowLlama(llama, 15), { parallel: 2 });
      // A stream of 40 tokens; once its first chunk is here, close.
      const closing = deferred();
      const streamed = new Promise<string>((resolve, reject) => {
        const req = request(`${server.url}/v1/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            if (!text) closing.resolve();
            text += d;
          });
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end(JSON.stringify({ prompt: PROMPT, temperature: 0, max_tokens: 40, stream: true }));
      });
      await closing.promise;
      const closed = server.close({ drainMs: 30_000 });
      const [refused, health] = await Promise.all([post(server.url, '/v1/completions', { prompt: 'x' }), send(server.url, '/health')]);
      expect(refused.status).toBe(503);
      expect(refused.json().error.code).toBe('server_shutting_down');
      expect(health.status).toBe(503);
      expect(health.json()).toEqual({ status: 'draining' });
      const events = parseSse(await streamed);
      expect(events.at(-1)!.data).toBe('[DONE]');
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data).choices[0]);
      expect(chunks.at(-1).finish_reason).toBe('length');
      await closed;
      // close() gave the sessions back: the default session has a slot now.
      const want = await llama.generate(PROMPT, { temperature: 0, steps: 0, maxTokens: 40, echo: false, stopAtEos: true }).text();
      expect(chunks.map((c) => c.text).join('')).toBe(want);
      await expect(send(server.url, '/health')).rejects.toThrow(/ECONNREFUSED/);
      llama.dispose();
    });

    it('with drainMs 0, cuts running requests at once and frees the sessions', async () => {
      const llama = await loadModel(1);
      const server = await serve(slowLlama(llama, 15), { parallel: 1 });
      let chunks = 0;
      const first = deferred();
      const ended = new Promise<void>((resolve) => {
        const req = request(`${server.url}/gen?prompt=I%20dreamed&steps=0&temperature=0`, { agent: false }, (res) => {
          res.on('data', () => chunks++ === 0 && first.resolve());
          res.on('end', resolve);
          res.on('error', () => resolve());
        });
        req.on('error', () => resolve());
        req.end();
      });
      await first.promise;
      const t0 = performance.now();
      await server.close();
      await ended;
      expect(performance.now() - t0).toBeLessThan(2000);
      // The Llama's slot came back: a new session can be made.
      const s = llama.session();
      expect(await s.generate(PROMPT, { temperature: 0, maxTokens: 3 }).text()).toEqual(expect.any(String));
      s.dispose();
      llama.dispose();
    });
  });
});
