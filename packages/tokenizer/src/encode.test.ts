import { describe, expect, it } from 'vitest';
import { encodeGoldens, missingMessage, sharedFile } from '@rama/testkit';
import { Tokenizer } from './index.js';

const cache = new Map<string, Promise<Tokenizer>>();
/** The shared tokenizer `name`, or undefined when shared/ lacks it (the test then skips). */
function shared(name: string): Promise<Tokenizer> | undefined {
  const path = sharedFile(`models/${name}`);
  if (!path) return undefined;
  let t = cache.get(path);
  if (!t) cache.set(path, (t = Tokenizer.fromFile(path)));
  return t;
}

describe('encode goldens (llama2.c run.c encode())', () => {
  const goldens = encodeGoldens();
  it('has goldens', (ctx) => {
    if (goldens.length === 0) ctx.skip(missingMessage('goldens/encode.jsonl'));
    expect(goldens.length).toBeGreaterThan(0);
  });
  goldens.forEach((g, i) => {
    it(`#${i} ${g.tokenizer} ${JSON.stringify(g.text).slice(0, 60)}`, async (ctx) => {
      const tok = shared(g.tokenizer);
      if (!tok) return ctx.skip(missingMessage(`models/${g.tokenizer}`));
      expect((await tok).encode(g.text, { bos: g.bos, eos: g.eos })).toEqual(g.tokens);
    });
  });
});

/**
 * A line-by-line port of llama2.c's encode() (linear scan merge loop), to
 * check the heap-based merge against on inputs the goldens do not cover.
 */
function referenceEncode(t: Tokenizer, text: string, bos: boolean, eos: boolean): number[] {
  const keys = Array.from({ length: t.vocabSize }, (_, id) => String.fromCharCode(...t.piece(id)));
  const key = (id: number) => keys[id];
  const vocab = new Map<string, number>();
  for (let id = 0; id < t.vocabSize; id++) if (!vocab.has(keys[id])) vocab.set(keys[id], id);
  const bytes = new TextEncoder().encode(text);
  const tokens: number[] = [];
  if (bos) tokens.push(1);
  if (bytes.length > 0) tokens.push(vocab.get(' ')!);
  let buf: number[] = [];
  for (let c = 0; c < bytes.length; c++) {
    if ((bytes[c] & 0xc0) !== 0x80) buf = [];
    buf.push(bytes[c]);
    if (c + 1 < bytes.length && (bytes[c + 1] & 0xc0) === 0x80 && buf.length < 4) continue;
    const id = vocab.get(String.fromCharCode(...buf));
    if (id !== undefined) tokens.push(id);
    else for (const b of buf) tokens.push(b + 3);
    buf = [];
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = vocab.get(key(tokens[i]) + key(tokens[i + 1]));
      if (id !== undefined && t.score(id) > bestScore) {
        bestScore = t.score(id);
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, bestId);
  }
  if (eos) tokens.push(2);
  return tokens;
}

describe('encode', () => {
  for (const name of ['tokenizer.bin', 'tok512-aidreams.bin']) {
    it(`matches a direct port of llama2.c's merge loop on random text (${name})`, async (ctx) => {
      const tok = shared(name);
      if (!tok) return ctx.skip(missingMessage(`models/${name}`));
      const t = await tok;
      // Deterministic pseudo-random text over a mix of ASCII, accents, CJK, emoji and repeats.
      const alphabet = [...'aaaa eeee tttt  the and of in ,.!?\n\t0123456789éüñ日本語🦙😀✓ДЖ'];
      let s = 12345;
      const rand = (n: number) => ((s = (s * 1103515245 + 12345) >>> 0) >>> 8) % n;
      for (let k = 0; k < 40; k++) {
        let text = '';
        const len = rand(120);
        for (let j = 0; j < len; j++) text += alphabet[rand(alphabet.length)];
        expect(t.encode(text, { bos: k % 2 === 0, eos: k % 3 === 0 })).toEqual(
          referenceEncode(t, text, k % 2 === 0, k % 3 === 0),
        );
      }
    });
  }

  it('handles bos/eos, empty text and NUL like llama2.c', async (ctx) => {
    const tok = shared('tokenizer.bin');
    if (!tok) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const t = await tok;
    expect(t.encode('', { bos: false, eos: false })).toEqual([]);
    expect(t.encode('', { bos: true, eos: true })).toEqual([1, 2]);
    expect(t.encode('Once upon a time')).toEqual([1, 9038, 2501, 263, 931]); // defaults: bos, no eos
    // llama2.c sees a C string: the text ends at the first NUL.
    expect(t.encode('Once upon a time\0ignored')).toEqual(t.encode('Once upon a time'));
    expect(t.encode('\0abc')).toEqual([1]);
  });

  it('encodes a long prompt quickly', async (ctx) => {
    const tok = shared('tokenizer.bin');
    if (!tok) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const t = await tok;
    const text = 'The quick brown fox jumps over the lazy dog. Ünïcödé 日本語 🦙! '.repeat(400); // ~28k bytes
    t.encode('warm up');
    const t0 = performance.now();
    const ids = t.encode(text);
    const ms = performance.now() - t0;
    expect(ids.length).toBeGreaterThan(4000);
    expect(t.decode(ids)).toBe(text);
    expect(ms).toBeLessThan(2000); // the naive O(n^2) loop takes far longer on this
  });
});
