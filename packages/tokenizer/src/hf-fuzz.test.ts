/**
 * Property-based tests: a mutated tokenizer.json or tokenizer_config.json
 * (any value anywhere replaced by random JSON, keys removed) must end in a
 * RamaError naming the source or in a tokenizer that encodes, decodes and
 * streams (encode may refuse with a RamaError); never a raw exception.
 *
 * Reproduce a failure with the seed (and path) fast-check prints:
 *   RAMA_FUZZ_SEED=<seed> RAMA_FUZZ_PATH=<path> npx vitest run src/hf-fuzz.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RamaError } from '@rama/core';
import { fuzzParams } from '@rama/testkit';
import { BYTE_TO_CHAR } from './bpe.js';
import { TextStream, Tokenizer } from './index.js';

const SP = '\u2581';
const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

/** A small SentencePiece-style file: Llama 2's layout, a handful of pieces and byte tokens. */
function spmDoc(): Record<string, unknown> {
  const pieces = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), SP, 'a', 'b', `${SP}a`, 'ab', `${SP}ab`];
  return {
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SP }, { type: 'Replace', pattern: { String: ' ' }, content: SP }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: SP }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE', unk_token: '<unk>', fuse_unk: true, byte_fallback: true,
      vocab: Object.fromEntries(pieces.map((p, i) => [p, i])), merges: [`${SP} a`, 'a b', `${SP}a b`],
    },
  };
}

/** A small byte-level file: Llama 3's layout, the 256 byte characters and a few merges. */
function byteLevelDoc(): Record<string, unknown> {
  const pieces = [...BYTE_TO_CHAR, 'Ġa', 'ab', 'Ġab'];
  return {
    added_tokens: [special(259, '<|end|>')],
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+" }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, use_regex: false },
      ],
    },
    post_processor: { type: 'ByteLevel' },
    decoder: { type: 'ByteLevel' },
    model: { type: 'BPE', ignore_merges: true, vocab: Object.fromEntries(pieces.map((p, i) => [p, i])), merges: [['Ġ', 'a'], ['a', 'b'], ['Ġa', 'b']] },
  };
}

const SPM_CONFIG = { bos_token: '<s>', eos_token: '</s>', add_bos_token: true, add_eos_token: false, clean_up_tokenization_spaces: false };
const BYTE_LEVEL_CONFIG = { eos_token: { content: '<|end|>' }, clean_up_tokenization_spaces: true };

/** Every path to a value in a JSON tree, in a fixed order. */
function paths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

interface Edit {
  pick: number;
  value: unknown;
  remove: boolean;
}

/** Applies edits to a copy: each replaces (or removes) the value at one path. */
function mutate(doc: unknown, edits: Edit[]): unknown {
  let root = structuredClone(doc);
  for (const e of edits) {
    const all = paths(root);
    const p = all[e.pick % all.length];
    if (p.length === 0) {
      root = e.value;
      continue;
    }
    let parent = root as Record<string | number, unknown>;
    for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
    const last = p[p.length - 1];
    if (e.remove && !Array.isArray(parent)) delete parent[last];
    else parent[last] = e.value;
  }
  return root;
}

const editArb: fc.Arbitrary<Edit> = fc.record({
  pick: fc.nat(),
  value: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('<s>', SP, 'a b', 'Ġ a', 'Metaspace', 'Split', 'ByteLevel', 'Isolated', '[', '(?i:x', 300, -1, 1.5)),
  remove: fc.boolean(),
});
const TEXTS = ['Once upon a time', 'ab ab  <s></s><|end|>', '', ' ', 'é🦙 \u0000', "it's 123456"];

function exercise(t: Tokenizer): void {
  for (const text of TEXTS) {
    for (const special of [false, true]) {
      let ids: number[] = [];
      try {
        ids = t.encode(text, { special, bos: t.bosId >= 0, eos: t.eosId >= 0 });
      } catch (e) {
        if (!(e instanceof RamaError)) throw e;
      }
      for (const id of ids) expect(id >= 0 && id < t.vocabSize, `id ${id} of ${t.vocabSize}`).toBe(true);
      t.decode(ids);
    }
  }
  const stream = new TextStream(t);
  for (let id = 0; id < t.vocabSize; id++) stream.push(id % 3 === 0 ? t.bosId : 0, id);
  stream.flush();
}

describe('fuzz: mutated tokenizer.json files end in a RamaError or a working tokenizer', () => {
  for (const [name, doc, cfg] of [['SentencePiece-style', spmDoc(), SPM_CONFIG], ['byte-level', byteLevelDoc(), BYTE_LEVEL_CONFIG]] as const) {
    it(`${name}, the unmutated file works`, () => {
      const t = Tokenizer.fromTokenizerJson(doc, cfg);
      exercise(t);
      expect(t.decode([t.bosId, ...t.encode('ab ab', { bos: false })])).toBe('ab ab');
    });
    it(`${name}, mutated tokenizer.json and tokenizer_config.json`, () => {
      fc.assert(
        fc.property(fc.array(editArb, { minLength: 1, maxLength: 4 }), fc.array(editArb, { maxLength: 2 }), (edits, configEdits) => {
          const json = mutate(doc, edits);
          const config = mutate(cfg, configEdits);
          let t: Tokenizer;
          try {
            t = Tokenizer.fromTokenizerJson(JSON.stringify(json), JSON.stringify(config), { source: 'mutant.json' });
          } catch (e) {
            if (!(e instanceof RamaError)) throw new Error(`not a RamaError: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, { cause: e });
            expect(e.message).toContain('mutant.json');
            return;
          }
          exercise(t);
        }),
        fuzzParams(400),
      );
    });
  }
});
