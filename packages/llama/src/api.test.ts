/**
 * The API users of other runtimes expect (issue #14): stop strings, maxTokens
 * for generate, chat with OpenAI-style messages, tokenize / detokenize /
 * countTokens, and per-token logprobs. On the small real models, CPU backend.
 */
import { describe, expect, it, vi } from 'vitest';
import { generateGoldens, missingMessage, sharedFile } from '@rama/testkit';
import { softmax } from '@rama/sampler';
import { ArgumentError, Llama, type GeneratedToken, type GenerateOptions, type Generation } from './index.js';
import { StopMatcher } from './generation.js';
import type { BatchRunner, RowRequest } from './batch.js';

const aidreams = () => ({ model: sharedFile('models/aidreams260K.bin'), tokenizer: sharedFile('models/tok512-aidreams.bin') });
const MISSING = missingMessage('models/aidreams260K.bin');

/** Runs a generation, keeping every yielded token. */
async function collect(gen: Generation) {
  const yielded: GeneratedToken[] = [];
  for await (const t of gen) yielded.push(t);
  return { yielded, result: await gen.result() };
}

/** Expects `call` to throw an ArgumentError whose message matches. */
function expectArgumentError(call: () => unknown, message: RegExp): void {
  let err: unknown;
  try {
    call();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ArgumentError);
  expect((err as Error).message).toMatch(message);
}

describe('StopMatcher', () => {
  it('finds stop strings across pieces, holds back only what could start one', () => {
    const m = new StopMatcher(['\n\n', 'User:']);
    expect(m.push('Hello')).toEqual({ text: 'Hello', found: false });
    expect(m.push(' U')).toEqual({ text: ' ', found: false }); // "U" could start "User:"
    expect(m.push('s')).toEqual({ text: '', found: false });
    expect(m.push('x')).toEqual({ text: 'Usx', found: false }); // it cannot any more: released
    expect(m.push('a\n')).toEqual({ text: 'a', found: false });
    expect(m.push('\nmore')).toEqual({ text: '', found: true });
    const n = new StopMatcher(['User:']);
    expect(n.push('ok Us')).toEqual({ text: 'ok ', found: false });
    expect(n.push('er: hi')).toEqual({ text: '', found: true });
  });

  it('ends at the earliest stop string, and releases what is held when the generation ends otherwise', () => {
    const m = new StopMatcher(['cd', 'b']);
    expect(m.push('abcd')).toEqual({ text: 'a', found: true });
    const n = new StopMatcher(['aab']);
    // "aa" then "a": the stop could still begin at the second "a"
    expect(n.push('xaa')).toEqual({ text: 'x', found: false });
    expect(n.push('a')).toEqual({ text: 'a', found: false });
    expect(n.push('b!')).toEqual({ text: '', found: true });
    const o = new StopMatcher(['###']);
    expect(o.push('end #')).toEqual({ text: 'end ', found: false });
    expect(o.end()).toBe('#');
  });
});

describe('stop strings', () => {
  it('end a generation before a stop string spanning a token boundary, which is never shown', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      const opts: GenerateOptions = { steps: 80, temperature: 0, echo: false };
      const full = await collect(llama.generate('I dreamed of', opts));
      const text = full.result.text;
      // A stop string from the middle of the text, over the boundary between two yielded tokens.
      let stop = '';
      let at = -1;
      let b = 0;
      for (const [i, t] of full.yielded.entries()) {
        b += t.text.length;
        if (i < 5 || b + 3 > text.length) continue;
        const s = text.slice(b - 1, b + 3);
        if (text.indexOf(s) === b - 1 && s.trim().length === s.length) {
          stop = s;
          at = b - 1;
          break;
        }
      }
      expect(at).toBeGreaterThan(0);

      const stopped = await collect(llama.generate('I dreamed of', { ...opts, stop: ['never in this text', stop] }));
      expect(stopped.result.reason).toBe('stop');
      expect(stopped.result.text).toBe(text.slice(0, at));
      expect(stopped.yielded.map((t) => t.text).join('')).toBe(text.slice(0, at));
      // The tokens are those generated, the stop string's included (and nothing after).
      const r = stopped.result;
      expect(r.tokens).toEqual(full.result.tokens.slice(0, r.tokens.length));
      expect(llama.detokenize(r.tokens.slice(0, -1))).not.toContain(stop);
      expect(llama.detokenize(r.tokens)).toContain(stop);

      // A string that starts as the text goes on but is never completed: held back, then released whole.
      const almost = `${stop}\u0001`;
      const held = await collect(llama.generate('I dreamed of', { ...opts, stop: [almost] }));
      expect(held.result.reason).toBe('steps');
      expect(held.result.text).toBe(text);
      expect(held.yielded.map((t) => t.text).join('')).toBe(text);
      expect(held.yielded.map((t) => t.text)).not.toEqual(full.yielded.map((t) => t.text));
      expect(held.yielded.some((t) => t.text === '')).toBe(true);

      // Held back at the very end: released when the step limit ends the generation.
      const tail = `${text.slice(-2)}\u0001`;
      const end = await collect(llama.generate('I dreamed of', { ...opts, stop: [tail] }));
      expect(end.result.reason).toBe('steps');
      expect(end.result.text).toBe(text);
      expect(end.yielded.map((t) => t.text).join('')).toBe(text);
    } finally {
      llama.dispose();
    }
  });

  it('end a chat turn; the stop string\'s tokens stay in the conversation', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer, sessions: 2 });
    try {
      const opts = { system: 'be brief', temperature: 0, maxTokens: 40 };
      const full = await llama.session().chat('hello', opts).result();
      const words = full.text.split(' ');
      expect(words.length).toBeGreaterThan(3);
      const stop = ` ${words[2]}`;
      const at = full.text.indexOf(stop);

      const s = llama.session();
      const r = await s.chat('hello', { ...opts, stop: [stop] }).result();
      expect(r.reason).toBe('stop');
      expect(r.text).toBe(full.text.slice(0, at));
      expect(r.tokens).toEqual(full.tokens.slice(0, r.tokens.length));
      // Everything but the last sampled token entered the cache; that one is read first next turn.
      expect(s.tokens).toEqual(r.tokens.slice(0, -1));
      const next = await s.chat('and then?', { temperature: 0, maxTokens: 5 }).result();
      expect(next.position).toBe(r.tokens.length - 1);
      expect(next.tokens[0]).toBe(r.tokens[r.tokens.length - 1]);
      expect(next.tokens[1]).toBe(llama.spec.bosId);
    } finally {
      llama.dispose();
    }
  });

  it('must be a non-empty string or an array of them; one string is a list of one', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      for (const stop of ['', [''], ['a', 3], [null], {}, null, 7]) {
        expectArgumentError(() => llama.generate('x', { stop: stop as never }), /^generate: stop must be a non-empty string or an array of them/);
        expectArgumentError(() => llama.chat('x', { stop: stop as never }), /^chat: stop must be a non-empty string or an array of them/);
      }
      expect((await llama.generate('x', { stop: [], steps: 5 }).result()).reason).toBe('steps');
      // A string is one stop string: the same text and reason as a list of it.
      const free = await llama.generate('I dreamed of', { steps: 60, temperature: 0 }).result();
      const cut = free.text.slice(free.text.length >> 1, (free.text.length >> 1) + 3);
      const one = await llama.generate('I dreamed of', { steps: 60, temperature: 0, stop: cut }).result();
      const list = await llama.generate('I dreamed of', { steps: 60, temperature: 0, stop: [cut] }).result();
      expect(one.reason).toBe('stop');
      expect(one.text).toBe(list.text);
      expect(one.text.length).toBeLessThan(free.text.length);
    } finally {
      llama.dispose();
    }
  });
});

describe('maxTokens', () => {
  it('caps generate\'s sampled tokens; the first of steps and maxTokens reached ends it with reason steps', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      const prompt = 'I dreamed of';
      const full = await llama.generate(prompt, { steps: 64, temperature: 0 }).result();
      const n = full.promptTokens;
      const capped = await llama.generate(prompt, { steps: 64, maxTokens: 5, temperature: 0 }).result();
      expect(capped.reason).toBe('steps');
      expect(capped.generatedTokens).toBe(5);
      expect(capped.tokens).toEqual(full.tokens.slice(0, n + 5));
      // steps counts positions: the last prompt position samples the first token
      const stepsFirst = await llama.generate(prompt, { steps: n + 2, maxTokens: 10, temperature: 0 }).result();
      expect(stepsFirst.reason).toBe('steps');
      expect(stepsFirst.generatedTokens).toBe(3);
      // steps: 0 is the whole context; maxTokens still caps it
      const whole = await llama.generate(prompt, { steps: 0, maxTokens: 7, temperature: 0 }).result();
      expect(whole.generatedTokens).toBe(7);
      expect(whole.reason).toBe('steps');
      expectArgumentError(() => llama.generate(prompt, { maxTokens: 0 }), /^generate: maxTokens must be an integer >= 1/);
      expectArgumentError(() => llama.generate(prompt, { maxTokens: 2.5 }), /^generate: maxTokens must be an integer/);
    } finally {
      llama.dispose();
    }
  });
});

describe('chat(messages)', () => {
  const S = 'be brief';
  const opts = { temperature: 0, maxTokens: 24 };

  it('one user message with a system message is the string chat with system', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer, sessions: 4 });
    try {
      const viaString = await llama.session().chat('hello', { ...opts, system: S }).result();
      const viaMessages = await llama.session().chat([{ role: 'system', content: S }, { role: 'user', content: 'hello' }], opts).result();
      expect(viaMessages.tokens).toEqual(viaString.tokens);
      expect(viaMessages.text).toBe(viaString.text);
      // the `system` option serves a messages array without a system message
      const viaOption = await llama.session().chat([{ role: 'user', content: 'hello' }], { ...opts, system: S }).result();
      expect(viaOption.tokens).toEqual(viaString.tokens);
      // without any system prompt it differs (the test can tell)
      const bare = await llama.chat([{ role: 'user', content: 'hello' }], opts).result();
      expect(bare.tokens).not.toEqual(viaString.tokens);
    } finally {
      llama.dispose();
    }
  });

  it('renders earlier turns as Llama 2 does: <s>[INST] <<SYS>>..u1 [/INST] a1</s><s>[INST] u2 [/INST]', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer, sessions: 2 });
    try {
      const [u1, a1, u2] = ['hello', 'I dream of the sea.', 'and then?'];
      const r = await llama
        .session()
        .chat([{ role: 'system', content: S }, { role: 'user', content: u1 }, { role: 'assistant', content: a1 }, { role: 'user', content: u2 }], opts)
        .result();
      const enc = (t: string) => llama.tokenizer.encode(t, { bos: false });
      const ids = [1, ...enc(`[INST] <<SYS>>\n${S}\n<</SYS>>\n\n${u1} [/INST]`), ...enc(a1), 2, 1, ...enc(`[INST] ${u2} [/INST]`)];
      expect(r.position).toBe(0);
      expect(r.tokens.slice(0, ids.length)).toEqual(ids);
      expect(r.promptTokens).toBe(ids.length);
      // the same ids through generate give the same reply
      const g = await llama.session().generate(ids, { ...opts, echo: false, stopAtEos: true }).result();
      expect(r.tokens).toEqual(g.tokens);
    } finally {
      llama.dispose();
    }
  });

  it('resending a conversation reads only what the KV cache does not hold, with the same reply', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer, sessions: 2 });
    try {
      expect(llama.contextLength).toBeGreaterThanOrEqual(128);
      const short = { temperature: 0, maxTokens: 8 }; // the three turns fit: no context shift
      const s = llama.session();
      const first = await s.chat('hello', { ...short, system: S }).result();
      const messages = [
        { role: 'system', content: S },
        { role: 'user', content: 'hello' },
        { role: 'assistant', content: first.text },
        { role: 'user', content: 'and then?' },
      ] as const;
      const reused = await s.chat(messages, short).result();
      const fresh = await llama.session().chat(messages, short).result();
      // at least the first turn's prompt was not read again
      expect(reused.position).toBeGreaterThanOrEqual(first.promptTokens);
      expect(reused.tokens).toEqual(fresh.tokens.slice(reused.position));
      expect(reused.text).toBe(fresh.text);
      expect(s.tokens).toEqual(fresh.tokens.slice(0, s.tokens.length));
      // a string turn continues the conversation the messages set up
      const cached = s.tokens.length;
      const more = await s.chat('why?', short).result();
      expect(more.position).toBe(cached);
      expect(more.tokens[0]).toBe(fresh.tokens[fresh.tokens.length - 1]);
    } finally {
      llama.dispose();
    }
  });

  it('refuses bad messages with an ArgumentError', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      const u = { role: 'user', content: 'hi' };
      const a = { role: 'assistant', content: 'yo' };
      const bad: [unknown, RegExp][] = [
        [[], /messages must not be empty/],
        [[{ role: 'bot', content: 'hi' }], /messages\[0\] must be \{ role/],
        [[{ role: 'user', content: 5 }], /messages\[0\] must be/],
        [[u, null], /messages\[1\] must be/],
        [[{ role: 'user', content: 'hi', name: 'x' }], /messages\[0\] must be/],
        [[u, a], /last message must be the user's/],
        [[{ role: 'system', content: 's' }], /last message must be the user's/],
        [[u, u], /messages\[1\]\.role is "user", expected "assistant"/],
        [[a, u], /messages\[0\]\.role is "assistant", expected "user"/],
        [[u, { role: 'system', content: 's' }, u], /only the first message may be a system message/],
        [42, /message must be a string or an array/],
      ];
      for (const [messages, message] of bad) expectArgumentError(() => llama.chat(messages as never), message);
      expectArgumentError(() => llama.chat([{ role: 'system', content: 's' }, u] as never, { system: 't' }), /not both/);
    } finally {
      llama.dispose();
    }
  });
});

describe('tokenize / detokenize / countTokens', () => {
  it('are the ids generate reads, and round-trip text', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      const prompt = 'I dreamed of a long road';
      const r = await llama.generate(prompt, { steps: 40, temperature: 0 }).result();
      const ids = llama.tokenize(prompt);
      expect(ids).toEqual(r.tokens.slice(0, r.promptTokens));
      expect(ids[0]).toBe(llama.spec.bosId);
      expect(llama.tokenize(prompt, { bos: false })).toEqual(ids.slice(1));
      expect(llama.tokenize(prompt, { eos: true })).toEqual([...ids, llama.spec.eosId]);
      expect(llama.countTokens(prompt)).toBe(ids.length);
      expect(llama.countTokens(prompt, { bos: false })).toBe(ids.length - 1);
      expect(llama.countTokens('')).toBe(1);
      // what generate shows for its tokens (prompt echoed)
      expect(llama.detokenize(r.tokens)).toBe(r.text);
      for (const text of ['Hello world', ' leading space', 'héllo wörld ✓ 日本語', 'two\n\nlines', '']) {
        expect(llama.detokenize(llama.tokenize(text))).toBe(text);
        expect(llama.detokenize(llama.tokenize(text, { bos: false }))).toBe(text);
      }
      expect(llama.detokenize([])).toBe('');
      expectArgumentError(() => llama.tokenize(5 as never), /^tokenize: text must be a string/);
      expectArgumentError(() => llama.tokenize('x', { bos: 1 } as never), /^tokenize: bos must be true or false/);
      expectArgumentError(() => llama.tokenize('x', { special: true } as never), /unknown option "special"/);
      expectArgumentError(() => llama.detokenize([1, llama.spec.vocabSize]), /^detokenize: token id 512 outside the vocabulary/);
      expectArgumentError(() => llama.detokenize('abc' as never), /^detokenize: ids must be an array/);
    } finally {
      llama.dispose();
    }
  });
});

describe('logprobs', () => {
  /** log of llama2.c's f32 softmax of `logits` / t at `id`. */
  const refLogprob = (logits: Float32Array, id: number, t = 1) => {
    const p = Float32Array.from(logits, (x) => x / t);
    softmax(p, p.length);
    return Math.log(p[id]);
  };

  it('are log-softmax at temperature 1 of the logits the token was sampled from, and leave sampling alone', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      const opts: GenerateOptions = { steps: 48, temperature: 0.8, topp: 0.9, seed: 7, echo: false };
      const plain = await collect(llama.generate('The night', opts));
      const withProbs = await collect(llama.generate('The night', { ...opts, logits: true, logprobs: true, topLogprobs: 5 }));
      expect(withProbs.result.tokens).toEqual(plain.result.tokens);
      expect(plain.yielded.every((t) => !('logprob' in t) && !('topLogprobs' in t))).toBe(true);
      let differsFromScaled = false;
      for (const t of withProbs.yielded) {
        const logits = t.logits!;
        expect(t.logprob!).toBeCloseTo(refLogprob(logits, t.id), 4);
        if (Math.abs(t.logprob! - refLogprob(logits, t.id, 0.8)) > 1e-3) differsFromScaled = true;
        const top = t.topLogprobs!;
        expect(top.length).toBe(5);
        const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
        expect(top.map((c) => c.id)).toEqual(order.slice(0, 5));
        for (const c of top) expect(c.logprob).toBeCloseTo(refLogprob(logits, c.id), 4);
        for (let i = 1; i < top.length; i++) expect(top[i].logprob).toBeLessThanOrEqual(top[i - 1].logprob);
        // a sampled token is at most as likely as the likeliest
        expect(t.logprob!).toBeLessThanOrEqual(top[0].logprob);
      }
      expect(differsFromScaled).toBe(true);
      // the candidates' text reads as the token would print after the previous one
      const t0 = withProbs.yielded[3];
      const prev = withProbs.yielded[2].id;
      for (const c of t0.topLogprobs!) expect(c.text).toBe(new TextDecoder().decode(llama.tokenizer.decodePiece(prev, c.id)));
    } finally {
      llama.dispose();
    }
  });

  it('of a greedy token are the largest, and match llama2.c\'s logits', async (ctx) => {
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt');
    const { model, tokenizer } = aidreams();
    if (!g || !model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      const run = await collect(llama.generate(g.prompt, { steps: g.steps, temperature: 0, echo: false, logprobs: true, topLogprobs: 10 }));
      expect(run.result.tokens).toEqual(g.tokens);
      for (const t of run.yielded) {
        expect(t.topLogprobs![0].id).toBe(t.id);
        expect(t.logprob).toBe(t.topLogprobs![0].logprob);
        expect(t.logprob!).toBeLessThanOrEqual(0);
      }
      // llama2.c's top 10 logits after the prompt: same candidates, same gaps between their logprobs
      const first = run.yielded[0].topLogprobs!;
      expect(first.map((c) => c.id)).toEqual(g.logits_last_prompt_top10.map(([id]) => id));
      for (const [i, [, logit]] of g.logits_last_prompt_top10.entries()) {
        expect(first[i].logprob - first[0].logprob).toBeCloseTo(logit - g.logits_last_prompt_top10[0][1], 3);
      }
      // logprobs alone: no candidates
      const bare = await collect(llama.generate(g.prompt, { steps: 20, temperature: 0, echo: false, logprobs: true }));
      expect(bare.yielded.every((t) => typeof t.logprob === 'number' && t.topLogprobs === undefined)).toBe(true);
    } finally {
      llama.dispose();
    }
  });

  it('read the logits back only when asked (greedy decoding keeps the argmax on the device)', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      const runner = (llama as unknown as { runner: BatchRunner }).runner;
      const spy = vi.spyOn(runner, 'advance');
      const sampling = (calls: [RowRequest][]) => calls.map(([r]) => r).filter((r) => r.argmax);
      await llama.generate('I dreamed of', { steps: 20, temperature: 0 }).result();
      const greedy = sampling(spy.mock.calls);
      expect(greedy.length).toBeGreaterThan(10);
      expect(greedy.every((r) => !r.logits)).toBe(true);
      spy.mockClear();
      await llama.chat('hi', { temperature: 0, maxTokens: 10, logprobs: true }).result();
      const asked = sampling(spy.mock.calls);
      expect(asked.length).toBeGreaterThan(0);
      expect(asked.every((r) => r.logits)).toBe(true);
      spy.mockRestore();
    } finally {
      llama.dispose();
    }
  });

  it('options are checked', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(MISSING);
    const llama = await Llama.load({ model, tokenizer });
    try {
      for (const what of ['generate', 'chat'] as const) {
        const call = (o: object) => () => (what === 'generate' ? llama.generate('x', o) : llama.chat('x', o));
        expectArgumentError(call({ logprobs: 'yes' }), new RegExp(`^${what}: logprobs must be true or false`));
        expectArgumentError(call({ logprobs: true, topLogprobs: 21 }), new RegExp(`^${what}: topLogprobs must be an integer in 0..20`));
        expectArgumentError(call({ logprobs: true, topLogprobs: -1 }), /topLogprobs must be an integer/);
        expectArgumentError(call({ topLogprobs: 3 }), new RegExp(`^${what}: topLogprobs needs logprobs: true`));
      }
    } finally {
      llama.dispose();
    }
  });
});
