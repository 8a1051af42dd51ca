/**
 * `tokenizer.ggml.add_bos_token = false` (SmolLM2, Qwen2): prompts start
 * without BOS, as llama.cpp feeds them. The Llama 3 fixture rewritten with the
 * flag false must feed exactly the prompt's own ids (the same logits as
 * passing those ids), and its chat template's rendering gets no BOS added.
 */
import { describe, expect, it } from 'vitest';
import { missingMessage, sharedFile } from '@rama/testkit';
import { Llama } from './index.js';
import { encodeGGUF, readGGUFContents, withMetadata } from './test-gguf.js';

const FIXTURE = 'gguf/llama3-bpe-tiny-f16.gguf';

describe('add_bos_token = false', () => {
  it('generate, tokenize and chat start without BOS; the file with the flag true keeps it', async (ctx) => {
    const path = sharedFile(FIXTURE);
    if (!path) return ctx.skip(missingMessage(FIXTURE));
    const contents = await readGGUFContents(path);
    const noBos = encodeGGUF(withMetadata(contents, {
      'tokenizer.ggml.add_bos_token': false,
      // ChatML, as SmolLM2 and Qwen2 write it: no BOS in the template
      'tokenizer.chat_template': "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    }));
    const withBos = await Llama.load({ model: path, threads: 1 });
    const without = await Llama.load({ model: noBos, threads: 1, sessions: 2 });
    try {
      const bos = withBos.spec.bosId;
      const text = 'Hello world, this is a test';
      expect(withBos.tokenize(text)[0]).toBe(bos);
      const ids = without.tokenize(text);
      expect(ids[0]).not.toBe(bos);
      expect(ids).toEqual(withBos.tokenize(text).slice(1));
      expect(without.countTokens(text)).toBe(ids.length);

      const greedy = { steps: ids.length + 6, temperature: 0, logits: true } as const;
      const fromText = await without.generate(text, greedy).result();
      const fromIds = await without.generate(ids, greedy).result();
      expect(fromText.tokens).toEqual(fromIds.tokens);
      expect(fromText.tokens.slice(0, ids.length)).toEqual(ids);
      // with BOS first the model sees another sequence: other tokens follow
      const withFirst = await without.generate([bos, ...ids], greedy).result();
      expect(withFirst.tokens[0]).toBe(bos);

      const session = without.session();
      const reply = session.chat([{ role: 'user', content: 'Hi' }], { maxTokens: 2, temperature: 0 });
      await reply.result();
      expect(session.tokens[0]).not.toBe(bos);
      expect(without.detokenize(session.tokens)).toMatch(/^<\|im_start\|>user\nHi<\|im_end\|>\n<\|im_start\|>assistant\n/);
      session.dispose();
    } finally {
      withBos.dispose();
      without.dispose();
    }
  });
});
