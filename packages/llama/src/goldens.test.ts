/**
 * Every case of shared/goldens/generate.jsonl through the API on the CPU
 * backend: the exact token ids and the exact text llama2.c produced (see
 * LIBM_BOUND_GOLDENS in @rama/testkit for the one case checked up to a prefix).
 */
import { describe, expect, it } from 'vitest';
import { comparableOutput, generateGoldens, goldenExpectation, goldenModelPath, missingMessage, sharedFile } from '@rama/testkit';
import { Llama } from './index.js';

for (const threads of [undefined, 1, 2]) describe(`generate goldens (cpu${threads ? `, threads: ${threads}` : ''})`, () => {
  for (const g of generateGoldens()) {
    it(g.id, async (ctx) => {
      const model = goldenModelPath(g);
      const tokenizer = sharedFile(`models/${g.tokenizer}`);
      if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
      const llama = await Llama.load({ model, tokenizer, backend: 'cpu', threads });
      try {
        const gen = llama.generate(g.prompt, { steps: g.steps, temperature: g.temperature, topp: g.topp, seed: g.seed });
        let streamed = '';
        for await (const t of gen) streamed += t.text;
        const r = await gen.result();
        expect(comparableOutput(g, r)).toEqual(goldenExpectation(g));
        expect(streamed).toBe(r.text);
      } finally {
        llama.dispose();
      }
    });
  }
});
