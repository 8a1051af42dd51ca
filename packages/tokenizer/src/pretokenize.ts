/**
 * Pre-tokenizers: the regular-expression splits that cut text into words
 * before BPE runs on each word. Hugging Face's `Split` pre-tokenizer and
 * llama.cpp's `unicode_regex_split` work the same way: every match and every
 * stretch between matches becomes its own piece ("Isolated"), and a list of
 * expressions is applied one after another, each to every piece the previous
 * one left (so a later expression never sees across an earlier cut).
 */
import { FormatError } from '@rama/core';

/** How a split treats its matches (Hugging Face's `SplitDelimiterBehavior`). */
export type SplitBehavior = 'Isolated' | 'Removed' | 'MergedWithPrevious' | 'MergedWithNext';

/** Cuts each piece at the matches of `re` (a global regex), keeping non-empty pieces. */
export function splitPieces(pieces: readonly string[], re: RegExp, behavior: SplitBehavior = 'Isolated'): string[] {
  const out: string[] = [];
  for (const piece of pieces) {
    let last = 0;
    // A match glued to the next piece (MergedWithNext) waits here.
    let carry = '';
    const emit = (s: string): void => {
      if (s) out.push(s);
    };
    for (const m of piece.matchAll(re)) {
      const at = m.index!;
      const text = m[0];
      if (text === '') continue;
      const gap = piece.slice(last, at);
      last = at + text.length;
      switch (behavior) {
        case 'Isolated':
          emit(gap);
          emit(text);
          break;
        case 'Removed':
          emit(gap);
          break;
        case 'MergedWithPrevious':
          emit(gap + text);
          break;
        case 'MergedWithNext':
          emit(carry + gap);
          carry = text;
          break;
      }
      if (behavior !== 'MergedWithNext') carry = '';
    }
    const rest = piece.slice(last);
    emit(carry + rest);
  }
  return out;
}

/**
 * A Hugging Face (Rust `onig`) regular expression as a JavaScript RegExp
 * (flags `gu`). Node 20's RegExp has no inline flag groups, so `(?i:...)`
 * becomes the same group with each ASCII letter written as both cases;
 * anything else JavaScript cannot compile is a FormatError naming the
 * pattern.
 */
export function hfRegex(pattern: string, where: string): RegExp {
  const source = expandCaseInsensitive(pattern);
  try {
    return new RegExp(source, 'gu');
  } catch (e) {
    throw new FormatError(`${where}: the regular expression ${JSON.stringify(pattern)} is not supported (${(e as Error).message})`);
  }
}

function expandCaseInsensitive(p: string): string {
  let out = '';
  let i = 0;
  while (i < p.length) {
    if (p.startsWith('(?i:', i)) {
      // Find the group's end, honouring escapes, classes and nested groups.
      let depth = 1;
      let j = i + 4;
      let inClass = false;
      let body = '';
      while (j < p.length && depth > 0) {
        const c = p[j];
        if (c === '\\') {
          const esc = escapeAt(p, j);
          body += esc;
          j += esc.length;
          continue;
        }
        if (inClass) {
          if (c === ']') inClass = false;
          body += /[a-zA-Z]/.test(c) ? c.toLowerCase() + c.toUpperCase() : c;
        } else if (c === '[') {
          inClass = true;
          body += c;
        } else if (c === '(') {
          depth++;
          body += c;
        } else if (c === ')') {
          depth--;
          if (depth > 0) body += c;
        } else {
          body += /[a-zA-Z]/.test(c) ? `[${c.toLowerCase()}${c.toUpperCase()}]` : c;
        }
        j++;
      }
      out += `(?:${body})`;
      i = j;
    } else if (p[i] === '\\') {
      const esc = escapeAt(p, i);
      out += esc;
      i += esc.length;
    } else {
      out += p[i++];
    }
  }
  return out;
}

/** The escape sequence starting at p[i] (a backslash): `\p{..}` whole, else two characters. */
function escapeAt(p: string, i: number): string {
  if ((p[i + 1] === 'p' || p[i + 1] === 'P') && p[i + 2] === '{') {
    const end = p.indexOf('}', i);
    if (end > 0) return p.slice(i, end + 1);
  }
  return p.slice(i, i + 2);
}

/** GPT-2's split (Hugging Face's ByteLevel pre-tokenizer with `use_regex`). */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
/** Llama 3's split; `(?i:'s|...)` written out, as Node 20 has no inline flags. */
export const LLAMA3_SPLIT =
  /'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
/** Qwen2's split: Llama 3's with single digits. */
export const QWEN2_SPLIT =
  /'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

/** A GGUF `tokenizer.ggml.pre` value as llama.cpp (llama-vocab.cpp) runs it. */
export interface GgufPreTokenizer {
  /** Applied in order, each to every piece the previous left. */
  splits: readonly RegExp[];
  /** A word that is a whole token is taken as is, before any merge. */
  ignoreMerges: boolean;
  /** llama.cpp's `clean_spaces`: detokenizing removes the space before `?!.,` and some contractions. */
  cleanSpaces: boolean;
}

const LLAMA3: GgufPreTokenizer = { splits: [LLAMA3_SPLIT], ignoreMerges: true, cleanSpaces: true };

/**
 * The pre-tokenizers supported, by their GGUF names. `default` is what
 * llama.cpp uses for `pre = "default"` (and a missing `pre`): punctuation
 * runs first, then GPT-2's split, then digit runs, then runs of three ASCII
 * digits.
 */
export const GGUF_PRE_TOKENIZERS: Readonly<Record<string, GgufPreTokenizer>> = {
  'llama-bpe': LLAMA3,
  llama3: LLAMA3,
  'llama-v3': LLAMA3,
  smollm: { splits: [/\p{N}/gu, GPT2_SPLIT], ignoreMerges: false, cleanSpaces: false },
  qwen2: { splits: [QWEN2_SPLIT], ignoreMerges: false, cleanSpaces: false },
  'gpt-2': { splits: [GPT2_SPLIT], ignoreMerges: false, cleanSpaces: true },
  default: {
    splits: [/[\p{P}$+<=>^~|]+/gu, GPT2_SPLIT, /\p{N}+/gu, /[0-9][0-9][0-9]/gu],
    ignoreMerges: false,
    cleanSpaces: true,
  },
};

/** The named pre-tokenizer, or a FormatError naming the unknown name and the known ones. */
export function ggufPreTokenizer(name: string, source: string): GgufPreTokenizer {
  const pre = Object.hasOwn(GGUF_PRE_TOKENIZERS, name) ? GGUF_PRE_TOKENIZERS[name] : undefined;
  if (!pre) {
    throw new FormatError(
      `${source}: tokenizer.ggml.pre ${JSON.stringify(name)} is not a supported pre-tokenizer (supported: ${Object.keys(GGUF_PRE_TOKENIZERS).join(', ')})`,
    );
  }
  return pre;
}
