/**
 * Jinja chat templates (tokenizer.chat_template) set on GGUF fixtures: the
 * Llama 3, ChatML (Qwen2/SmolLM2), Zephyr (TinyLlama) and Mistral templates,
 * as published with those models. For each, a multi-turn chat (a whole
 * conversation, string turns continuing it, a resent longer conversation)
 * must read exactly the tokens of the whole conversation's rendering, written
 * out here by hand and tokenized with special-token text as those tokens,
 * and only those its KV cache does not already hold. Templates that do not
 * parse or that fail are FormatErrors naming the file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingMessage, sharedFile } from '@rama/testkit';
import { ArgumentError, FormatError } from '@rama/core';
import { Llama, type ChatMessage } from './index.js';
import { encodeGGUF, readGGUFContents, withMetadata, type GGUFContents } from './test-gguf.js';

const LLAMA3 =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
const CHATML =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const ZEPHYR =
  "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
/** Marks the last message: every turn rewrites the one before it, so the cache is reused only up to there. */
const REWRITING =
  "{% for m in messages %}{% if loop.last %}>>{% endif %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";
const MISTRAL =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

type Msg = { role: string; content: string };

interface Case {
  name: string;
  fixture: string;
  template: string;
  /** The special tokens' texts the rendering holds (tokenized as those tokens). */
  specials: string[];
  /** Reserved tokens renamed for the test (ChatML on Llama 3's vocabulary). */
  rename?: Record<string, string>;
  /** The rendering, written out by hand from the template. */
  render(msgs: Msg[]): string;
  system: boolean;
}

const CASES: Case[] = [
  {
    name: 'Llama 3',
    fixture: 'llama3-bpe-tiny-f16',
    template: LLAMA3,
    specials: ['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'],
    render: (msgs) =>
      '<|begin_of_text|>' + msgs.map((m) => `<|start_header_id|>${m.role}<|end_header_id|>\n\n${m.content.trim()}<|eot_id|>`).join('') +
      '<|start_header_id|>assistant<|end_header_id|>\n\n',
    system: true,
  },
  {
    name: 'ChatML',
    fixture: 'llama3-bpe-tiny-f16',
    template: CHATML,
    specials: ['<|begin_of_text|>', '<|im_start|>', '<|im_end|>'],
    rename: { '<|reserved_special_token_0|>': '<|im_start|>', '<|reserved_special_token_1|>': '<|im_end|>' },
    // No BOS in the template: the vocabulary adds one, as llama.cpp does.
    render: (msgs) =>
      '<|begin_of_text|>' + (msgs[0].role === 'system' ? '' : '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n') +
      msgs.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + '<|im_start|>assistant\n',
    system: false,
  },
  {
    name: 'Zephyr',
    fixture: 'llama2vocab-tiny-f32',
    template: ZEPHYR,
    specials: ['<s>', '</s>'],
    render: (msgs) => '<s>' + msgs.map((m) => `<|${m.role}|>\n${m.content}</s>\n`).join('') + '<|assistant|>\n',
    system: true,
  },
  {
    name: 'Mistral',
    fixture: 'llama2vocab-tiny-f32',
    template: MISTRAL,
    specials: ['<s>', '</s>'],
    render: (msgs) => '<s>' + msgs.map((m) => (m.role === 'user' ? `[INST] ${m.content} [/INST]` : `${m.content}</s>`)).join(''),
    system: false,
  },
  {
    name: 'a template that rewrites earlier turns',
    fixture: 'llama2vocab-tiny-f32',
    template: REWRITING,
    specials: ['<s>', '</s>'],
    // No BOS in the template: one is added.
    render: (msgs) => '<s>' + msgs.map((m, i) => `${i === msgs.length - 1 ? '>>' : ''}${m.role}: ${m.content}\n`).join('') + 'assistant:',
    system: true,
  },
];

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'rama-chat-template-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const contents = new Map<string, GGUFContents>();
async function fixture(name: string): Promise<GGUFContents | undefined> {
  const path = sharedFile(`gguf/${name}.gguf`);
  if (!path) return undefined;
  if (!contents.has(name)) contents.set(name, await readGGUFContents(path));
  return contents.get(name);
}

/** The fixture with `template` (and renamed tokens) written to a file of its own. */
async function modelWith(c: Case, template: string, file: string): Promise<string | undefined> {
  const base = await fixture(c.fixture);
  if (!base) return undefined;
  const changes: Record<string, unknown> = { 'tokenizer.chat_template': template };
  if (c.rename) {
    const tokens = [...(base.metadata.find(([k]) => k === 'tokenizer.ggml.tokens')![1] as string[])];
    for (const [from, to] of Object.entries(c.rename)) tokens[tokens.indexOf(from)] = to;
    changes['tokenizer.ggml.tokens'] = tokens;
  }
  const path = join(dir, file);
  writeFileSync(path, encodeGGUF(withMetadata(base, changes as never)));
  return path;
}

/** The reference tokenization: each special token's text is its id, the text between is plain text, BOS first. */
function reference(llama: Llama, text: string, specials: string[]): number[] {
  const ids = new Map(specials.map((s) => [s, tokenId(llama, s)]));
  const re = new RegExp(specials.map((s) => s.replace(/[|[\]<>/]/g, '\\$&')).join('|'), 'g');
  const out: number[] = [];
  let at = 0;
  for (const m of text.matchAll(re)) {
    if (m.index! > at) out.push(...llama.tokenize(text.slice(at, m.index), { bos: false }));
    out.push(ids.get(m[0])!);
    at = m.index! + m[0].length;
  }
  if (at < text.length) out.push(...llama.tokenize(text.slice(at), { bos: false }));
  return out;
}

/** The id of the token whose vocabulary text is `text`. */
function tokenId(llama: Llama, text: string): number {
  for (let i = 0; i < llama.spec.vocabSize; i++) if (pieceText(llama, i) === text) return i;
  throw new Error(`no token ${text}`);
}

const pieceCache = new WeakMap<Llama, string[]>();
/** A token's text as stored in the vocabulary. */
function pieceText(llama: Llama, id: number): string {
  let pieces = pieceCache.get(llama);
  if (!pieces) {
    const dec = new TextDecoder();
    pieces = Array.from({ length: llama.spec.vocabSize }, (_, i) => dec.decode(llama.tokenizer.piece(i)));
    pieceCache.set(llama, pieces);
  }
  return pieces[id];
}

describe('chat with the model\'s Jinja template', () => {
  for (const c of CASES) {
    it(`${c.name}: every turn reads the rendering's tokens beyond what the cache holds`, async (ctx) => {
      const path = await modelWith(c, c.template, `${c.name}.gguf`);
      if (!path) return ctx.skip(missingMessage(`gguf/${c.fixture}.gguf`));
      const llama = await Llama.load({ model: path, contextLength: 128 });
      try {
        expect(llama.spec.chatTemplateSource).toBe(c.template);
        const s = llama.session();
        const conv: Msg[] = c.system ? [{ role: 'system', content: 'You are terse.' }] : [];
        const before: number[] = [];
        /** Runs a turn, checks what it read against the reference rendering, adds the reply to conv. */
        const turn = async (input: string | ChatMessage[], user: string) => {
          conv.push({ role: 'user', content: user });
          const want = reference(llama, c.render(conv), c.specials);
          const cached = [...s.tokens];
          const g = s.chat(input, { temperature: 0, maxTokens: 4 });
          const r = await g.result();
          let common = 0;
          while (common < cached.length && common < want.length - 1 && cached[common] === want[common]) common++;
          expect(r.position).toBe(common);
          expect(r.tokens.slice(0, r.promptTokens)).toEqual(want.slice(common));
          expect([...s.tokens.slice(0, want.length)]).toEqual(want);
          before.push(common);
          conv.push({ role: 'assistant', content: r.text });
        };
        await turn(c.system ? [conv[0] as ChatMessage, { role: 'user', content: 'Hi there!' }] : 'Hi there!', 'Hi there!');
        expect(before[0]).toBe(0);
        await turn('What is 2 + 2?', 'What is 2 + 2?');
        await turn([...conv.map((m) => ({ ...m }) as ChatMessage), { role: 'user', content: 'And 3 + 3?' }], 'And 3 + 3?');
        // Earlier turns were not read again: each later turn started past the previous one's prompt.
        expect(before[1]).toBeGreaterThan(0);
        expect(before[2]).toBeGreaterThan(before[1]);
      } finally {
        llama.dispose();
      }
    });
  }

  it('context shift: the oldest turns go, the system prompt stays, what is kept is read as the template renders it', async (ctx) => {
    const c = CASES[2];
    const path = await modelWith(c, c.template, 'shift.gguf');
    if (!path) return ctx.skip(missingMessage(`gguf/${c.fixture}.gguf`));
    const context = 80;
    const llama = await Llama.load({ model: path, contextLength: context });
    try {
      const s = llama.session();
      const system: Msg = { role: 'system', content: 'Be brief.' };
      let turns: Msg[] = [];
      let shifts = 0;
      for (let i = 0; i < 6; i++) {
        const user: Msg = { role: 'user', content: `Tell me fact number ${i} about dogs.` };
        // What the session must keep: the most recent turns whose rendering leaves room for the reply (maxTokens).
        const reserve = 4;
        let kept = turns;
        let want = reference(llama, c.render([system, ...kept, user]), c.specials);
        while (want.length + reserve > context && kept.length > 0) {
          kept = kept.slice(2);
          want = reference(llama, c.render([system, ...kept, user]), c.specials);
        }
        if (kept.length < turns.length) shifts++;
        const r = await s.chat(user.content, { system: system.content, maxTokens: reserve, temperature: 0 }).result();
        expect([...s.tokens.slice(0, want.length)], `turn ${i}`).toEqual(want);
        expect(r.position + r.promptTokens, `turn ${i}`).toBe(want.length);
        turns = [...kept, user, { role: 'assistant', content: r.text }];
      }
      expect(shifts).toBeGreaterThan(0);
      const e = await s.chat('dogs '.repeat(100), { maxTokens: 4 }).result().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(ArgumentError);
      expect((e as Error).message).toMatch(/too long for the context \(80\)/);
      // The refused turn left the conversation as it was.
      const user: Msg = { role: 'user', content: 'One more.' };
      let kept = turns;
      let want = reference(llama, c.render([system, ...kept, user]), c.specials);
      while (want.length + 4 > context && kept.length > 0) want = reference(llama, c.render([system, ...(kept = kept.slice(2)), user]), c.specials);
      await s.chat(user.content, { maxTokens: 4, temperature: 0 }).result();
      expect([...s.tokens.slice(0, want.length)]).toEqual(want);
    } finally {
      llama.dispose();
    }
  });

  it('ends a reply at the end-of-turn tokens (<|eot_id|>, <|im_end|>) as well as EOS', async (ctx) => {
    const llama3 = await modelWith(CASES[0], LLAMA3, 'eot.gguf');
    const chatml = await modelWith(CASES[1], CHATML, 'im_end.gguf');
    if (!llama3 || !chatml) return ctx.skip(missingMessage('gguf/llama3-bpe-tiny-f16.gguf'));
    for (const [path, stop] of [[llama3, '<|eot_id|>'], [chatml, '<|im_end|>']]) {
      const llama = await Llama.load({ model: path });
      try {
        expect(llama.spec.stopIds).toContain(tokenId(llama, stop));
        expect(llama.spec.stopIds).toContain(llama.spec.eosId);
      } finally {
        llama.dispose();
      }
    }
  });

  it('a chat reply ends when the model samples an end-of-turn token named only by its text (<|im_end|>)', async (ctx) => {
    const base = await fixture('llama2vocab-tiny-f32');
    if (!base) return ctx.skip(missingMessage('gguf/llama2vocab-tiny-f32.gguf'));
    // Token 0 becomes <|im_end|> (a control token), and a zero final norm makes every logit 0, so greedy decoding samples id 0.
    const tokens = [...(base.metadata.find(([k]) => k === 'tokenizer.ggml.tokens')![1] as string[])];
    tokens[0] = '<|im_end|>';
    const types = Int32Array.from(base.metadata.find(([k]) => k === 'tokenizer.ggml.token_type')![1] as Int32Array);
    types[0] = 3;
    const changed = withMetadata(base, { 'tokenizer.ggml.tokens': tokens, 'tokenizer.ggml.token_type': types, 'tokenizer.chat_template': CHATML });
    changed.tensors = changed.tensors.map((t) => (t.name === 'output_norm.weight' ? { ...t, data: new Uint8Array(t.data.length) } : t));
    const path = join(dir, 'im_end-stop.gguf');
    writeFileSync(path, encodeGGUF(changed));
    const llama = await Llama.load({ model: path });
    try {
      expect(llama.spec.stopIds).toContain(0);
      const r = await llama.chat('Hi', { temperature: 0, maxTokens: 10 }).result();
      expect(r.reason).toBe('eos');
      expect(r.tokens[r.tokens.length - 1]).toBe(0);
      expect(r.text).toBe('');
      // The next turn renders the empty reply, closed by the template's own <|im_end|>.
      const r2 = await llama.chat('Again', { temperature: 0, maxTokens: 10 }).result();
      // (<|im_start|> is plain text in this vocabulary.)
      const msgs = [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: '' }, { role: 'user', content: 'Again' }];
      const want = reference(llama, CASES[1].render(msgs).replace('<|begin_of_text|>', '<s>'), ['<s>', '<|im_end|>']);
      expect(r2.reason).toBe('eos');
      expect(r2.position).toBeGreaterThan(0);
      expect(r2.tokens.slice(0, r2.promptTokens)).toEqual(want.slice(r2.position));
    } finally {
      llama.dispose();
    }
  });

  it('a template that does not parse is a FormatError naming the file when chat needs it (the model still loads and generates)', async (ctx) => {
    const path = await modelWith(CASES[2], "{% for message in messages %}{{ message['content'] }", 'broken.gguf');
    if (!path) return ctx.skip(missingMessage('gguf/llama2vocab-tiny-f32.gguf'));
    const llama = await Llama.load({ model: path });
    try {
      const e = await llama.chat('Hi', { maxTokens: 2 }).result().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(FormatError);
      expect((e as Error).message).toContain(path);
      expect((e as Error).message).toMatch(/chat template .* does not parse/);
      expect((await llama.generate('Hi', { maxTokens: 2 }).result()).generatedTokens).toBe(2);
    } finally {
      llama.dispose();
    }
  });

  it("a template's raise_exception is a FormatError naming the file and saying why", async (ctx) => {
    const path = await modelWith(CASES[3], MISTRAL, 'mistral-system.gguf');
    if (!path) return ctx.skip(missingMessage('gguf/llama2vocab-tiny-f32.gguf'));
    const llama = await Llama.load({ model: path });
    try {
      const e = await llama.chat('Hi', { system: 'Be brief.', maxTokens: 2 }).result().catch((x: unknown) => x);
      expect(e).toBeInstanceOf(FormatError);
      expect((e as Error).message).toContain(path);
      expect((e as Error).message).toContain('Conversation roles must alternate');
      // The session is still usable.
      const r = await llama.chat('Hi', { maxTokens: 2, temperature: 0 }).result();
      expect(r.promptTokens).toBeGreaterThan(0);
    } finally {
      llama.dispose();
    }
  });
});
