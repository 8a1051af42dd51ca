/**
 * Many sequences on one model: every golden through a session, alone and with
 * seven other sessions generating at the same time (their steps batched
 * together), must give llama2.c's exact tokens; each of the seven must give
 * what it gives alone.
 */
import { describe, expect, it } from 'vitest';
import {
  comparableOutput, generateGoldens, goldenExpectation, goldenModelPath, missingMessage, sharedFile, type BackendKind, type GenerateGolden,
} from '@rama/testkit';
import { ArgumentError, type Backend } from '@rama/backend';
import { CpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from '@rama/tensor-webgpu';
import { Llama, type GenerateOptions } from './index.js';

/**
 * `othersSteps` caps the other sessions' lengths: SwiftShader runs WebGPU on
 * the CPU, slowly, and each of the seven also runs alone for reference. The
 * golden itself always runs whole; `alone` skips its solo run where
 * goldens.test.ts already runs it on the same backend.
 */
const variants: { name: string; kind: BackendKind; make: () => Promise<Backend>; othersSteps: number; alone: boolean }[] = [
  { name: 'cpu, threads: 1', kind: 'cpu', make: () => CpuBackend.create({ maxRows: 32, threads: 1 }), othersSteps: 1 << 20, alone: true },
  { name: 'cpu, threads: 2', kind: 'cpu', make: () => CpuBackend.create({ maxRows: 32, threads: 2 }), othersSteps: 1 << 20, alone: true },
  { name: 'webgpu', kind: 'webgpu', make: () => WebGpuBackend.create({ maxRows: 32 }), othersSteps: 24, alone: false },
];

/** Seven other sequences: other prompts, greedy and sampled, of other lengths. */
const others = (g: GenerateGolden, cap: number): { prompt: string; opts: GenerateOptions }[] =>
  ['Once', 'The dog', '', 'A long time ago in a land', 'Lily', 'Tom and Ben', 'Sun'].map((prompt, i) => ({
    prompt,
    opts: { steps: Math.min(cap, Math.max(4, g.steps - 7 * i)), temperature: i % 2 ? 0 : 0.9, topp: 0.9, seed: 100 + i },
  }));

for (const v of variants) {
  describe(`goldens through sessions (${v.name})`, () => {
    for (const g of generateGoldens()) {
      it(`${g.id}: alone and beside 7 other sessions`, async (ctx) => {
        const model = goldenModelPath(g);
        const tokenizer = sharedFile(`models/${g.tokenizer}`);
        if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
        const backend = await v.make();
        const llama = await Llama.load({ model, tokenizer, backend, sessions: 8 });
        try {
          const goldenOpts = { steps: g.steps, temperature: g.temperature, topp: g.topp, seed: g.seed };
          const s0 = llama.session();
          if (v.alone) {
            const alone = await s0.generate(g.prompt, goldenOpts).result();
            expect(comparableOutput(g, alone, v.kind)).toEqual(goldenExpectation(g, v.kind));
          }

          const rest = Array.from({ length: 7 }, () => llama.session());
          const work = others(g, v.othersSteps);
          const soloOthers = [];
          for (const [i, w] of work.entries()) soloOthers.push((await rest[i].generate(w.prompt, w.opts).result()).tokens);

          const together = await Promise.all([
            s0.generate(g.prompt, goldenOpts).result(),
            ...work.map((w, i) => rest[i].generate(w.prompt, w.opts).result()),
          ]);
          expect(comparableOutput(g, together[0], v.kind)).toEqual(goldenExpectation(g, v.kind));
          expect(together.slice(1).map((r) => r.tokens)).toEqual(soloOthers);
          expect(s0.tokens).toEqual(together[0].tokens.slice(0, s0.tokens.length));
        } finally {
          llama.dispose();
          backend.dispose();
        }
      });
    }
  });
}

describe('sessions', () => {
  it('hold their own conversations, run in parallel, and give back their slots', async (ctx) => {
    const model = sharedFile('models/aidreams260K.bin');
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer, sessions: 3 });
    try {
      const opts = { temperature: 0, maxTokens: 10 };
      // Reference: each conversation alone in the default session.
      const ref = async (turns: string[]) => {
        llama.resetChat();
        const out = [];
        for (const t of turns) out.push((await llama.chat(t, opts).result()).tokens);
        return out;
      };
      const convA = ['hello', 'tell me more', 'why?'];
      const convB = ['I dreamed of a cat', 'and then?'];
      const wantA = await ref(convA);
      const wantB = await ref(convB);

      const a = llama.session();
      const b = llama.session();
      expect(() => llama.session()).toThrow(ArgumentError); // the default session holds the third slot
      const runConv = async (s: typeof a, turns: string[]) => {
        const out = [];
        for (const t of turns) out.push((await s.chat(t, opts).result()).tokens);
        return out;
      };
      const [gotA, gotB] = await Promise.all([runConv(a, convA), runConv(b, convB)]);
      expect(gotA).toEqual(wantA);
      expect(gotB).toEqual(wantB);
      // What each session's cache holds: every token that entered the model, turn after turn.
      // (each turn's last token, its EOS, enters the model at the start of the next turn)
      expect(a.tokens).toEqual(wantA.flatMap((t) => t.slice(0, -1)));
      a.reset();
      expect((await a.chat(convA[0], opts).result()).tokens).toEqual(wantA[0]);
      a.dispose();
      await new Promise((r) => setTimeout(r, 0));
      const c = llama.session(); // a's slot is free again
      expect((await c.chat(convB[0], opts).result()).tokens).toEqual(wantB[0]);
      expect(() => a.generate('x')).toThrow(/disposed/);
    } finally {
      llama.dispose();
    }
  });
});

describe('context shift', () => {
  const files = () => ({ model: sharedFile('models/aidreams260K.bin'), tokenizer: sharedFile('models/tok512-aidreams.bin') });
  const messages = Array.from({ length: 50 }, (_, i) => ['hi', 'tell me a story', 'what then?', 'why?', 'and the dog?'][i % 5] + (i % 3 ? '' : ' please'));

  it('a 50-turn chat on a 128-position context goes on past it; every reply equals replaying the kept tokens from scratch', async (ctx) => {
    const { model, tokenizer } = files();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer, contextLength: 128, sessions: 2 });
    try {
      const chat = llama.session();
      const replay = llama.session();
      let shifts = 0;
      let total = 0;
      for (const [turn, message] of messages.entries()) {
        const r = await chat.chat(message, { system: 'You are kind.', temperature: 0, maxTokens: 24 }).result();
        expect(['eos', 'steps']).toContain(r.reason);
        if (turn > 0 && r.position === 0) shifts++;
        total += r.tokens.length;
        // What the model read before the reply: the kept cache up to this turn, then the turn's prompt.
        const prompt = [...chat.tokens.slice(0, r.position), ...r.tokens.slice(0, r.promptTokens)];
        const ref = await replay.generate(prompt, { temperature: 0, stopAtEos: true, echo: false, steps: r.position + r.tokens.length - 1 }).result();
        expect(ref.tokens.slice(prompt.length), `turn ${turn}`).toEqual(r.tokens.slice(r.promptTokens));
        // The system prompt is kept through every shift.
        const sys = llama.tokenizer.encode('[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\n');
        expect(chat.tokens.slice(0, sys.length - 1)).toEqual(sys.slice(0, -1));
      }
      expect(total).toBeGreaterThan(4 * 128);
      expect(shifts).toBeGreaterThan(3);
    } finally {
      llama.dispose();
    }
  });

  it('contextShift: false stops at the context; a prompt longer than the context is an ArgumentError unless truncated', async (ctx) => {
    const { model, tokenizer } = files();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer, contextLength: 64 });
    try {
      const reasons: string[] = [];
      for (const message of messages.slice(0, 10)) {
        const r = await llama.chat(message, { temperature: 0, maxTokens: 24, contextShift: false }).result();
        reasons.push(r.reason);
        if (r.reason === 'context') break;
      }
      expect(reasons).toContain('context');

      const long = 'once upon a time there was a little dog who liked to play in the park with his friends every day. '.repeat(2);
      expect(llama.tokenizer.encode(long).length).toBeGreaterThan(64);
      expect(() => llama.generate(long)).toThrow(/longer than the context \(64\).*truncate/);
      const t = await llama.generate(long, { truncate: true, temperature: 0 }).result();
      expect(t.tokens[0]).toBe(1);
      expect(t.promptTokens).toBe(64 - 16);
      expect(t.reason).toBe('context');
      expect(t.generatedTokens).toBe(64 - t.promptTokens + 1);
    } finally {
      llama.dispose();
    }
  });
});
