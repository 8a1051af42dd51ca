/** Pieces without a model: request parsing, the session pool, a stalled stream. */
import { EventEmitter } from 'node:events';
import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import type { Session } from '@rama/llama';
import { startEvents, writeEvent } from './http.js';
import { parseChatRequest, parseCompletionRequest } from './openai.js';
import { PoolRefusal, SessionPool } from './pool.js';

describe('parseChatRequest', () => {
  it('merges consecutive messages of one role, reads developer as system and text parts as text', () => {
    const r = parseChatRequest({
      messages: [
        { role: 'developer', content: 'Be brief.' },
        { role: 'system', content: 'Be kind.' },
        { role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: ' there' }] },
        { role: 'user', content: 'Anyone?', name: 'bob' },
      ],
    });
    expect(r.messages).toEqual([
      { role: 'system', content: 'Be brief.\n\nBe kind.' },
      { role: 'user', content: 'Hello there\n\nAnyone?' },
    ]);
  });

  it('maps OpenAI sampling to the library: defaults, top_p 0 as greedy, seed 0 as a fixed nonzero seed', () => {
    const base = { messages: [{ role: 'user', content: 'x' }] };
    expect(parseChatRequest(base)).toMatchObject({ temperature: 1, topp: 1, stop: [], stream: false, includeUsage: false, logprobs: false, topLogprobs: 0 });
    expect(parseChatRequest({ ...base, top_p: 0, temperature: 0.7 })).toMatchObject({ temperature: 0 });
    expect(parseChatRequest({ ...base, seed: 0 }).seed).not.toBe(0);
    expect(parseChatRequest({ ...base, stop: 'END' }).stop).toEqual(['END']);
    expect(parseChatRequest({ ...base, max_tokens: 5, max_completion_tokens: 7 }).maxTokens).toBe(7);
    expect(parseChatRequest({ ...base, stream: true, stream_options: { include_usage: true } }).includeUsage).toBe(true);
  });

  it('completions: prompt forms', () => {
    expect(parseCompletionRequest({ prompt: ['one'] }, 512).prompt).toBe('one');
    expect(parseCompletionRequest({ prompt: [1, 2, 3] }, 512).prompt).toEqual([1, 2, 3]);
    expect(parseCompletionRequest({ prompt: [[1, 2]] }, 512).prompt).toEqual([1, 2]);
    expect(parseCompletionRequest({ prompt: 'x', logprobs: 0 }, 512)).toMatchObject({ logprobs: true, topLogprobs: 0 });
  });
});

describe('SessionPool', () => {
  const fake = (n: number) => Array.from({ length: n }, (_, i) => ({ id: i }) as unknown as Session);

  it('lends sessions, queues up to its limit in order, refuses beyond, and forgets waiters that leave', async () => {
    const pool = new SessionPool(fake(1), 2);
    const ac = () => new AbortController();
    const s = await pool.acquire(ac().signal);
    const a = pool.acquire(ac().signal);
    const leaving = ac();
    const b = pool.acquire(leaving.signal);
    await expect(pool.acquire(ac().signal)).rejects.toEqual(new PoolRefusal('full'));
    expect(pool.waiting).toBe(2);
    leaving.abort();
    await expect(b).rejects.toEqual(new PoolRefusal('aborted'));
    expect(pool.waiting).toBe(1);
    pool.release(s);
    expect(await a).toBe(s);
    expect(pool.busy).toBe(1);
    const c = pool.acquire(ac().signal);
    pool.close();
    await expect(c).rejects.toEqual(new PoolRefusal('closing'));
    await expect(pool.acquire(ac().signal)).rejects.toEqual(new PoolRefusal('closing'));
  });

  it('lends a continued conversation the session that served it; anything else the session used longest ago', async () => {
    // Sessions whose caches (tokens) the test sets, as a turn would.
    const sessions = Array.from({ length: 3 }, (_, id) => ({ id, tokens: [] as number[] }));
    const pool = new SessionPool(sessions as unknown as Session[], 0);
    const signal = new AbortController().signal;
    const turn = async (want: number[] | undefined, cache: number[]) => {
      const s = (await pool.acquire(signal, want)) as unknown as { id: number; tokens: number[] };
      s.tokens = cache;
      pool.release(s as unknown as Session);
      return s.id;
    };
    // Three conversations sharing a "system prompt" (1, 2); their caches hold the prompt and a reply.
    expect(await turn([1, 2, 10], [1, 2, 10, 50, 51])).toBe(0);
    expect(await turn([1, 2, 20], [1, 2, 20, 60])).toBe(1);
    expect(await turn(undefined, [1, 9, 9])).toBe(2); // a completion
    // The first conversation again, with its reply re-encoded differently (70 for 50, 51) and a new message: session 0.
    expect(await turn([1, 2, 10, 70, 11], [1, 2, 10, 70, 11, 52])).toBe(0);
    // A new conversation with the same system prompt: not the session that shares most with it (0, just used), but the one used longest ago.
    expect(await turn([1, 2, 30], [1, 2, 30])).toBe(1);
    expect(await turn([1, 2, 40], [1, 2, 40])).toBe(2);
    // The same request again (a regenerated reply) goes back to its session.
    expect(await turn([1, 2, 40], [1, 2, 40, 80])).toBe(2);
  });
});

describe('writeEvent', () => {
  it('cuts off a client that stops reading for stallMs', async () => {
    const emitter = new EventEmitter();
    const res = Object.assign(emitter, {
      destroyed: false,
      writableEnded: false,
      writeHead() {},
      flushHeaders() {},
      write: () => false, // the socket is backed up and never drains
      destroy() {
        res.destroyed = true;
        emitter.emit('close');
      },
    }) as unknown as ServerResponse;
    startEvents(res, 50);
    const t0 = performance.now();
    await writeEvent(res, '{}');
    expect(res.destroyed).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
  });
});
