/**
 * Prefix caching across requests: a request that resends a growing
 * conversation lands on the free session whose KV cache holds the longest
 * part of it (even after other conversations ran in between), reads only its
 * new tokens (usage.prompt_tokens_details.cached_tokens), and answers exactly
 * what a fresh server answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama } from '@rama/llama';
import { serve, type ServerHandle } from './index.js';
import { loadModel, modelPaths, post } from './testing.js';

type Message = { role: string; content: string };
const SYSTEM = { role: 'system', content: 'You are a dreamer.' };
const OPENERS = ['Tell me about the sea.', 'What did you dream of?', 'Why is the sky blue?'];
const FOLLOW_UP = 'And then?';

// aidreams260K has 128 positions: short replies, so that two turns fit without a context shift (which reads from 0 again).
async function chat(url: string, messages: Message[], extra: Record<string, unknown> = {}) {
  const r = await post(url, '/v1/chat/completions', { messages, temperature: 0, max_tokens: 10, ...extra });
  expect(r.status, r.text).toBe(200);
  const j = r.json();
  return { text: j.choices[0].message.content as string, finish: j.choices[0].finish_reason as string, usage: j.usage };
}

describe.skipIf(!modelPaths())('prefix caching', () => {
  let llama: Llama;
  let server: ServerHandle;
  beforeAll(async () => {
    llama = await loadModel(3);
    server = await serve(llama, { parallel: 3 });
  });
  afterAll(async () => {
    await server?.close();
    llama?.dispose();
  });

  it('second turns of three interleaved conversations read only their new tokens, and answer as a fresh server does', async () => {
    // First turns, one after another: each conversation ends up in its own session's cache.
    const convs: Message[][] = [];
    for (const opener of OPENERS) {
      const msgs = [SYSTEM, { role: 'user', content: opener }];
      const first = await chat(server.url, msgs);
      expect(first.usage.prompt_tokens_details.cached_tokens).toBe(0);
      convs.push([...msgs, { role: 'assistant', content: first.text }, { role: 'user', content: FOLLOW_UP }]);
    }
    // Second turns, in another order, two of them at once: each finds its own conversation's session.
    const order = [2, 0, 1];
    const seconds = new Map<number, Awaited<ReturnType<typeof chat>>>();
    seconds.set(order[0], await chat(server.url, convs[order[0]]));
    const [b, c] = await Promise.all([chat(server.url, convs[order[1]]), chat(server.url, convs[order[2]], { stream: false })]);
    seconds.set(order[1], b);
    seconds.set(order[2], c);

    // A fresh server (new model, new caches) reads each whole conversation.
    const freshLlama = await loadModel(1);
    const fresh = await serve(freshLlama, { parallel: 1 });
    try {
      for (let i = 0; i < convs.length; i++) {
        const want = await chat(fresh.url, convs[i]);
        const got = seconds.get(i)!;
        const firstTurn = convs[i].slice(0, 2);
        // The first turn's prompt and reply (but its last token, EOS, read with the next turn) were in the cache.
        const firstPrompt = (await chat(fresh.url, firstTurn)).usage.prompt_tokens;
        expect(got.usage.prompt_tokens_details.cached_tokens, `conversation ${i}`).toBeGreaterThanOrEqual(firstPrompt);
        expect(got.usage.prompt_tokens_details.cached_tokens).toBeLessThan(got.usage.prompt_tokens);
        expect(got.usage.prompt_tokens).toBe(want.usage.prompt_tokens);
        expect(got.text, `conversation ${i}`).toBe(want.text);
        expect(got.finish).toBe(want.finish);
      }
    } finally {
      await fresh.close();
      freshLlama.dispose();
    }
  });

  it('a new conversation takes the session used longest ago, keeping recent conversations cached', async () => {
    const a = [SYSTEM, { role: 'user', content: 'Where do birds sleep?' }];
    const first = await chat(server.url, a);
    // Two unrelated requests (a completion, a chat with another system prompt) in between.
    expect((await post(server.url, '/v1/completions', { prompt: 'I dreamed of', temperature: 0, max_tokens: 8 })).status).toBe(200);
    await chat(server.url, [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Hello.' }]);
    const next = await chat(server.url, [...a, { role: 'assistant', content: first.text }, { role: 'user', content: FOLLOW_UP }]);
    expect(next.usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(first.usage.prompt_tokens);
  });

  it('streams report the cached tokens too', async () => {
    const a = [SYSTEM, { role: 'user', content: 'Sing me a song.' }];
    const first = await chat(server.url, a);
    const r = await post(server.url, '/v1/chat/completions', {
      messages: [...a, { role: 'assistant', content: first.text }, { role: 'user', content: FOLLOW_UP }],
      temperature: 0,
      max_tokens: 8,
      stream: true,
      stream_options: { include_usage: true },
    });
    const usage = r.text
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)))
      .find((c) => c.usage)?.usage;
    expect(usage.prompt_tokens_details.cached_tokens).toBeGreaterThanOrEqual(first.usage.prompt_tokens);
  });
});
