/** Rama's own endpoints: /gen streams, / serves the page, /health, /metrics in Prometheus' text format. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama } from '@rama/llama';
import { serve, type ServerHandle } from './index.js';
import { loadModel, modelPaths, parseSse, post, send } from './testing.js';

describe.skipIf(!modelPaths())('simple API, health, metrics', () => {
  let llama: Llama;
  let server: ServerHandle;

  beforeAll(async () => {
    llama = await loadModel(3);
    server = await serve(llama, { parallel: 2 });
  });
  afterAll(async () => {
    await server?.close();
    llama?.dispose();
  });

  it('GET /gen streams tokens as SSE, the text llama.generate gives, then an end event', async () => {
    const want = await llama.generate('I dreamed of', { temperature: 0, steps: 40, echo: false }).result();
    const r = await send(server.url, '/gen?prompt=I+dreamed%20of&temperature=0&steps=40');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = parseSse(r.text);
    const tokens = events.filter((e) => e.event === 'message').map((e) => JSON.parse(e.data));
    expect(tokens.length).toBeGreaterThan(5);
    expect(tokens.map((t) => t.text).join('')).toBe(want.text);
    expect(tokens.map((t) => t.id)).toEqual(want.tokens.slice(-tokens.length).slice(0, tokens.length));
    const end = events.at(-1)!;
    expect(end.event).toBe('end');
    expect(JSON.parse(end.data)).toMatchObject({ reason: 'steps', completion_tokens: want.generatedTokens, prompt_tokens: want.promptTokens });
  });

  it('GET /gen with chat=1 uses the chat template', async () => {
    const want = await llama.chat([{ role: 'user', content: 'Hello' }], { temperature: 0, maxTokens: 12 }).text();
    const r = await send(server.url, '/gen?prompt=Hello&temperature=0&max_tokens=12&chat=1');
    const text = parseSse(r.text).filter((e) => e.event === 'message').map((e) => JSON.parse(e.data).text).join('');
    expect(text).toBe(want);
  });

  it('GET / is one self-contained page that uses /gen', async () => {
    const r = await send(server.url, '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/html/);
    expect(r.text).toMatch(/<script>/);
    expect(r.text).toContain("fetch('gen?'");
    // Nothing loaded from elsewhere.
    expect(r.text).not.toMatch(/\b(src|href)\s*=/i);
    expect(r.text).not.toMatch(/https?:\/\//);
  });

  it('GET /health', async () => {
    const r = await send(server.url, '/health');
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ status: 'ok' });
  });

  it('GET /metrics parses as Prometheus text and counts what happened', async () => {
    await post(server.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 5 });
    await post(server.url, '/v1/chat/completions', { messages: 'bad' });
    const r = await send(server.url, '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const samples = new Map<string, number>();
    const types = new Map<string, string>();
    for (const line of r.text.split('\n')) {
      if (line === '') continue;
      const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
      if (meta) {
        if (meta[1] === 'TYPE') types.set(meta[2], meta[3]);
        continue;
      }
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|-Inf|NaN)$/.exec(line);
      expect(m, `a sample line: ${line}`).not.toBeNull();
      samples.set(m![1] + (m![2] ?? ''), Number(m![3]));
      const family = m![1].replace(/_(bucket|sum|count)$/, '');
      expect(types.has(m![1]) || types.get(family) === 'histogram', `TYPE before ${m![1]}`).toBe(true);
    }
    expect(samples.get('rama_requests_total{endpoint="/v1/chat/completions",status="200"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('rama_requests_total{endpoint="/v1/chat/completions",status="400"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('rama_requests_total{endpoint="/health",status="200"}')).toBeGreaterThanOrEqual(1);
    expect(samples.get('rama_queue_depth')).toBe(0);
    expect(samples.get('rama_active_sequences')).toBe(0);
    expect(samples.get('rama_sessions')).toBe(2);
    expect(samples.get('rama_prompt_tokens_total')).toBeGreaterThan(0);
    expect(samples.get('rama_completion_tokens_total')).toBeGreaterThanOrEqual(5);
    expect(types.get('rama_time_to_first_token_seconds')).toBe('histogram');
    expect(types.get('rama_tokens_per_second')).toBe('histogram');
    expect(samples.get('rama_time_to_first_token_seconds_count')).toBeGreaterThanOrEqual(1);
    // Buckets are cumulative and end at +Inf = count.
    const buckets = [...samples].filter(([k]) => k.startsWith('rama_time_to_first_token_seconds_bucket')).map(([, v]) => v);
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    expect(samples.get('rama_time_to_first_token_seconds_bucket{le="+Inf"}')).toBe(samples.get('rama_time_to_first_token_seconds_count'));
  });

  it('cors: preflights answered, any origin allowed; off by default', async () => {
    expect((await send(server.url, '/health')).headers['access-control-allow-origin']).toBeUndefined();
    const l = await loadModel(1);
    const s = await serve(l, { parallel: 1, cors: true, apiKey: 'k' });
    try {
      const pre = await send(s.url, '/v1/chat/completions', { method: 'OPTIONS', headers: { origin: 'http://example.test', 'access-control-request-method': 'POST' } });
      expect(pre.status).toBe(204);
      expect(pre.headers['access-control-allow-origin']).toBe('*');
      expect(pre.headers['access-control-allow-headers']).toMatch(/authorization/);
      const r = await post(s.url, '/v1/completions', { prompt: 'I', max_tokens: 2 }, { authorization: 'Bearer k' });
      expect(r.status).toBe(200);
      expect(r.headers['access-control-allow-origin']).toBe('*');
    } finally {
      await s.close();
      l.dispose();
    }
  });

  it('serve() checks its options', async () => {
    const l = await loadModel(2);
    await expect(serve(l, { parallel: 3 })).rejects.toThrow(/parallel 3 needs 3 free sessions, and the Llama had 2 free of its 2/);
    await expect(serve(l, { port: -1 } as never)).rejects.toThrow(/port/);
    await expect(serve(l, { paralel: 2 } as never)).rejects.toThrow(/unknown option "paralel"/);
    await expect(serve({} as never)).rejects.toThrow(/a loaded Llama/);
    // The failed attempt gave back the sessions it took.
    const s = await serve(l, { parallel: 2 });
    await s.close();
    // A port in use is the listen error, and the sessions come back.
    const a = await serve(l, { parallel: 1 });
    await expect(serve(l, { parallel: 1, port: a.port })).rejects.toThrow(/EADDRINUSE/);
    await a.close();
    const b = await serve(l, { parallel: 2 });
    await b.close();
    l.dispose();
  });
});
