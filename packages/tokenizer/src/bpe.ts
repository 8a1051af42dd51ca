/**
 * BPE by merge rank, as Hugging Face's tokenizers (`models::bpe`) and
 * llama.cpp's `llm_tokenizer_bpe` run it on one word: the word's characters
 * become tokens (a character the vocabulary lacks becomes its UTF-8 bytes'
 * `<0xXX>` tokens with byte fallback, else the unknown token), then the
 * adjacent pair of lowest merge rank merges, the leftmost on a tie, until no
 * pair has a merge. With `ignoreMerges` a word that is itself a token is
 * that token (Llama 3). The byte-level mapping (GPT-2's bytes_to_unicode: a
 * space is "Ġ") is the caller's: this works on whatever alphabet the
 * vocabulary uses.
 */
import { FormatError } from '@rama/core';
import { mergeByHeap } from './heap.js';

/** GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 onwards, in order. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const out: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCharCode(printable ? b : next++);
  }
  return out;
})();
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const utf8 = new TextEncoder();

/** A word's UTF-8 bytes in GPT-2's byte-level alphabet. */
export function byteLevel(word: string): string {
  let s = '';
  for (const b of utf8.encode(word)) s += BYTE_TO_CHAR[b];
  return s;
}

export interface BpeOptions {
  /** A word that is a whole token is taken as is (Hugging Face's `ignore_merges`). */
  ignoreMerges?: boolean;
  /** Characters outside the vocabulary become `<0xXX>` byte tokens. */
  byteFallback?: boolean;
  /** The unknown token, for characters nothing else covers; without it such a character is an error. */
  unkId?: number;
  /** Consecutive unknown characters become one unknown token. */
  fuseUnk?: boolean;
}

export class BpeModel {
  /** Token text to id (the first id of a duplicated text). */
  readonly ids = new Map<string, number>();
  /** (left id * n + right id) to merge rank. */
  private readonly ranks = new Map<number, number>();
  /** The id each merge rank produces. */
  private readonly results: Int32Array;
  private readonly n: number;
  private readonly byteIds: Int32Array | undefined;

  /**
   * `tokens[i]` is token i's text; `merges[r]` is the pair of rank r, as
   * "left right" or [left, right]. A merge of texts that are not tokens, or
   * whose concatenation is not one, is a FormatError (Hugging Face refuses
   * such a file too).
   */
  constructor(
    tokens: readonly string[], merges: readonly (string | readonly string[])[],
    private readonly opts: BpeOptions, private readonly source: string,
  ) {
    this.n = tokens.length;
    tokens.forEach((t, i) => {
      if (!this.ids.has(t)) this.ids.set(t, i);
    });
    this.results = new Int32Array(merges.length);
    merges.forEach((m, rank) => {
      let left: string;
      let right: string;
      if (typeof m === 'string') {
        const sp = m.indexOf(' ', 1);
        if (sp < 0 || m.indexOf(' ', sp + 1) >= 0) {
          throw new FormatError(`${source}: merge ${rank} (${JSON.stringify(m)}) is not two tokens separated by a space`);
        }
        left = m.slice(0, sp);
        right = m.slice(sp + 1);
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
        [left, right] = m as [string, string];
      } else {
        throw new FormatError(`${source}: merge ${rank} (${JSON.stringify(m)}) is neither "left right" nor a pair of strings`);
      }
      const a = this.ids.get(left);
      const b = this.ids.get(right);
      const c = this.ids.get(left + right);
      if (a === undefined || b === undefined || c === undefined) {
        const missing = a === undefined ? left : b === undefined ? right : left + right;
        throw new FormatError(`${source}: merge ${rank} (${JSON.stringify(`${left} ${right}`)}) uses ${JSON.stringify(missing)}, which is not a token`);
      }
      const key = a * this.n + b;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
      this.results[rank] = c;
    });
    if (opts.byteFallback) {
      this.byteIds = new Int32Array(256).fill(-1);
      for (let b = 0; b < 256; b++) {
        this.byteIds[b] = this.ids.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? -1;
      }
    }
  }

  /** The ids of one word (already normalized, pre-tokenized and, for byte-level BPE, mapped). */
  encodeWord(word: string, out: number[]): void {
    if (this.opts.ignoreMerges) {
      const whole = this.ids.get(word);
      if (whole !== undefined) {
        out.push(whole);
        return;
      }
    }
    const syms: number[] = [];
    let lastUnk = false;
    for (const ch of word) {
      const id = this.ids.get(ch);
      if (id !== undefined) {
        syms.push(id);
        lastUnk = false;
        continue;
      }
      if (this.byteIds) {
        const bytes = utf8.encode(ch);
        if (bytes.every((b) => this.byteIds![b] >= 0)) {
          for (const b of bytes) syms.push(this.byteIds[b]);
          lastUnk = false;
          continue;
        }
      }
      const unk = this.opts.unkId;
      if (unk === undefined) {
        throw new FormatError(`${this.source}: the vocabulary has no token for ${JSON.stringify(ch)} (U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}) and no unknown token`);
      }
      if (!(this.opts.fuseUnk && lastUnk)) syms.push(unk);
      lastUnk = true;
    }
    this.merge(syms, out);
  }

  /**
   * Merges by rank (lowest first, leftmost on a tie) with mergeByHeap:
   * O(n log n), so a long word (a SentencePiece-style vocabulary has no
   * pre-tokenizer: the whole text is one word) stays fast.
   */
  private merge(syms: number[], out: number[]): void {
    // The heap puts the highest score first: lowest rank is the highest -rank.
    const merged = mergeByHeap(syms, (a, b, into) => {
      const rank = this.ranks.get(a * this.n + b);
      if (rank === undefined) return false;
      into.score = -rank;
      into.id = this.results[rank];
      return true;
    });
    for (const id of merged) out.push(id);
  }
}
