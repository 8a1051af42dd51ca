/**
 * The runtime around the model: the event loop keeps running during a CPU
 * generation, turns are ordered and decided when they run, no usage pattern
 * hangs the model, broken numerics and bad options get clear typed errors.
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cacheDir, generateGoldens, goldenModelPath, missingMessage, sharedFile } from '@rama/testkit';
import { ArgumentError, NumericError } from '@rama/backend';
import { Llama, type Generation } from './index.js';

const aidreams = () => ({ model: sharedFile('models/aidreams260K.bin'), tokenizer: sharedFile('models/tok512-aidreams.bin') });
const golden = (id: string) => generateGoldens().find((g) => g.id === id);

/** A stories15M-shape model (32000 vocab, 256 positions): a few ms per token, long enough to interrupt. */
function longModel() {
  const g = golden('s15-shape-q80-greedy');
  const model = g && goldenModelPath(g);
  const tokenizer = sharedFile('models/tokenizer.bin');
  return model && tokenizer ? { model, tokenizer } : undefined;
}

describe('a CPU generation lets the event loop run', () => {
  for (const threads of [1, 2]) {
    it(`an abort from a 30 ms timer stops it within 100 ms (${threads} thread${threads > 1 ? 's' : ''})`, async (ctx) => {
      const files = longModel();
      if (!files) return ctx.skip(missingMessage('goldens/generate.jsonl'));
      const llama = await Llama.load({ ...files, threads });
      try {
        // Unaborted, the whole context takes far longer than the timer.
        const full = await llama.generate('Once upon a time', { steps: 0, temperature: 0 }).result();
        expect(full.reason).toBe('context');
        expect(full.timing.promptMs + full.timing.generateMs).toBeGreaterThan(150);

        const ac = new AbortController();
        let abortedAt = 0;
        let ticks = 0;
        const interval = setInterval(() => ticks++, 5);
        const t0 = performance.now();
        setTimeout(() => {
          abortedAt = performance.now();
          ac.abort();
        }, 30);
        const r = await llama.generate('Once upon a time', { steps: 0, temperature: 0, signal: ac.signal }).result();
        const end = performance.now();
        clearInterval(interval);
        expect(r.reason).toBe('aborted');
        expect(abortedAt).toBeGreaterThan(0);
        expect(abortedAt - t0).toBeLessThan(100);
        expect(end - abortedAt).toBeLessThan(100);
        expect(ticks).toBeGreaterThanOrEqual(2);
        // What ran before the abort is the same greedy sequence.
        expect(r.tokens).toEqual(full.tokens.slice(0, r.tokens.length));
      } finally {
        llama.dispose();
      }
    });
  }
});

describe('turns on one model', () => {
  it('chat turns queued together give what they give one after another', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer });
    try {
      const opts = { temperature: 0, maxTokens: 12 };
      const sequential = [];
      sequential.push((await llama.chat('hello', { ...opts, system: 'be brief' }).result()).tokens);
      sequential.push((await llama.chat('and then?', opts).result()).tokens);
      sequential.push((await llama.chat('why?', opts).result()).tokens);
      llama.resetChat();

      // All three created before the first runs, then consumed concurrently.
      const a = llama.chat('hello', { ...opts, system: 'be brief' });
      const b = llama.chat('and then?', opts);
      const c = llama.chat('why?', opts);
      const together = await Promise.all([a.result(), b.result(), c.result()]);
      expect(together.map((r) => r.tokens)).toEqual(sequential);
    } finally {
      llama.dispose();
    }
  });

  it('resetChat is ordered with queued turns: the next turn starts a new conversation with its system prompt', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer });
    try {
      const opts = { temperature: 0, maxTokens: 8 };
      const fresh = (await llama.chat('hi', { ...opts, system: 'be kind' }).result()).tokens;
      llama.resetChat();
      const first = llama.chat('hello', { ...opts, system: 'be brief' });
      const firstDone = first.result();
      llama.resetChat(); // while the first turn is queued or running
      const second = await llama.chat('hi', { ...opts, system: 'be kind' }).result();
      await firstDone;
      // The turn after the reset is a new conversation: BOS, <<SYS>> block, at position 0.
      expect(second.tokens).toEqual(fresh);
      const sys = llama.tokenizer.encode('[INST] <<SYS>>\nbe kind\n<</SYS>>\n\nhi [/INST]');
      expect(second.tokens.slice(0, sys.length)).toEqual(sys);
    } finally {
      llama.dispose();
    }
  });

  it('an abandoned iterator does not lock the model: the next generation preempts it', async (ctx) => {
    const g = golden('aidreams-greedy-bos');
    const { model, tokenizer } = aidreams();
    if (!g || !model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer, preemptAfterMs: 20 });
    try {
      const abandoned = llama.generate('', { steps: 0, temperature: 0 });
      const it = abandoned[Symbol.asyncIterator]();
      expect((await it.next()).done).toBe(false);
      // `it` is never resumed. A later generation must still run, and give the golden.
      const later = await llama.generate('', { steps: 0, temperature: 0 }).result();
      expect(later.tokens).toEqual(g.tokens);
      const r = await abandoned.result();
      expect(r.reason).toBe('preempted');
      expect(r.generatedTokens).toBe(1);
      expect((await it.next()).done).toBe(true);
    } finally {
      llama.dispose();
    }
  });

  it('two iterators stepped in turn do not deadlock', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer, preemptAfterMs: 10 });
    try {
      const gens: Generation[] = [llama.generate('a', { steps: 20, temperature: 0 }), llama.generate('b', { steps: 20, temperature: 0 })];
      const its = gens.map((g) => g[Symbol.asyncIterator]());
      const done = [false, false];
      for (let i = 0; !(done[0] && done[1]); i++) {
        const k = i % 2;
        if (!done[k]) done[k] = (await its[k].next()).done === true;
      }
      const reasons = (await Promise.all(gens.map((g) => g.result()))).map((r) => r.reason);
      expect(reasons).toContain('preempted');
      // The model is still usable afterwards.
      expect((await llama.generate('a', { steps: 5, temperature: 0 }).result()).reason).toBe('steps');
    } finally {
      llama.dispose();
    }
  });

  it('a consumer that keeps asking for tokens is never preempted, however many generations wait', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer, preemptAfterMs: 0 });
    try {
      const prompts = ['one', 'two', 'three', 'four'];
      const results = await Promise.all(prompts.map((p) => llama.generate(p, { steps: 40, temperature: 0 }).result()));
      expect(results.map((r) => r.reason)).toEqual(prompts.map(() => 'steps'));
      for (const [i, p] of prompts.entries()) {
        expect(results[i].tokens).toEqual((await llama.generate(p, { steps: 40, temperature: 0 }).result()).tokens);
      }
    } finally {
      llama.dispose();
    }
  });
});

describe('non-finite numbers', () => {
  /** A copy of a v0 checkpoint whose weights after the header are all NaN. */
  function nanModel(): string | undefined {
    const g = golden('tiny-gqa-unshared-v0-greedy');
    const src = g && goldenModelPath(g);
    if (!src) return undefined;
    const out = join(cacheDir('models'), 'tiny-gqa-nan.v0.bin');
    copyFileSync(src, out);
    const bytes = readFileSync(out);
    const floats = new Float32Array(bytes.buffer, bytes.byteOffset + 28, (bytes.length - 28) / 4);
    floats.fill(NaN);
    writeFileSync(out, bytes);
    return out;
  }

  it('NaN weights give a NumericError, greedy (device argmax) and sampled', async (ctx) => {
    const model = nanModel();
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/tok512-aidreams.bin'));
    for (const backend of ['cpu'] as const) {
      const llama = await Llama.load({ model, tokenizer, backend });
      try {
        for (const temperature of [0, 1]) {
          const err = await llama.generate('hi', { steps: 10, temperature, seed: 1 }).result().catch((e) => e);
          expect(err).toBeInstanceOf(NumericError);
          expect(err.message).toMatch(/NaN.*non-finite/);
        }
      } finally {
        llama.dispose();
      }
    }
  });

  it('tiny temperatures and extreme repetition penalties decode greedily instead of producing garbage', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer });
    try {
      const greedy = (await llama.generate('I dreamed of', { steps: 40, temperature: 0 }).result()).tokens;
      for (const temperature of [1e-45, 1e-30, 1e-38]) {
        const r = await llama.generate('I dreamed of', { steps: 40, temperature, seed: 5 }).result();
        expect(r.tokens).toEqual(greedy);
      }
      const penalized = await llama.generate('I dreamed of', { steps: 40, temperature: 0.8, repetitionPenalty: 1e-308, seed: 5 }).result();
      expect(['steps', 'bos']).toContain(penalized.reason);
      expect(penalized.tokens.every((t) => t >= 0 && t < 512)).toBe(true);
    } finally {
      llama.dispose();
    }
  });
});

describe('options are validated with an ArgumentError naming the option', () => {
  it('load, generate and chat', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const badLoads: [Record<string, unknown>, RegExp][] = [
      [{ threads: 0 }, /threads/],
      [{ threads: 1.5 }, /threads/],
      [{ batchSize: NaN }, /batchSize/],
      [{ contextLength: -1 }, /contextLength/],
      [{ q80: 'yes' }, /q80/],
      [{ kvCacheType: 'q8_0' }, /kvCacheType/],
      [{ preemptAfterMs: -1 }, /preemptAfterMs/],
      [{ webgpu: 5 }, /webgpu/],
      [{ contextLenght: 16 }, /unknown option "contextLenght"/],
      [{ model: 42 }, /model must be/],
      [{ tokenizer: '' }, /tokenizer is an empty path/],
    ];
    for (const [extra, message] of badLoads) {
      const err = await Llama.load({ model, tokenizer, ...extra } as never).catch((e) => e);
      expect(err, JSON.stringify(extra)).toBeInstanceOf(ArgumentError);
      expect(err.message).toMatch(message);
    }
    const llama = await Llama.load({ model, tokenizer });
    try {
      const bad: [Record<string, unknown>, RegExp][] = [
        [{ seed: NaN }, /seed must be an integer/],
        [{ seed: 1.5 }, /seed must be an integer/],
        [{ seed: Infinity }, /seed must be an integer/],
        [{ seed: 'abc' }, /seed must be an integer.*"abc"/],
        [{ seed: 1e300 }, /seed must be an integer/],
        [{ seed: 0 }, /seed must be nonzero/],
        [{ seed: 2n ** 64n }, /seed must be nonzero/],
        [{ repetitionWindow: -5 }, /repetitionWindow/],
        [{ repetitionWindow: NaN }, /repetitionWindow/],
        [{ repetitionPenalty: 0 }, /repetitionPenalty/],
        [{ temperature: -1 }, /temperature/],
        [{ temperature: '0.5' }, /temperature/],
        [{ topp: NaN }, /topp/],
        [{ topk: 2.5 }, /topk/],
        [{ minp: 1 }, /minp/],
        [{ logits: 1 }, /logits/],
        [{ signal: {} }, /signal must be an AbortSignal/],
        [{ top_p: 0.9 }, /unknown option "top_p"/],
      ];
      for (const [opts, message] of bad) {
        for (const call of [() => llama.generate('x', opts as never), () => llama.chat('x', opts as never)]) {
          let err: unknown;
          try {
            call();
          } catch (e) {
            err = e;
          }
          expect(err, String(Object.keys(opts))).toBeInstanceOf(ArgumentError);
          expect((err as Error).message).toMatch(message);
        }
      }
      expect(() => llama.generate('x', { steps: 1.5 })).toThrow(/steps must be an integer/);
      expect(() => llama.generate('x', { echo: 'no' as never })).toThrow(/echo must be true or false/);
      expect(() => llama.chat('x', { maxTokens: 0 })).toThrow(/maxTokens must be an integer >= 1/);
      expect(() => llama.chat('x', { system: 5 as never })).toThrow(/system must be a string/);
      expect(() => llama.generate(undefined as never)).toThrow(/prompt must be a string/);
      expect(() => llama.chat(null as never)).toThrow(/message must be a string/);
      // a bigint seed and a negative one (taken modulo 2^64, as C's unsigned conversion) are fine
      expect((await llama.generate('x', { steps: 5, seed: 2n ** 63n + 5n }).result()).reason).toBe('steps');
      expect((await llama.generate('x', { steps: 5, seed: -7 }).result()).reason).toBe('steps');
    } finally {
      llama.dispose();
    }
  });
});
