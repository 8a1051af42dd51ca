import { describe, expect, it } from 'vitest';
import { generateGoldens, goldenModelPath, missingMessage, sharedFile, synthModel } from '@rama/testkit';
import { FormatError, ArgumentError } from '@rama/backend';
import { CpuBackend } from '@rama/tensor-cpu';
import { Llama } from './index.js';

const aidreams = () => ({ model: sharedFile('models/aidreams260K.bin'), tokenizer: sharedFile('models/tok512-aidreams.bin') });
const golden = (id: string) => generateGoldens().find((g) => g.id === id);

describe('Llama', () => {
  it('quantizes an fp32 checkpoint at load exactly as the q80 export + runq.c would (q80: true)', async (ctx) => {
    const g = golden('tiny-gqa-unshared-q80-greedy');
    const fp32 = g && synthModel('tiny-gqa.v0.bin', g.synth_args!.replace('--format q80', ''));
    const tokenizer = sharedFile(`models/tok512-aidreams.bin`);
    if (!g || !fp32 || !tokenizer) return ctx.skip(missingMessage('goldens/generate.jsonl'));
    const llama = await Llama.load({ model: fp32, tokenizer, q80: true });
    expect(llama.quantized).toBe(true);
    const r = await llama.generate(g.prompt, { steps: g.steps, temperature: 0 }).result();
    expect(r.tokens).toEqual(g.tokens);
    llama.dispose();
  });

  it('gives the same tokens whatever the prompt batch size', async (ctx) => {
    const g = golden('aidreams-greedy-prompt');
    const { model, tokenizer } = aidreams();
    if (!g || !model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    for (const batchSize of [1, 3, 64]) {
      const llama = await Llama.load({ model, tokenizer, batchSize });
      const r = await llama.generate(g.prompt, { steps: g.steps, temperature: 0 }).result();
      expect(r.tokens).toEqual(g.tokens);
      expect(r.reason).toBe('steps');
      expect(r.promptTokens).toBe(g.prompt_tokens.length);
      llama.dispose();
    }
    // a backend the caller made with room for fewer positions per step than batchSize
    const backend = await CpuBackend.create({ maxRows: 2 });
    const llama = await Llama.load({ model, tokenizer, backend, batchSize: 32 });
    expect(llama.batchSize).toBe(2);
    expect((await llama.generate(g.prompt, { steps: g.steps, temperature: 0 }).result()).tokens).toEqual(g.tokens);
    llama.dispose();
    backend.dispose();
  });

  it('stops at a sampled BOS, at the context end, and when the prompt fills the steps', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer });
    const full = await llama.generate('', { steps: 0, temperature: 0 }).result();
    expect(full.reason).toBe('context');
    expect(full.tokens.length).toBe(llama.contextLength + 1);
    const short = await llama.generate('I dreamed of a long long road', { steps: 3, temperature: 0 }).result();
    expect(short.reason).toBe('steps');
    expect(short.generatedTokens).toBe(0);
    expect(short.tokens).toEqual(llama.tokenizer.encode('I dreamed of a long long road').slice(0, 4));
    const g = golden('aidreams-topp-seed42');
    if (g) {
      // this golden ends because BOS was sampled before seq_len
      const r = await llama.generate(g.prompt, { steps: g.steps, temperature: g.temperature, topp: g.topp, seed: g.seed }).result();
      expect(r.tokens).toEqual(g.tokens);
      expect(r.reason).toBe('bos');
    }
    llama.dispose();
  });

  it('an aborted generation leaves the model usable', async (ctx) => {
    const g = golden('aidreams-greedy-bos');
    const { model, tokenizer } = aidreams();
    if (!g || !model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer });
    const ac = new AbortController();
    const gen = llama.generate('', { steps: 0, temperature: 0, signal: ac.signal });
    let n = 0;
    for await (const t of gen) {
      void t;
      if (++n === 5) ac.abort();
    }
    const aborted = await gen.result();
    expect(aborted.reason).toBe('aborted');
    expect(aborted.tokens.length).toBe(6);
    // breaking out of the loop early also ends it cleanly
    for await (const t of llama.generate('', { steps: 0, temperature: 0 })) if (t) break;
    const again = await llama.generate('', { steps: 0, temperature: 0 }).result();
    expect(again.tokens).toEqual(g.tokens);
    llama.dispose();
    expect(() => llama.generate('x')).not.toThrow(); // creating is lazy
    await expect(llama.generate('x').result()).rejects.toThrow(/disposed/);
  });

  it('chats with the Llama 2 template, continuing the KV cache across turns', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const llama = await Llama.load({ model, tokenizer });
    const first = await llama.chat('hello', { system: 'be brief', temperature: 0, maxTokens: 10 }).result();
    const rendered = '[INST] <<SYS>>\nbe brief\n<</SYS>>\n\nhello [/INST]';
    const p1 = llama.tokenizer.encode(rendered);
    expect(first.tokens.slice(0, p1.length)).toEqual(p1);
    expect(first.generatedTokens).toBeGreaterThan(0);
    expect(['eos', 'steps']).toContain(first.reason);
    const second = await llama.chat('again', { temperature: 0, maxTokens: 5 }).result();
    // the second turn starts with the first reply's last token, then its own [INST] prompt
    const p2 = llama.tokenizer.encode('[INST] again [/INST]');
    expect(second.tokens.slice(1, 1 + p2.length)).toEqual(p2);
    expect(second.tokens[0]).toBe(first.tokens[first.tokens.length - 1]);
    // a chat turn equals generating the whole conversation's tokens in one sequence
    llama.resetChat();
    const again = await llama.chat('hello', { system: 'be brief', temperature: 0, maxTokens: 10 }).result();
    expect(again.tokens).toEqual(first.tokens);
    llama.dispose();
  });

  it('rejects a tokenizer whose vocabulary does not match the model, naming the file', async (ctx) => {
    const model = sharedFile('models/aidreams260K.bin');
    const tokenizer = sharedFile('models/tokenizer.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const err = await Llama.load({ model, tokenizer }).catch((e) => e);
    expect(err).toBeInstanceOf(FormatError);
    expect(err.message).toMatch(/tokenizer\.bin.*32000.*512|tokenizer\.bin.*512/);
  });

  it('validates options', async (ctx) => {
    const { model, tokenizer } = aidreams();
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    await expect(Llama.load({ model, tokenizer, contextLength: 100000 })).rejects.toBeInstanceOf(ArgumentError);
    await expect(Llama.load({ model, tokenizer, backend: 'tpu' as never })).rejects.toThrow(/backend must be/);
    const llama = await Llama.load({ model, tokenizer, contextLength: 16 });
    expect(() => llama.generate('x', { steps: -1 })).toThrow(ArgumentError);
    const r = await llama.generate('', { steps: 0, temperature: 0 }).result();
    expect(r.tokens.length).toBe(17);
    expect(r.reason).toBe('context');
    llama.dispose();
  });

  it('loads from bytes and Blobs as in a browser', async (ctx) => {
    const g = golden('aidreams-greedy-prompt');
    const { model, tokenizer } = aidreams();
    if (!g || !model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const { readFile } = await import('node:fs/promises');
    const llama = await Llama.load({ model: new Blob([await readFile(model)]), tokenizer: new Uint8Array(await readFile(tokenizer)) });
    const r = await llama.generate(g.prompt, { steps: g.steps, temperature: 0, logits: true });
    let sawLogits = false;
    for await (const t of r) if (!t.prompt) sawLogits ||= t.logits?.length === 512;
    expect(sawLogits).toBe(true);
    expect((await r.result()).tokens).toEqual(g.tokens);
    llama.dispose();
  });
});
