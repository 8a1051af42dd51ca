/**
 * Llama.load with a Hugging Face tokenizer.json instead of tokenizer.bin.
 * The goldens' vocabularies (tok512 and Llama 2's 32,000 tokens) are written
 * here as tokenizer.json files the way Hugging Face's converter writes a
 * SentencePiece BPE model (Llama 2's format: "▁" for spaces, merges ranked
 * by the merged piece's score, Prepend + Replace normalizer, byte fallback,
 * a TemplateProcessing BOS, a ByteFallback/Fuse/Strip decoder). Generation
 * from such a file must give llama2.c's golden token ids and text.
 */
import { describe, expect, it } from 'vitest';
import { generateGoldens, goldenExpectation, goldenModelPath, missingMessage, sharedFile } from '@rama/testkit';
import { Tokenizer } from '@rama/tokenizer';
import { Llama } from './index.js';

const SPACE = '\u2581';

/** A tokenizer.bin's vocabulary as a Llama-2-style tokenizer.json. */
async function tokenizerJson(binPath: string): Promise<string> {
  const bin = await Tokenizer.fromFile(binPath);
  const dec = new TextDecoder();
  const pieces: string[] = [];
  for (let id = 0; id < bin.vocabSize; id++) {
    pieces.push(id === 0 ? '<unk>' : id === 1 ? '<s>' : id === 2 ? '</s>' : dec.decode(bin.piece(id)).replaceAll(' ', SPACE));
  }
  const vocab = new Map<string, number>();
  pieces.forEach((p, id) => {
    if (!vocab.has(p)) vocab.set(p, id);
  });
  // Every split of a piece into two pieces is a merge, ranked by the merged piece's score.
  const merges: { left: string; right: string; score: number; id: number }[] = [];
  pieces.forEach((p, id) => {
    if (id < 3 || /^<0x[0-9A-F]{2}>$/.test(p)) return;
    const chars = Array.from(p);
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      if (vocab.has(left) && vocab.has(right)) merges.push({ left, right, score: bin.score(id), id });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id);
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return JSON.stringify({
    version: '1.0',
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPACE }, { type: 'Replace', pattern: { String: ' ' }, content: SPACE }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab: Object.fromEntries(vocab), merges: merges.map((m) => `${m.left} ${m.right}`) },
  });
}

describe('Llama.load with a tokenizer.json gives the generate goldens', () => {
  const cases = ['aidreams-greedy-prompt', 'aidreams-temp0.8-nottopp-seed7', 's15-shape-fp32-greedy'];
  for (const g of generateGoldens().filter((x) => cases.includes(x.id))) {
    it(g.id, async (ctx) => {
      const model = goldenModelPath(g);
      const bin = sharedFile(`models/${g.tokenizer}`);
      if (!model || !bin) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
      const json = await tokenizerJson(bin);
      // As bytes: Llama.load tells a tokenizer.json from a tokenizer.bin by content.
      const llama = await Llama.load({ model, tokenizer: new TextEncoder().encode(json) });
      try {
        expect(llama.tokenizer.source).toBe('<buffer>');
        expect(llama.tokenizer.vocabSize).toBe(llama.config.vocabSize);
        expect(llama.tokenize(g.prompt)).toEqual(g.prompt_tokens);
        const gen = llama.generate(g.prompt, { steps: g.steps, temperature: g.temperature, topp: g.topp, seed: g.seed });
        let streamed = '';
        for await (const t of gen) streamed += t.text;
        const r = await gen.result();
        const want = goldenExpectation(g);
        expect(r.tokens).toEqual(want.tokens);
        // llama2.c prints tokenizer.bin's EOS piece, "\n</s>\n"; a tokenizer.json's special tokens print nothing.
        if (want.text !== undefined) expect(r.text).toBe(want.text.replace(/\n<\/s>\n$/, ''));
        expect(streamed).toBe(r.text);
      } finally {
        llama.dispose();
      }
    }, 300_000);
  }
});
