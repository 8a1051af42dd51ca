/**
 * A BPE tokenizer as a pipeline, in Hugging Face's tokenizers' order: added
 * tokens are cut out of the text first; every other stretch is normalized,
 * pre-tokenized into words, mapped to the byte-level alphabet if the
 * vocabulary is byte-level, and merged word by word (bpe.ts). Decoding is a
 * table of each token's bytes, plus two rules applied around it.
 */
import type { BpeModel } from './bpe.js';
import { byteLevel } from './bpe.js';

/** A token matched by its text before any other processing (tokenizer.json's `added_tokens`; GGUF control and user-defined tokens). */
export interface AddedToken {
  id: number;
  content: string;
  /** Matched only when encode is asked to read special tokens; prints nothing when decoded. */
  special: boolean;
  /** Whitespace to the token's left / right is taken into it. */
  lstrip?: boolean;
  rstrip?: boolean;
  /** Matched only as a whole word (not next to a letter, digit or underscore). */
  singleWord?: boolean;
}

/** Space clean-up applied by decode: Hugging Face's `clean_up_tokenization`, or llama.cpp's `clean_spaces` passes. */
export type SpaceCleanup = 'none' | 'hf' | 'llama.cpp';

export interface PipelineSpec {
  model: BpeModel;
  /** Applied to each stretch of text between added tokens (undefined: none). */
  normalize?: (text: string) => string;
  /** Cuts a normalized stretch into words; `atStart` is true for a stretch at the very start of the text. */
  preTokenize: (text: string, atStart: boolean) => string[];
  /** Words are mapped to GPT-2's byte-level alphabet before BPE. */
  byteLevel: boolean;
  added: readonly AddedToken[];
  /** What each token prints (empty for special tokens). */
  pieces: readonly Uint8Array[];
  /** Decoding drops the leading space of the token right after BOS (SentencePiece's prefix space). */
  stripSpaceAfterBos: boolean;
  cleanup: SpaceCleanup;
}

const WORD_CHAR = /[\p{L}\p{N}_]/u;

export class Pipeline {
  /** Added tokens by their first UTF-16 unit, longest first. */
  private readonly byFirst = new Map<string, AddedToken[]>();

  constructor(readonly spec: PipelineSpec) {
    for (const t of spec.added) {
      if (!t.content) continue;
      const list = this.byFirst.get(t.content[0]) ?? [];
      list.push(t);
      this.byFirst.set(t.content[0], list);
    }
    for (const list of this.byFirst.values()) list.sort((a, b) => b.content.length - a.content.length);
  }

  /** Token ids of `text` (no BOS/EOS); `special`: read special tokens' text as those tokens. */
  encode(text: string, special: boolean): number[] {
    const out: number[] = [];
    let segStart = 0;
    let i = 0;
    while (i < text.length) {
      const hit = this.matchAt(text, i, special);
      if (!hit) {
        i++;
        continue;
      }
      let segEnd = i;
      if (hit.lstrip) while (segEnd > segStart && /\s/u.test(text[segEnd - 1])) segEnd--;
      this.encodeStretch(text.slice(segStart, segEnd), segStart === 0, out);
      out.push(hit.id);
      i += hit.content.length;
      if (hit.rstrip) while (i < text.length && /\s/u.test(text[i])) i++;
      segStart = i;
    }
    this.encodeStretch(text.slice(segStart), segStart === 0, out);
    return out;
  }

  private matchAt(text: string, i: number, special: boolean): AddedToken | undefined {
    const list = this.byFirst.get(text[i]);
    if (!list) return undefined;
    for (const t of list) {
      if (t.special && !special) continue;
      if (!text.startsWith(t.content, i)) continue;
      if (t.singleWord) {
        const before = i > 0 ? text[i - 1] : '';
        const after = text[i + t.content.length] ?? '';
        if ((before && WORD_CHAR.test(before)) || (after && WORD_CHAR.test(after))) continue;
      }
      return t;
    }
    return undefined;
  }

  private encodeStretch(text: string, atStart: boolean, out: number[]): void {
    if (!text) return;
    const s = this.spec;
    const norm = s.normalize ? s.normalize(text) : text;
    if (!norm) return;
    for (const word of s.preTokenize(norm, atStart)) s.model.encodeWord(s.byteLevel ? byteLevel(word) : word, out);
  }
}

/** Hugging Face's `clean_up_tokenization` (transformers), applied to decoded text. */
export function cleanUpHf(s: string): string {
  return s
    .replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',')
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

/**
 * llama.cpp's `clean_spaces` passes (llama_vocab::detokenize): no space
 * before `?!.,`; " ' " becomes "'"; no space before 's, 'm, 're and 've
 * ('t, 'd and 'll keep theirs).
 */
export function cleanUpLlamaCpp(s: string): string {
  let t = s.replace(/ (?=[?!.,])/g, '');
  // " ' " -> "'", scanning left to right so overlapping matches behave as llama.cpp's single pass.
  let r = '';
  for (let i = 0; i < t.length; i++) {
    if (t[i] === ' ' && t[i + 1] === "'" && t[i + 2] === ' ') {
      r += "'";
      i += 2;
      continue;
    }
    r += t[i];
  }
  t = r;
  return t.replace(/ '(?=s|m|re|ve)/g, "'");
}
