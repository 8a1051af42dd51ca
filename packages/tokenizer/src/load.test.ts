import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FormatError, RamaError } from '@rama/core';
import { missingMessage, sharedFile } from '@rama/testkit';
import { Tokenizer } from './index.js';
import { build, tiny } from './test-vocab.js';

const expectFormat = (f: () => unknown, re: RegExp) => {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(FormatError);
  expect((err as RamaError).code).toBe('E_FORMAT');
  expect((err as Error).message).toMatch(re);
};

describe('Tokenizer.fromBytes', () => {
  it('parses entries, scores and raw (non-UTF-8) pieces', () => {
    const t = Tokenizer.fromBytes(build(3, [[0, 'a'], [-1.5, [0xff, 0x00, 0x80]], [2, '']]));
    expect(t.vocabSize).toBe(3);
    expect(t.maxTokenLength).toBe(3);
    expect(t.bosId).toBe(1);
    expect(t.eosId).toBe(2);
    expect(t.piece(1)).toEqual(Uint8Array.from([0xff, 0x00, 0x80]));
    expect(t.score(1)).toBe(-1.5);
    expect(t.piece(2).length).toBe(0);
    expect(() => t.piece(3)).toThrow(/out of range/);
  });

  it('copies the input, so the caller may reuse its buffer', () => {
    const bin = build(1, [[0, 'a']]);
    const t = Tokenizer.fromBytes(bin);
    bin.fill(0);
    expect(t.piece(0)).toEqual(Uint8Array.from([0x61]));
  });

  it('rejects malformed files with messages naming the file', () => {
    const src = { source: 'bad.bin' };
    expectFormat(() => Tokenizer.fromBytes(new Uint8Array(2), src), /^bad\.bin: file is 2 bytes/);
    expectFormat(() => Tokenizer.fromBytes(build(0, [[0, 'a']]), src), /max_token_length is 0/);
    expectFormat(() => Tokenizer.fromBytes(build(-5, [[0, 'a']]), src), /max_token_length is -5/);
    expectFormat(() => Tokenizer.fromBytes(build(4, []), src), /bad\.bin: contains no tokens/);
    const ok = build(4, [[0, 'ab'], [0, 'cd']]);
    // Cut inside the second entry's header, then inside its bytes.
    expectFormat(() => Tokenizer.fromBytes(ok.subarray(0, ok.length - 5), src), /token 1 at byte 14 is truncated/);
    expectFormat(() => Tokenizer.fromBytes(ok.subarray(0, ok.length - 1), src), /token 1 at byte 14 has length 2, but 1 bytes remain/);
    // A negative or huge length is caught before anything is allocated.
    const neg = build(4, [[0, 'ab']]);
    new DataView(neg.buffer).setInt32(8, -1, true);
    expectFormat(() => Tokenizer.fromBytes(neg, src), /token 0 at byte 4 has length -1/);
    const huge = build(4, [[0, 'ab']]);
    new DataView(huge.buffer).setInt32(8, 0x7fffffff, true);
    expectFormat(() => Tokenizer.fromBytes(huge, src), /has length 2147483647, but 2 bytes remain/);
  });

  it('rejects more tokens than encode can index (2^24: the most entries a V8 Map holds)', () => {
    // 2^24 + 1 empty entries (8 zero bytes each) after the header; before the cap this loaded and encode threw a RangeError.
    const n = 2 ** 24 + 1;
    const bin = new Uint8Array(4 + 8 * n);
    new DataView(bin.buffer).setInt32(0, 1, true);
    expectFormat(() => Tokenizer.fromBytes(bin, { source: 'many.bin' }), /^many\.bin: has more than 16,777,216 tokens/);
  });

  it('rejects a vocab size other than the model expects', () => {
    const bin = build(2, [[0, 'a'], [0, 'b']]);
    expect(Tokenizer.fromBytes(bin, { expectedVocabSize: 2 }).vocabSize).toBe(2);
    expectFormat(
      () => Tokenizer.fromBytes(bin, { expectedVocabSize: 32000, source: 'tokenizer.bin' }),
      /^tokenizer\.bin has 2 tokens but the model expects 32000$/,
    );
  });

  it('fromFile names the path in errors and checks the vocab size', async (ctx) => {
    const path = sharedFile('models/tok512-aidreams.bin');
    if (!path) return ctx.skip(missingMessage('models/tok512-aidreams.bin'));
    const t = await Tokenizer.fromFile(path, { expectedVocabSize: 512 });
    expect(t.vocabSize).toBe(512);
    expect(t.maxTokenLength).toBe(10);
    expect(t.source).toBe(path);
    await expect(Tokenizer.fromFile(path, { expectedVocabSize: 32000 })).rejects.toThrow(
      `${path} has 512 tokens but the model expects 32000`,
    );
  });
});

describe('encode on a synthetic vocab', () => {
  /** tiny() plus single letters a, b, c and `merges`; returns the tokenizer and a piece-to-id helper. */
  const vocab = (merges: [number, string][]) => {
    const extra: [number, string][] = [[-2, 'a'], [-2, 'b'], [-2, 'c'], ...merges];
    const names = [' ', ...extra.map(([, p]) => p)];
    return { t: Tokenizer.fromBytes(tiny(extra)), id: (p: string) => 259 + names.indexOf(p) };
  };

  it('merges by score, leftmost pair wins a tie, unknown codepoints fall back to bytes', () => {
    const { t, id } = vocab([[5, 'ab'], [5, 'bc'], [1, ' a']]);
    expect(t.piece(id('bc'))).toEqual(new TextEncoder().encode('bc'));
    // ' ' a b c: ab (5) beats ' a' (1); then nothing else merges.
    expect(t.encode('abc', { bos: false })).toEqual([id(' '), id('ab'), id('c')]);
    // ' ' b c a b: bc and ab tie at 5; the leftmost (bc) goes first, then ab.
    expect(t.encode('bcab', { bos: true, eos: true })).toEqual([1, id(' '), id('bc'), id('ab'), 2]);
    // ' ' a b c with ab/bc tied: ab is leftmost, so bc never forms.
    expect(t.encode('abc', { bos: false })).not.toContain(id('bc'));
    // A codepoint not in the vocab becomes its UTF-8 bytes (id = byte + 3).
    expect(t.encode('é', { bos: false })).toEqual([id(' '), 0xc3 + 3, 0xa9 + 3]);
  });

  it('never merges a pair whose score is not above -1e10 (llama2.c best_score start)', () => {
    const { t, id } = vocab([[-1e10, 'ab'], [-1e9, 'bc']]);
    expect(t.encode('abc', { bos: false })).toEqual([id(' '), id('a'), id('bc')]);
  });

  it('refuses BOS or EOS in a vocab too small to have them (found by the fuzz tests)', () => {
    // Before: BOS in a one-token vocab made encode throw a TypeError, and EOS in a two-token one returned id 2.
    const one = Tokenizer.fromBytes(build(1, [[0, ' ']]), { source: 'one.bin' });
    expectFormat(() => one.encode(''), /^one\.bin has 1 tokens, too few for BOS \(id 1\)$/);
    expect(one.encode(' ', { bos: false })).toEqual([0, 0]);
    const two = Tokenizer.fromBytes(build(1, [[0, ' '], [0, '']]), { source: 'two.bin' });
    expectFormat(() => two.encode(' ', { eos: true }), /^two\.bin has 2 tokens, too few for EOS \(id 2\)$/);
    expect(two.encode('', { bos: true })).toEqual([1]);
  });

  it('refuses byte fallback past the end of a small vocab', () => {
    const t = Tokenizer.fromBytes(build(1, [[0, 'a'], [0, 'b'], [0, 'c'], [0, ' ']]));
    expect(t.encode('a', { bos: false })).toEqual([3, 0]);
    expectFormat(() => t.encode('z', { bos: false }), /too few for the byte-fallback token of byte 0x7A/);
  });
});

describe('Tokenizer.fromVocab', () => {
  it('from a tokenizer.bin\'s own pieces and scores: the same tokenizer (encode and decode)', (ctx) => {
    const path = sharedFile('models/tokenizer.bin');
    if (!path) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const bin = Tokenizer.fromBytes(new Uint8Array(readFileSync(path)));
    const ids = Array.from({ length: bin.vocabSize }, (_, i) => i);
    const t = Tokenizer.fromVocab(ids.map((i) => bin.piece(i)), ids.map((i) => bin.score(i)), { source: 'vocab' });
    expect(t.vocabSize).toBe(bin.vocabSize);
    expect(t.source).toBe('vocab');
    for (const text of ['Hello world', ' two  spaces', 'naïve 日本語 🦙\n\ttabs', '']) {
      expect(t.encode(text)).toEqual(bin.encode(text));
      expect(t.decode(bin.encode(text))).toBe(bin.decode(bin.encode(text)));
    }
  });

  it('strings are UTF-8; mismatched lengths, no tokens and a wrong vocab size are refused', () => {
    const t = Tokenizer.fromVocab(['<unk>', '<s>', '</s>', 'é'], [0, 0, 0, -1]);
    expect([...t.piece(3)]).toEqual([0xc3, 0xa9]);
    expect(t.maxTokenLength).toBe(5);
    expect(() => Tokenizer.fromVocab(['a'], [0, 1])).toThrow(/1 pieces but 2 scores/);
    expectFormat(() => Tokenizer.fromVocab([], []), /contains no tokens/);
    expectFormat(() => Tokenizer.fromVocab(['a', 'b'], [0, 0], { source: 'v', expectedVocabSize: 3 }), /^v has 2 tokens but the model expects 3/);
  });
});

describe('Tokenizer.fromBPE (byte-level BPE, Llama 3 pre-tokenizer)', () => {
  // GPT-2's printable byte characters: bytes 0x21..0x7E, 0xA1..0xAC, 0xAE..0xFF map to themselves, the rest to U+0100...
  const byteChars = (() => {
    const out: string[] = [];
    let next = 256;
    for (let b = 0; b < 256; b++) {
      const keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
      out.push(String.fromCharCode(keep ? b : next++));
    }
    return out;
  })();
  const tokens = [...byteChars, 'Ġt', 'he', 'Ġthe', 'll', 'Ġworld', '<|bos|>', '<|eos|>'];
  const merges = ['Ġ t', 'h e', 'Ġt he', 'l l'];
  const id = (t: string) => tokens.indexOf(t);
  const types = Int32Array.from(tokens, (t) => (t.startsWith('<|') ? 3 : 1));
  const tok = Tokenizer.fromBPE(tokens, merges, { bosId: id('<|bos|>'), eosId: id('<|eos|>'), types, source: 'bpe' });

  it('splits as Llama 3, merges by rank, takes whole pre-tokens as they are, maps bytes', () => {
    expect(tok.bosId).toBe(id('<|bos|>'));
    // " the" merges Ġ t -> Ġt, then h e -> he, then Ġt he -> Ġthe; " world" is a whole token (no merges needed)
    expect(tok.encode(' the world', { bos: false })).toEqual([id('Ġthe'), id('Ġworld')]);
    expect(tok.encode('hell', { bos: true, eos: true })).toEqual([id('<|bos|>'), id('he'), id('ll'), id('<|eos|>')]);
    // "'ll" is a contraction pre-token: "'" then "ll"; "\n" is byte 0x0A's character
    expect(tok.encode("we'll\n", { bos: false })).toEqual([id('w'), id('e'), id("'"), id('ll'), id(byteChars[10])]);
    expect(tok.encode('é', { bos: false })).toEqual([id(byteChars[0xc3]), id(byteChars[0xa9])]);
  });

  it('decodes bytes, control tokens to nothing, no dummy-prefix space dropped', () => {
    const ids = tok.encode(' the é\n');
    expect(tok.decode(ids)).toBe(' the é\n');
    expect(tok.decodePiece(id('<|bos|>'), id('<|eos|>')).length).toBe(0);
  });

  it('a vocabulary without every byte, or with BOS outside it, is a FormatError', () => {
    expectFormat(() => Tokenizer.fromBPE(['a'], [], { bosId: 0, eosId: 0, source: 'v' }), /^v: the byte-level vocabulary lacks the token/);
    expectFormat(() => Tokenizer.fromBPE(tokens, merges, { bosId: tokens.length, eosId: 0, source: 'v' }), /BOS id \d+ is outside/);
  });
});
