/**
 * Byte-level BPE (GPT-2 style) with Llama 3's pre-tokenizer, as llama.cpp
 * runs a GGUF vocabulary with `tokenizer.ggml.model = gpt2` and `pre =
 * llama-bpe` (and as Hugging Face's tokenizers run Llama 3's
 * tokenizer.json): the text is split by Llama 3's regular expression, each
 * piece's UTF-8 bytes are mapped to printable characters (bytes_to_unicode:
 * a space is "Ġ", a newline "Ċ"), a piece that is a whole token is that token
 * (`ignore_merges`), and any other is merged pair by pair, the pair of lowest
 * merge rank first (the leftmost on a tie).
 */
import { FormatError } from '@rama/core';

/**
 * Llama 3's pre-tokenizer. Hugging Face writes the contractions as
 * `(?i:'s|'t|'re|'ve|'m|'ll|'d)`; Node 20's RegExp has no inline flags, so
 * each letter lists both cases.
 */
const LLAMA3_SPLIT =
  /'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 onwards, in order. */
const BYTE_TO_CHAR: string[] = (() => {
  const out: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCharCode(printable ? b : next++);
  }
  return out;
})();
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** llama.cpp's token types used here. */
const TYPE_CONTROL = 3;
const TYPE_USER_DEFINED = 4;

export class BpeModel {
  private readonly ids = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  /** What each token prints: its bytes (control tokens print nothing, as in llama.cpp without `special`). */
  readonly pieces: Uint8Array[];

  constructor(tokens: readonly string[], merges: readonly string[], types: ArrayLike<number> | undefined, source: string) {
    tokens.forEach((t, i) => {
      if (!this.ids.has(t)) this.ids.set(t, i);
    });
    merges.forEach((m, rank) => {
      const sp = m.indexOf(' ', 1);
      if (sp < 0) throw new FormatError(`${source}: merge ${rank} (${JSON.stringify(m)}) is not two tokens separated by a space`);
      // "left right" is already the key merge() looks up
      if (!this.ranks.has(m)) this.ranks.set(m, rank);
    });
    const enc = new TextEncoder();
    const empty = new Uint8Array(0);
    this.pieces = tokens.map((t, i) => {
      const type = types?.[i];
      if (type === TYPE_CONTROL) return empty;
      if (type === TYPE_USER_DEFINED) return enc.encode(t);
      const bytes: number[] = [];
      for (const ch of t) {
        const b = CHAR_TO_BYTE.get(ch);
        if (b === undefined) return enc.encode(t); // not byte-level text: print it as is
        bytes.push(b);
      }
      return Uint8Array.from(bytes);
    });
    // Every byte must be a token, or some text could not be encoded.
    for (const c of BYTE_TO_CHAR) {
      if (!this.ids.has(c)) throw new FormatError(`${source}: the byte-level vocabulary lacks the token ${JSON.stringify(c)}`);
    }
  }

  /** The ids of `text`, without BOS or EOS. */
  encode(text: string): number[] {
    const out: number[] = [];
    const enc = new TextEncoder();
    for (const m of text.matchAll(LLAMA3_SPLIT)) {
      let word = '';
      for (const b of enc.encode(m[0])) word += BYTE_TO_CHAR[b];
      const whole = this.ids.get(word);
      if (whole !== undefined) {
        out.push(whole);
        continue;
      }
      for (const sym of this.merge(word)) out.push(this.ids.get(sym)!);
    }
    return out;
  }

  /** BPE on one pre-token: merge the adjacent pair of lowest rank, leftmost first, until no pair merges. */
  private merge(word: string): string[] {
    let syms = Array.from(word);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) {
        const r = this.ranks.get(`${syms[i]} ${syms[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      const merged = syms[best] + syms[best + 1];
      syms = [...syms.slice(0, best), merged, ...syms.slice(best + 2)];
    }
    // A merge result missing from the vocabulary falls back to its single bytes.
    return syms.flatMap((s) => (this.ids.has(s) ? [s] : Array.from(s)));
  }
}
