/** Bad requests over raw HTTP: each gets the right status and OpenAI's error body, and the server goes on serving. */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama } from '@rama/llama';
import { serve, type ServerHandle } from './index.js';
import { loadModel, modelPaths, post, send, slowLlama } from './testing.js';

const CHAT = '/v1/chat/completions';
const HI = [{ role: 'user', content: 'Hi' }];

function expectError(r: { status: number; json(): any }, status: number, param?: string | null, code?: string) {
  expect(r.status).toBe(status);
  const e = r.json().error;
  expect(e).toEqual({ message: expect.any(String), type: expect.any(String), param: expect.toSatisfy((p) => p === null || typeof p === 'string'), code: expect.toSatisfy((c) => c === null || typeof c === 'string') });
  if (status === 400) expect(e.type).toBe('invalid_request_error');
  if (param !== undefined) expect(e.param).toBe(param);
  if (code !== undefined) expect(e.code).toBe(code);
  return e;
}

describe.skipIf(!modelPaths())('errors', () => {
  let llama: Llama;
  let server: ServerHandle;

  beforeAll(async () => {
    llama = await loadModel(4);
    server = await serve(llama, { parallel: 2, bodyLimit: 64 * 1024 });
  });
  afterAll(async () => {
    await server?.close();
    llama?.dispose();
  });

  it('malformed JSON, a body that is not an object, invalid UTF-8: 400', async () => {
    expectError(await send(server.url, CHAT, { body: '{"messages": [', headers: { 'content-type': 'application/json' } }), 400, null, 'invalid_json');
    expectError(await send(server.url, CHAT, { body: '[1,2]' }), 400, null, 'invalid_json');
    expectError(await send(server.url, CHAT, { body: '' }), 400, null, 'invalid_json');
    const bad = Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
    expectError(await send(server.url, CHAT, { body: bad }), 400, null, 'invalid_encoding');
    expectError(await send(server.url, '/gen?prompt=%C3%28'), 400, null, 'invalid_encoding');
  });

  it('wrong types and ranges name the field', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{}, 'messages'],
      [{ messages: 'Hi' }, 'messages'],
      [{ messages: [] }, 'messages'],
      [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role'],
      [{ messages: [{ role: 'user', content: 5 }] }, 'messages[0].content'],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 'messages[0].content[0]'],
      [{ messages: HI, temperature: 'hot' }, 'temperature'],
      [{ messages: HI, temperature: 3 }, 'temperature'],
      [{ messages: HI, top_p: -0.1 }, 'top_p'],
      [{ messages: HI, max_tokens: 0 }, 'max_tokens'],
      [{ messages: HI, max_tokens: 1.5 }, 'max_tokens'],
      [{ messages: HI, max_completion_tokens: '9' }, 'max_completion_tokens'],
      [{ messages: HI, seed: 1.5 }, 'seed'],
      [{ messages: HI, stop: 5 }, 'stop'],
      [{ messages: HI, stop: [''] }, 'stop'],
      [{ messages: HI, stream: 'yes' }, 'stream'],
      [{ messages: HI, stream_options: { include_usage: true } }, 'stream_options'],
      [{ messages: HI, logprobs: 1 }, 'logprobs'],
      [{ messages: HI, top_logprobs: 3 }, 'top_logprobs'],
      [{ messages: HI, logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
      [{ messages: HI, n: 2 }, 'n'],
      [{ messages: HI, model: 7 }, 'model'],
      // The template's turn order: the library's own check, as a 400.
      [{ messages: [{ role: 'assistant', content: 'x' }] }, 'messages'],
    ];
    for (const [body, param] of cases) expectError(await post(server.url, CHAT, body), 400, param);
    for (const [body, param] of [
      [{}, 'prompt'],
      [{ prompt: 5 }, 'prompt'],
      [{ prompt: ['a', 'b'] }, 'prompt'],
      [{ prompt: [1, 99999] }, 'prompt'],
      [{ prompt: 'x', logprobs: 6 }, 'logprobs'],
      [{ prompt: 'x', n: 3 }, 'n'],
      [{ prompt: 'x', best_of: 2 }, 'best_of'],
    ] as [Record<string, unknown>, string][]) {
      expectError(await post(server.url, '/v1/completions', body), 400, param);
    }
    expectError(await send(server.url, '/gen'), 400, 'prompt');
    expectError(await send(server.url, '/gen?prompt=x&temperature=warm'), 400, 'temperature');
  });

  it('unknown fields and nulls are ignored; user is accepted', async () => {
    const r = await post(server.url, CHAT, { messages: HI, max_tokens: 3, temperature: 0, user: 'u1', frobnicate: { a: 1 }, top_p: null, stop: null, n: 1, presence_penalty: 0.5 });
    expect(r.status).toBe(200);
    expect(r.json().choices[0].message.content).toEqual(expect.any(String));
  });

  it('a prompt longer than the context: 400 context_length_exceeded', async () => {
    const long = 'the sea and the sky '.repeat(100);
    expectError(await post(server.url, '/v1/completions', { prompt: long }), 400, 'prompt', 'context_length_exceeded');
    expectError(await post(server.url, CHAT, { messages: [{ role: 'user', content: long }] }), 400, 'messages', 'context_length_exceeded');
    // The sessions are fine afterwards.
    expect((await post(server.url, '/v1/completions', { prompt: 'I dreamed', max_tokens: 2 })).status).toBe(200);
  });

  it('a body over bodyLimit: 413, whether announced or not', async () => {
    const huge = JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(200_000) }] });
    expectError(await send(server.url, CHAT, { body: huge, headers: { 'content-type': 'application/json' } }), 413, null, 'request_too_large');
    // Chunked (no Content-Length): found while reading.
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const s = connect(server.port, '127.0.0.1', () => {
        s.write(`POST ${CHAT} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n`);
        const chunk = 'y'.repeat(16 * 1024);
        for (let i = 0; i < 8; i++) s.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
      });
      let text = '';
      s.on('data', (d) => (text += d));
      s.on('error', () => {});
      s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]), body: text }));
      setTimeout(() => reject(new Error('no answer')), 10_000);
    });
    expect(r.status).toBe(413);
  });

  it('unknown paths 404, wrong methods 405', async () => {
    expectError(await send(server.url, '/v2/nothing'), 404);
    const r = await send(server.url, CHAT);
    expectError(r, 405);
    expect(r.headers.allow).toBe('POST');
    expectError(await send(server.url, '/v1/models/gpt-5'), 404, 'model', 'model_not_found');
  });

  it('apiKey: 401 without or with a wrong key; /health and / stay open', async () => {
    const l = await loadModel(1);
    const s = await serve(l, { apiKey: 'sekrit', parallel: 1 });
    try {
      const e = expectError(await post(s.url, CHAT, { messages: HI, max_tokens: 2 }), 401, null, 'invalid_api_key');
      expect(e.message).toMatch(/Bearer/);
      expectError(await post(s.url, CHAT, { messages: HI, max_tokens: 2 }, { authorization: 'Bearer wrong' }), 401);
      expectError(await post(s.url, CHAT, { messages: HI, max_tokens: 2 }, { authorization: 'sekrit' }), 401);
      expectError(await send(s.url, '/metrics'), 401);
      expectError(await send(s.url, '/gen?prompt=x'), 401);
      expect((await post(s.url, CHAT, { messages: HI, max_tokens: 2 }, { authorization: 'Bearer sekrit' })).status).toBe(200);
      expect((await send(s.url, '/v1/models', { headers: { authorization: 'bearer sekrit' } })).status).toBe(200);
      expect((await send(s.url, '/health')).status).toBe(200);
      expect((await send(s.url, '/')).status).toBe(200);
    } finally {
      await s.close();
      l.dispose();
    }
  });

  it('a full queue: 429 with Retry-After, and the requests that got in finish', async () => {
    const l = await loadModel(1);
    // 10 ms a token: a generation takes far longer than the requests take to arrive, however loaded the machine.
    const s = await serve(slowLlama(l, 10), { parallel: 1, queue: 1 });
    try {
      const replies = await Promise.all(Array.from({ length: 6 }, () => post(s.url, '/v1/completions', { prompt: 'I dreamed of', temperature: 0, max_tokens: 20 })));
      const ok = replies.filter((r) => r.status === 200);
      const busy = replies.filter((r) => r.status === 429);
      expect(ok.length).toBeGreaterThanOrEqual(2);
      expect(busy.length).toBeGreaterThanOrEqual(1);
      expect(ok.length + busy.length).toBe(6);
      for (const r of busy) {
        expect(r.headers['retry-after']).toBe('1');
        expectError(r, 429, null, 'rate_limit_exceeded');
      }
      // Every reply that got in is the same greedy text.
      expect(new Set(ok.map((r) => r.json().choices[0].text)).size).toBe(1);
      const metrics = (await send(s.url, '/metrics')).text;
      expect(metrics).toMatch(/^rama_queue_rejections_total [1-9]/m);
      expect(metrics).toMatch(/^rama_requests_total\{endpoint="\/v1\/completions",status="429"\} [1-9]/m);
    } finally {
      await s.close();
      l.dispose();
    }
  });

  it('slow headers (slowloris): the connection is closed after headersTimeout', async () => {
    const l = await loadModel(1);
    const s = await serve(l, { parallel: 1, headersTimeout: 300, requestTimeout: 600 });
    try {
      const t0 = Date.now();
      const answer = await new Promise<string>((resolve) => {
        const sock = connect(s.port, '127.0.0.1', () => sock.write('GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: '));
        let text = '';
        sock.on('data', (d) => (text += d));
        sock.on('error', () => {});
        sock.on('close', () => resolve(text));
      });
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(answer === '' || answer.startsWith('HTTP/1.1 408')).toBe(true);
    } finally {
      await s.close();
      l.dispose();
    }
  });
});
