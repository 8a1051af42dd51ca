/**
 * The official `openai` client against the server: chat and text
 * completions, streaming and not, give what the library gives directly.
 */
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama } from '@rama/llama';
import { serve, type ServerHandle } from './index.js';
import { loadModel, modelPaths } from './testing.js';

const MESSAGES = [
  { role: 'system' as const, content: 'You are a dreamer.' },
  { role: 'user' as const, content: 'Tell me about the sea.' },
];

describe.skipIf(!modelPaths())('OpenAI client', () => {
  let llama: Llama;
  let server: ServerHandle;
  let client: OpenAI;

  beforeAll(async () => {
    // Two sessions for the server, the third (the default session) for direct calls to compare with.
    llama = await loadModel(3);
    server = await serve(llama, { parallel: 2, modelName: 'aidreams260K' });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.close();
    llama?.dispose();
  });

  it('lists the model', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['aidreams260K']);
    expect((await client.models.retrieve('aidreams260K')).id).toBe('aidreams260K');
  });

  it('chat, greedy, not streaming: the text llama.chat gives, with usage', async () => {
    const want = await llama.chat(MESSAGES, { temperature: 0, maxTokens: 24 }).result();
    const r = await client.chat.completions.create({ model: 'aidreams260K', messages: MESSAGES, temperature: 0, max_tokens: 24 });
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('aidreams260K');
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].message).toMatchObject({ role: 'assistant', content: want.text });
    expect(r.choices[0].finish_reason).toBe(want.reason === 'steps' || want.reason === 'context' ? 'length' : 'stop');
    expect(r.usage).toMatchObject({ prompt_tokens: want.position + want.promptTokens, completion_tokens: want.generatedTokens });
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);
  });

  it('chat, streaming: the same text in chunks, then finish_reason, usage and [DONE]', async () => {
    const whole = await client.chat.completions.create({ model: 'x', messages: MESSAGES, temperature: 0, max_completion_tokens: 30 });
    const stream = await client.chat.completions.create({
      model: 'x', messages: MESSAGES, temperature: 0, max_completion_tokens: 30, stream: true, stream_options: { include_usage: true },
    });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | null | undefined;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      expect(c.object).toBe('chat.completion.chunk');
      if (c.choices.length === 0) usage = c.usage;
      for (const ch of c.choices) {
        text += ch.delta.content ?? '';
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    expect(chunks).toBeGreaterThan(5);
    expect(text).toBe(whole.choices[0].message.content);
    expect(finish).toBe(whole.choices[0].finish_reason);
    expect(usage).toEqual(whole.usage);
  });

  it('completions, greedy, streaming and not: the text llama.generate gives', async () => {
    const prompt = 'I dreamed of';
    const want = await llama.generate(prompt, { temperature: 0, maxTokens: 40, steps: 0, echo: false, stopAtEos: true }).result();
    const r = await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 40 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].text).toBe(want.text);
    expect(r.choices[0].finish_reason).toBe('length');
    expect(r.usage).toMatchObject({ prompt_tokens: want.promptTokens, completion_tokens: 40 });

    const stream = await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 40, stream: true });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    expect(text).toBe(want.text);
  });

  it('a stop string ends the reply before it, across token boundaries, finish_reason stop', async () => {
    const prompt = 'I dreamed of';
    const full = await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 60 });
    const text = full.choices[0].text;
    // A stop string from the middle of the greedy text, straddling tokens.
    const stop = text.slice(12, 17);
    const cut = text.indexOf(stop);
    const want = await llama.generate(prompt, { temperature: 0, maxTokens: 60, steps: 0, echo: false, stopAtEos: true, stop: [stop] }).result();
    for (const stream of [false, true]) {
      let got: string;
      let finish: string | null;
      if (stream) {
        got = '';
        finish = null;
        for await (const c of await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 60, stop: [stop, 'zzzz'], stream: true })) {
          got += c.choices[0]?.text ?? '';
          finish = c.choices[0]?.finish_reason ?? finish;
        }
      } else {
        const r = await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 60, stop });
        got = r.choices[0].text;
        finish = r.choices[0].finish_reason;
      }
      expect(got).toBe(text.slice(0, cut));
      expect(got).toBe(want.text);
      expect(finish).toBe('stop');
    }
    // Logprobs stop with the text: the stop string's tokens are not reported.
    const lp = await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 60, stop, logprobs: 0 });
    const tokens = lp.choices[0].logprobs!.tokens!;
    expect(tokens.join('').startsWith(lp.choices[0].text)).toBe(true);
    expect(tokens.slice(0, -1).join('').length).toBeLessThan(lp.choices[0].text.length);
  });

  it('chat logprobs and top_logprobs: one entry per generated token, the chosen one among the likeliest when greedy', async () => {
    const r = await client.chat.completions.create({ model: 'x', messages: MESSAGES, temperature: 0, max_tokens: 10, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0].logprobs!.content!;
    expect(content).toHaveLength(r.usage!.completion_tokens);
    expect(content.map((c) => c.token).join('')).toBe(r.choices[0].message.content);
    for (const c of content) {
      expect(c.logprob).toBeLessThanOrEqual(0);
      expect(c.top_logprobs).toHaveLength(3);
      // Greedy: the chosen token is the likeliest.
      expect(c.top_logprobs[0].logprob).toBeCloseTo(c.logprob, 6);
      expect(c.top_logprobs[0].logprob).toBeGreaterThanOrEqual(c.top_logprobs[1].logprob);
      expect(Buffer.from(c.bytes!).toString()).toBe(c.token);
    }
    const streamed: number[] = [];
    for await (const c of await client.chat.completions.create({ model: 'x', messages: MESSAGES, temperature: 0, max_tokens: 10, logprobs: true, stream: true })) {
      for (const e of c.choices[0]?.logprobs?.content ?? []) streamed.push(e.logprob);
    }
    expect(streamed).toEqual(content.map((c) => c.logprob));
  });

  it('completions logprobs (legacy shape)', async () => {
    const r = await client.completions.create({ model: 'x', prompt: 'I dreamed of', temperature: 0, max_tokens: 8, logprobs: 2 });
    const lp = r.choices[0].logprobs!;
    expect(lp.tokens).toHaveLength(8);
    expect(lp.token_logprobs).toHaveLength(8);
    expect(lp.top_logprobs).toHaveLength(8);
    expect(Object.keys(lp.top_logprobs![0])).toHaveLength(2);
    expect(lp.tokens!.join('')).toBe(r.choices[0].text);
  });

  it('a seed reproduces a sampled reply; a multi-turn conversation with assistant messages', async () => {
    const ask = () => client.chat.completions.create({ model: 'x', messages: MESSAGES, temperature: 0.9, top_p: 0.95, seed: 1234, max_tokens: 20 });
    const [a, b] = await Promise.all([ask(), ask()]);
    expect(a.choices[0].message.content).toBe(b.choices[0].message.content);

    const turns = [...MESSAGES, { role: 'assistant' as const, content: 'The sea is wide.' }, { role: 'user' as const, content: 'And the sky?' }];
    const want = await llama.chat(turns, { temperature: 0, maxTokens: 16 }).text();
    const r = await client.chat.completions.create({ model: 'x', messages: turns, temperature: 0, max_tokens: 16 });
    expect(r.choices[0].message.content).toBe(want);
  });

  it('client errors arrive as the client\'s APIError with OpenAI\'s error body', async () => {
    const e = await client.chat.completions.create({ model: 'x', messages: MESSAGES, n: 2 }).catch((x) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.status).toBe(400);
    expect(e.param).toBe('n');
    expect(e.type).toBe('invalid_request_error');
  });
});
