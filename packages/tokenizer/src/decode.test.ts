import { describe, expect, it } from 'vitest';
import { generateGoldens, missingMessage, sharedFile } from '@rama/testkit';
import { TextStream, Tokenizer, Utf8Assembler, isPrintablePiece } from './index.js';

const cache = new Map<string, Promise<Tokenizer>>();
function shared(name: string): Promise<Tokenizer> | undefined {
  const path = sharedFile(`models/${name}`);
  if (!path) return undefined;
  let t = cache.get(path);
  if (!t) cache.set(path, (t = Tokenizer.fromFile(path)));
  return t;
}

const bytes = (...b: number[]) => Uint8Array.from(b);
const utf8 = (s: string) => [...new TextEncoder().encode(s)];

describe('generate goldens: streamed text equals what llama2.c printed', () => {
  const goldens = generateGoldens();
  it('has goldens', (ctx) => {
    if (goldens.length === 0) ctx.skip(missingMessage('goldens/generate.jsonl'));
    expect(goldens.length).toBeGreaterThan(0);
  });
  for (const g of goldens) {
    it(g.id, async (ctx) => {
      const tok = shared(g.tokenizer);
      if (!tok) return ctx.skip(missingMessage(`models/${g.tokenizer}`));
      const t = await tok;
      const stream = new TextStream(t);
      let text = '';
      for (let i = 1; i < g.tokens.length; i++) text += stream.push(g.tokens[i - 1], g.tokens[i]);
      text += stream.flush();
      expect(text).toBe(g.text);
      expect(t.decode(g.tokens)).toBe(g.text);
    });
  }
});

describe('decodePiece (llama2.c decode())', () => {
  it('drops the leading space after BOS only, and maps <0xHH> to the byte', async (ctx) => {
    const tok = shared('tokenizer.bin');
    if (!tok) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const t = await tok;
    const once = 9038; // " Once"
    expect(t.piece(once)).toEqual(bytes(...utf8(' Once')));
    expect(t.decodePiece(1, once)).toEqual(bytes(...utf8('Once')));
    expect(t.decodePiece(2, once)).toEqual(bytes(...utf8(' Once')));
    expect(t.decodePiece(5, 13)).toEqual(bytes(0x0a)); // <0x0A>
    expect(t.decodePiece(5, 0xf0 + 3)).toEqual(bytes(0xf0)); // <0xF0>
    expect(t.decodePiece(5, 3)).toEqual(bytes()); // <0x00>: an empty C string
    expect(t.decodePiece(5, 2)).toEqual(bytes(...utf8('\n</s>\n'))); // EOS is printed in generation
    expect(() => t.decodePiece(1, t.vocabSize)).toThrow(/out of range/);
  });

  it('isPrintablePiece follows safe_printf for ASCII, defers high bytes to UTF-8 assembly', () => {
    expect(isPrintablePiece(bytes())).toBe(false);
    expect(isPrintablePiece(bytes(0x01))).toBe(false);
    expect(isPrintablePiece(bytes(0x7f))).toBe(false);
    for (const b of [0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x41, 0x7e]) expect(isPrintablePiece(bytes(b))).toBe(true);
    expect(isPrintablePiece(bytes(0xf0))).toBe(true);
    expect(isPrintablePiece(bytes(0x01, 0x02))).toBe(true); // only single bytes are filtered
  });
});

describe('TextStream', () => {
  it('emits an emoji from four byte tokens whole, exactly once, on its last byte', async (ctx) => {
    const tok = shared('tokenizer.bin');
    if (!tok) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const t = await tok;
    const llama = utf8('🦙').map((b) => b + 3); // <0xF0> <0x9F> <0xA6> <0x99>
    expect(t.encode('🦙', { bos: false })).toEqual([29871, ...llama]);
    const s = new TextStream(t);
    const seq = [1, 9038, ...llama, 2501];
    const out = seq.slice(1).map((tok, i) => s.push(seq[i], tok));
    expect(out).toEqual(['Once', '', '', '', '🦙', ' upon']);
    expect(s.flush()).toBe('');
  });

  it('drops control bytes and unfinished characters', async (ctx) => {
    const tok = shared('tokenizer.bin');
    if (!tok) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const t = await tok;
    const s = new TextStream(t);
    expect(s.push(5, 0x01 + 3)).toBe(''); // <0x01>: safe_printf skips it
    expect(s.push(5, 0x0a + 3)).toBe('\n');
    expect(s.push(5, 0xe6 + 3)).toBe(''); // lead of a 3-byte character...
    expect(s.push(5, 0x97 + 3)).toBe('');
    expect(s.flush()).toBe(''); // ...never finished: dropped
    expect(s.push(5, 0x41 + 3)).toBe('A'); // the stream is reusable after flush
    // decode() of a sequence ending mid-character drops the tail
    expect(t.decode([1, 9038, 0xf0 + 3, 0x9f + 3])).toBe('Once');
  });
});

describe('Utf8Assembler', () => {
  const run = (...chunks: number[][]) => {
    const a = new Utf8Assembler();
    return chunks.map((c) => a.push(Uint8Array.from(c))).join('') + a.flush();
  };

  it('passes valid UTF-8 through, split anywhere', () => {
    const text = 'aé日🦙\u{10FFFF}\u{FFFF}\u{800}\u{80}';
    const b = utf8(text);
    expect(run(b)).toBe(text);
    expect(run(...b.map((x) => [x]))).toBe(text);
  });

  it('drops bytes that cannot form UTF-8 instead of writing U+FFFD', () => {
    expect(run([0x41, 0x80, 0x42])).toBe('AB'); // lone continuation
    expect(run([0xc0, 0x80, 0xc1, 0xbf])).toBe(''); // C0/C1: overlong
    expect(run([0xf5, 0x80, 0xff, 0x41])).toBe('A'); // F5..FF never valid
    expect(run([0xe0, 0x80, 0x80])).toBe(''); // E0 needs A0..BF
    expect(run([0xed, 0xa0, 0x80])).toBe(''); // ED A0: a surrogate
    expect(run([0xf0, 0x8f, 0xbf, 0xbf])).toBe(''); // F0 needs 90..BF
    expect(run([0xf4, 0x90, 0x80, 0x80])).toBe(''); // F4 90: beyond U+10FFFF
    expect(run([0xed, 0x9f, 0xbf])).toBe('\u{D7FF}');
    expect(run([0xf4, 0x8f, 0xbf, 0xbf])).toBe('\u{10FFFF}');
  });

  it('reprocesses the byte that broke a pending sequence as a fresh start', () => {
    expect(run([0xe6, 0x41])).toBe('A'); // lead then ASCII: the ASCII survives
    expect(run([0xf0, 0x9f, 0xe6, 0x97, 0xa5])).toBe('日'); // broken emoji, then a whole 3-byte char
    expect(run([0xe6, 0x97], [0xf0, 0x9f, 0xa6, 0x99])).toBe('🦙');
    expect(run([0xc3, 0xc3, 0xa9])).toBe('é');
  });

  it('drops a pending sequence at flush', () => {
    const a = new Utf8Assembler();
    expect(a.push(bytes(0xf0, 0x9f, 0xa6))).toBe('');
    expect(a.pending).toBe(true);
    expect(a.flush()).toBe('');
    expect(a.pending).toBe(false);
    expect(a.push(bytes(0x99, 0x41))).toBe('A');
  });
});
