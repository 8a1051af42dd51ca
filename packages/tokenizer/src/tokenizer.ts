import { ArgumentError, FormatError, fmtBytes } from '@rama/core';
import { openFileSource } from '@rama/core/node';
import { TextStream } from './text-stream.js';
import { BpeModel, BYTE_TO_CHAR, CHAR_TO_BYTE } from './bpe.js';
import { parseTokenizerJson, readJson } from './hf.js';
import { cleanUpHf, cleanUpLlamaCpp, Pipeline, type AddedToken } from './pipeline.js';
import { ggufPreTokenizer, splitPieces } from './pretokenize.js';
import { mergeByHeap } from './heap.js';

/** llama2.c's fixed special ids (the sentencepiece export always puts them here). */
export const BOS_ID = 1;
/** llama2.c's EOS id. */
export const EOS_ID = 2;
/** Byte-fallback tokens: byte b is id b + 3 (after <unk>, <s>, </s>). */
const BYTE_OFFSET = 3;
/**
 * Largest tokenizer file fromFile reads. Real ones are far smaller (32,000
 * tokens: 434 KB); the cap turns a model file passed as the tokenizer into a
 * clear error instead of a multi-GB read.
 */
export const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;
/**
 * Most tokens accepted: encode keeps a Map from piece to id, and V8's Maps
 * hold at most 2^24 entries (a larger vocab loaded, then failed in encode with
 * a RangeError). Real vocabs have at most a few hundred thousand.
 */
export const MAX_VOCAB_SIZE = 1 << 24;

/** Options every way of making a Tokenizer takes. */
export interface TokenizerOptions {
  /** The model's vocab size; a tokenizer with a different number of tokens is rejected. */
  expectedVocabSize?: number;
  /** Name used in error messages (fromFile: the path). */
  source?: string;
}

/** Options of `encode`. */
export interface EncodeOptions {
  /** Prepend BOS. Default: the vocabulary's own setting (`addBos`; llama2.c: true). */
  bos?: boolean;
  /** Append EOS. Default: the vocabulary's own setting (`addEos`; llama2.c: false). */
  eos?: boolean;
  /**
   * Read special tokens' text (`<|eot_id|>`, `<s>`: tokenizer.json's special
   * added tokens, GGUF control tokens) as those tokens. Default false: such
   * text is encoded as ordinary text, so user input cannot forge them.
   * Non-special added tokens are always matched, as Hugging Face and
   * llama.cpp do. llama2.c vocabularies have none.
   */
  special?: boolean;
}

/** tokenizer_config.json's fields that fromTokenizerJson reads. */
export interface TokenizerConfig {
  /** Whether encode adds BOS. */
  add_bos_token?: boolean;
  /** Whether encode adds EOS. */
  add_eos_token?: boolean;
  /** BOS's text (a token of the vocabulary). */
  bos_token?: string | {
    /** The token's text. */
    content: string;
  };
  /** EOS's text. */
  eos_token?: string | {
    /** The token's text. */
    content: string;
  };
  /** Whether decode removes spaces before punctuation (transformers' clean-up). */
  clean_up_tokenization_spaces?: boolean;
}

/** Options of load and fromFile. */
export interface LoadOptions extends TokenizerOptions {
  /** The tokenizer_config.json to use with a tokenizer.json (text, bytes or the parsed object). */
  config?: unknown;
}

/** A GGUF `gpt2` vocabulary's options for fromBPE. */
export interface BPEOptions extends TokenizerOptions {
  /** BOS's id (`tokenizer.ggml.bos_token_id`). */
  bosId: number;
  /** EOS's id (`tokenizer.ggml.eos_token_id`). */
  eosId: number;
  /** llama.cpp's token types: 3 (control) are special tokens, 4 (user-defined) always-matched added tokens. */
  types?: ArrayLike<number>;
  /** `tokenizer.ggml.pre`: llama-bpe (default), llama3, llama-v3, smollm, qwen2, gpt-2 or default. */
  pre?: string;
  /** Whether encode adds BOS by default (`tokenizer.ggml.add_bos_token`; default true). */
  addBos?: boolean;
  /** Whether encode adds EOS by default (default false). */
  addEos?: boolean;
}

/**
 * A llama2.c `tokenizer.bin` vocabulary: byte-level BPE pieces with merge
 * scores. Encoding and decoding follow llama2.c's run.c exactly, so token ids
 * and printed text match its outputs.
 */
export class Tokenizer {
  /** BOS: 1 in llama2.c's vocabularies; a byte-level BPE vocabulary names its own. */
  readonly bosId: number = BOS_ID;
  /** EOS: 2 in llama2.c's vocabularies; a byte-level BPE vocabulary names its own. */
  readonly eosId: number = EOS_ID;
  /** Whether encode adds BOS / EOS unless told otherwise (the vocabulary's own configuration). */
  readonly addBos: boolean = true;
  /** See addBos. */
  readonly addEos: boolean = false;
  /** Tokens in the vocabulary. */
  readonly vocabSize: number;
  /** The header's max_token_length (llama2.c sizes its merge buffer from it). */
  readonly maxTokenLength: number;
  /** Where the vocab came from, for messages. */
  readonly source: string;

  /** Every piece's bytes back to back; piece i is data[offsets[i]..offsets[i+1]). */
  private readonly data: Uint8Array;
  private readonly offsets: Int32Array;
  private readonly scores: Float32Array;
  /** Built on the first encode (llama2.c also sorts its vocab lazily), so decode-only users never pay for it. */
  private lookup?: EncodeTables;
  /** Set for a merge-rank BPE vocabulary (fromBPE, fromTokenizerJson): encode and decodePiece are its. */
  private readonly pipeline?: Pipeline;

  private constructor(
    source: string, maxTokenLength: number, data: Uint8Array, offsets: Int32Array, scores: Float32Array,
    pipe?: { pipeline: Pipeline; bosId: number; eosId: number; addBos: boolean; addEos: boolean },
  ) {
    if (pipe) {
      this.pipeline = pipe.pipeline;
      this.bosId = pipe.bosId;
      this.eosId = pipe.eosId;
      this.addBos = pipe.addBos;
      this.addEos = pipe.addEos;
    }
    this.source = source;
    this.maxTokenLength = maxTokenLength;
    this.data = data;
    this.offsets = offsets;
    this.scores = scores;
    this.vocabSize = scores.length;
  }

  /**
   * Parses tokenizer.bin: int32 max_token_length, then {float32 score, int32
   * len, len bytes} until the end (little-endian). The whole layout is checked
   * before anything is allocated, so a corrupt length cannot cause a huge
   * allocation. The bytes are copied; the caller's array may be reused.
   */
  static fromBytes(bytes: Uint8Array, opts: TokenizerOptions = {}): Tokenizer {
    const src = opts.source ?? 'tokenizer.bin';
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 4) {
      throw new FormatError(`${src}: file is ${bytes.length} bytes, too short for the 4-byte max_token_length header`);
    }
    const maxTokenLength = view.getInt32(0, true);
    if (maxTokenLength <= 0) {
      throw new FormatError(`${src}: max_token_length is ${maxTokenLength}, expected a positive number`);
    }

    // Pass 1: walk the entries to count them and validate every length.
    let count = 0;
    let pieceBytes = 0;
    let off = 4;
    while (off < bytes.length) {
      const left = bytes.length - off;
      if (left < 8) {
        throw new FormatError(
          `${src}: token ${count} at byte ${off} is truncated: its score and length need 8 bytes but ${left} remain`,
        );
      }
      const len = view.getInt32(off + 4, true);
      if (len < 0 || len > left - 8) {
        throw new FormatError(
          `${src}: token ${count} at byte ${off} has length ${len}, but ${left - 8} bytes remain in the file`,
        );
      }
      pieceBytes += len;
      off += 8 + len;
      if (++count > MAX_VOCAB_SIZE) {
        throw new FormatError(`${src}: has more than ${fmtBytes(MAX_VOCAB_SIZE)} tokens, the most supported`);
      }
    }
    if (count === 0) throw new FormatError(`${src}: contains no tokens (only the ${bytes.length}-byte header)`);
    const expected = opts.expectedVocabSize;
    if (expected !== undefined) {
      if (!Number.isInteger(expected) || expected <= 0) {
        throw new ArgumentError(`expectedVocabSize must be a positive integer, got ${expected}`);
      }
      if (count !== expected) {
        throw new FormatError(`${src} has ${count} tokens but the model expects ${expected}`);
      }
    }

    // Pass 2: copy the pieces and scores out.
    const data = new Uint8Array(pieceBytes);
    const offsets = new Int32Array(count + 1);
    const scores = new Float32Array(count);
    off = 4;
    let at = 0;
    for (let i = 0; i < count; i++) {
      scores[i] = view.getFloat32(off, true);
      const len = view.getInt32(off + 4, true);
      data.set(bytes.subarray(off + 8, off + 8 + len), at);
      offsets[i] = at;
      at += len;
      off += 8 + len;
    }
    offsets[count] = at;
    return new Tokenizer(src, maxTokenLength, data, offsets, scores);
  }

  /**
   * A vocabulary given as pieces and scores (a GGUF file's
   * `tokenizer.ggml.tokens` and `.scores`, a sentencepiece model's): piece i
   * is token i's text as UTF-8 (a string) or raw bytes, with sentencepiece's
   * "\u2581" already turned into spaces, as in a tokenizer.bin. BOS and EOS
   * are ids 1 and 2 and byte b's fallback token is id b + 3, as llama2.c
   * assumes; the caller checks that the vocabulary agrees.
   */
  static fromVocab(pieces: readonly (string | Uint8Array)[], scores: ArrayLike<number>, opts: TokenizerOptions = {}): Tokenizer {
    const src = opts.source ?? '<vocab>';
    if (pieces.length !== scores.length) {
      throw new ArgumentError(`${src}: ${pieces.length} pieces but ${scores.length} scores`);
    }
    if (pieces.length === 0) throw new FormatError(`${src}: contains no tokens`);
    if (pieces.length > MAX_VOCAB_SIZE) throw new FormatError(`${src}: has more than ${fmtBytes(MAX_VOCAB_SIZE)} tokens, the most supported`);
    const expected = opts.expectedVocabSize;
    if (expected !== undefined && pieces.length !== expected) {
      throw new FormatError(`${src} has ${pieces.length} tokens but the model expects ${expected}`);
    }
    const enc = new TextEncoder();
    const bytes = pieces.map((p) => (typeof p === 'string' ? enc.encode(p) : p));
    const data = new Uint8Array(bytes.reduce((a, b) => a + b.length, 0));
    const offsets = new Int32Array(bytes.length + 1);
    let at = 0;
    let longest = 0;
    bytes.forEach((b, i) => {
      offsets[i] = at;
      data.set(b, at);
      at += b.length;
      longest = Math.max(longest, b.length);
    });
    offsets[bytes.length] = at;
    return new Tokenizer(src, Math.max(longest, 1), data, offsets, Float32Array.from(scores));
  }

  /**
   * A GGUF `gpt2` vocabulary: byte-level BPE (tokens in byte-level form, "Ġ"
   * for a space), merges as "left right" in rank order, llama.cpp's token
   * types and its BOS and EOS ids, with the pre-tokenizer `pre` names, as
   * llama.cpp runs it (pretokenize.ts, bpe.ts). There is no dummy prefix;
   * decodePiece gives a token's bytes whatever precedes it (control tokens:
   * none), and decode applies llama.cpp's space clean-up where that
   * pre-tokenizer asks for it (llama-bpe, gpt-2, default). An unknown `pre`
   * is a FormatError naming it.
   */
  static fromBPE(tokens: readonly string[], merges: readonly string[], opts: BPEOptions): Tokenizer {
    const src = opts.source ?? '<vocab>';
    if (tokens.length === 0) throw new FormatError(`${src}: contains no tokens`);
    if (tokens.length > MAX_VOCAB_SIZE) throw new FormatError(`${src}: has more than ${fmtBytes(MAX_VOCAB_SIZE)} tokens, the most supported`);
    for (const [what, id] of [['BOS', opts.bosId], ['EOS', opts.eosId]] as const) {
      if (!(Number.isInteger(id) && id >= 0 && id < tokens.length)) throw new FormatError(`${src}: ${what} id ${id} is outside the ${tokens.length}-token vocabulary`);
    }
    const pre = ggufPreTokenizer(opts.pre ?? 'llama-bpe', src);
    const model = new BpeModel(tokens, merges, { ignoreMerges: pre.ignoreMerges }, src);
    // Every byte must be a token, or some text could not be encoded.
    for (const c of BYTE_LEVEL_CHARS) {
      if (!model.ids.has(c)) throw new FormatError(`${src}: the byte-level vocabulary lacks the token ${JSON.stringify(c)}`);
    }
    const types = opts.types;
    const added: AddedToken[] = [];
    const enc = new TextEncoder();
    const pieces = tokens.map((t, i) => {
      const type = types?.[i];
      if (type === TYPE_CONTROL) {
        added.push({ id: i, content: t, special: true });
        return EMPTY;
      }
      if (type === TYPE_USER_DEFINED) {
        added.push({ id: i, content: t, special: false });
        return enc.encode(t);
      }
      return byteLevelPiece(t);
    });
    const pipeline = new Pipeline({
      model,
      preTokenize: (text) => pre.splits.reduce<string[]>((acc, re) => splitPieces(acc, re), [text]),
      byteLevel: true,
      added,
      pieces,
      stripSpaceAfterBos: false,
      cleanup: pre.cleanSpaces ? 'llama.cpp' : 'none',
    });
    const base = Tokenizer.fromVocab(tokens, new Float32Array(tokens.length), opts);
    return new Tokenizer(src, base.maxTokenLength, base.data, base.offsets, base.scores, {
      pipeline, bosId: opts.bosId, eosId: opts.eosId, addBos: opts.addBos ?? true, addEos: opts.addEos ?? false,
    });
  }

  /**
   * A Hugging Face tokenizer.json (the text, its bytes or the parsed object),
   * with its tokenizer_config.json if there is one (BOS/EOS names, whether
   * to add them, clean_up_tokenization_spaces): a BPE model,
   * SentencePiece-style (Llama 2: "▁" for spaces, byte fallback) or
   * byte-level (Llama 3, GPT-2), with its normalizer, pre-tokenizer, added
   * tokens, post-processor and decoder (hf.ts). What this cannot reproduce is
   * a FormatError naming it.
   */
  static fromTokenizerJson(json: unknown, config?: unknown, opts: TokenizerOptions = {}): Tokenizer {
    const src = opts.source ?? 'tokenizer.json';
    const root = readJson(json, src);
    const cfg = config === undefined ? undefined : readJson(config, `${src} (tokenizer_config.json)`);
    const hf = parseTokenizerJson(root, cfg, src);
    const base = Tokenizer.fromVocab(hf.tokens, new Float32Array(hf.tokens.length), { ...opts, source: src });
    for (const [what, id, add] of [['BOS', hf.bosId, hf.addBos], ['EOS', hf.eosId, hf.addEos]] as const) {
      if (add && id < 0) throw new FormatError(`${src}: adds ${what} but names no ${what} token`);
    }
    return new Tokenizer(src, base.maxTokenLength, base.data, base.offsets, base.scores, {
      pipeline: new Pipeline(hf.spec), bosId: hf.bosId, eosId: hf.eosId, addBos: hf.addBos, addEos: hf.addEos,
    });
  }

  /**
   * A tokenizer.bin or a tokenizer.json, told apart by content (a JSON
   * object is a tokenizer.json; see looksLikeTokenizerJson). `config` is the
   * tokenizer_config.json to use with a tokenizer.json (text, bytes or
   * parsed).
   */
  static load(bytes: Uint8Array, opts: LoadOptions = {}): Tokenizer {
    if (looksLikeTokenizerJson(bytes)) {
      return Tokenizer.fromTokenizerJson(bytes, opts.config, { ...opts, source: opts.source ?? 'tokenizer.json' });
    }
    return Tokenizer.fromBytes(bytes, opts);
  }

  /**
   * Reads and parses a tokenizer.bin or a tokenizer.json (told apart by
   * content, as load does; Node only: fs is imported lazily so browsers can
   * bundle this module). For a tokenizer.json without `opts.config`, a
   * tokenizer_config.json in the same directory is read if there is one.
   * Only a regular file is read, and only as many bytes as it had when
   * opened: a FIFO, a directory or a device such as /dev/zero is refused
   * with a FormatError naming the path.
   */
  static async fromFile(path: string, opts: LoadOptions = {}): Promise<Tokenizer> {
    const source = opts.source ?? path;
    const bytes = await readTokenizerFile(path, source);
    if (!looksLikeTokenizerJson(bytes)) return Tokenizer.fromBytes(bytes, { ...opts, source });
    let config = opts.config;
    if (config === undefined) {
      const configPath = path.replace(/[^/\\]*$/, '') + 'tokenizer_config.json';
      try {
        config = await readTokenizerFile(configPath, configPath);
      } catch (e) {
        // No tokenizer_config.json beside it: the tokenizer.json alone decides.
        if ((e as { cause?: { code?: string } }).cause?.code !== 'ENOENT') throw e;
      }
    }
    return Tokenizer.fromTokenizerJson(bytes, config, { ...opts, source });
  }

  /** The raw bytes of a piece (a view into the vocab: do not modify). Pieces need not be valid UTF-8. */
  piece(id: number): Uint8Array {
    this.checkId(id);
    return this.data.subarray(this.offsets[id], this.offsets[id + 1]);
  }

  /** A piece's merge score (higher merges first). */
  score(id: number): number {
    this.checkId(id);
    return this.scores[id];
  }

  /**
   * llama2.c's `encode()`: UTF-8 bytes, BOS, the dummy-prefix " " token, one
   * token per vocab codepoint (else one byte-fallback token per byte), then
   * greedy BPE merges by score, then EOS.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    const { bos = this.addBos, eos = this.addEos } = opts;
    if (this.pipeline) {
      if (bos && this.bosId < 0) throw new ArgumentError(`${this.source} has no BOS token: encode with bos: false`);
      if (eos && this.eosId < 0) throw new ArgumentError(`${this.source} has no EOS token: encode with eos: false`);
      const ids = this.pipeline.encode(text, opts.special === true);
      return [...(bos ? [this.bosId] : []), ...ids, ...(eos ? [this.eosId] : [])];
    }
    // A vocab of one or two tokens has no BOS (1) or EOS (2): refuse rather than emit an id it lacks.
    if (bos) this.requireSpecial(BOS_ID, 'BOS');
    if (eos) this.requireSpecial(EOS_ID, 'EOS');
    const t = (this.lookup ??= this.buildTables());
    let bytes = new TextEncoder().encode(text);
    // llama2.c reads the text as a C string: nothing after a NUL exists for it.
    const nul = bytes.indexOf(0);
    if (nul >= 0) bytes = bytes.subarray(0, nul);

    const ids: number[] = [];
    if (bos) ids.push(BOS_ID);
    if (bytes.length > 0) ids.push(t.dummyPrefix);

    // Split into codepoints exactly as llama2.c does: a non-continuation byte
    // starts a new buffer; keep accumulating while the next byte is a
    // continuation byte and the buffer holds fewer than 4 bytes. This also
    // defines what happens to malformed input (it cannot occur from a JS
    // string, whose lone surrogates TextEncoder turns into U+FFFD).
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      if ((bytes[i] & 0xc0) !== 0x80) start = i;
      if (i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && i + 1 - start < 4) continue;
      const id = t.ids.get(latin1(bytes, start, i + 1));
      if (id !== undefined) {
        ids.push(id);
      } else {
        for (let j = start; j <= i; j++) ids.push(this.byteToken(bytes[j]));
      }
      start = i + 1;
    }

    const merged = this.merge(ids, t);
    if (eos) merged.push(EOS_ID);
    return merged;
  }

  /**
   * llama2.c's `decode()`: the bytes printed for `token` after `prev`. After
   * BOS a leading space is dropped (sentencepiece's dummy prefix); a piece
   * `<0xHH>` becomes that raw byte. Like llama2.c's C string, the result ends
   * at the first NUL, so `<0x00>` decodes to nothing.
   */
  decodePiece(prev: number, token: number): Uint8Array {
    if (this.pipeline) {
      this.checkId(token);
      const p = this.pipeline.spec.pieces[token];
      // SentencePiece-style decoders drop the prefix space the encoder added.
      return this.pipeline.spec.stripSpaceAfterBos && prev === this.bosId && p[0] === 0x20 ? p.subarray(1) : p;
    }
    let p = this.piece(token);
    const nul = p.indexOf(0);
    if (nul >= 0) p = p.subarray(0, nul);
    if (prev === BOS_ID && p[0] === 0x20) p = p.subarray(1);
    const byte = parseBytePiece(p);
    if (byte >= 0) return byte === 0 ? EMPTY : BYTE_PIECES[byte];
    return p;
  }

  /**
   * The text llama2.c prints for a token sequence, the first token being the
   * `prev` of the second (as in generation: BOS itself is never printed).
   */
  decode(tokens: readonly number[]): string {
    const stream = new TextStream(this);
    let out = '';
    for (let i = 1; i < tokens.length; i++) out += stream.push(tokens[i - 1], tokens[i]);
    out += stream.flush();
    // The space clean-up needs the whole text, so it applies here and not to a stream.
    const cleanup = this.pipeline?.spec.cleanup;
    return cleanup === 'hf' ? cleanUpHf(out) : cleanup === 'llama.cpp' ? cleanUpLlamaCpp(out) : out;
  }

  /** The space clean-up decode applies: none, Hugging Face's (clean_up_tokenization_spaces) or llama.cpp's (clean_spaces). */
  get cleanup(): 'none' | 'hf' | 'llama.cpp' {
    return this.pipeline?.spec.cleanup ?? 'none';
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new ArgumentError(`token id ${id} is out of range for ${this.source} (vocab size ${this.vocabSize})`);
    }
  }

  private requireSpecial(id: number, what: string): void {
    if (id >= this.vocabSize) {
      throw new FormatError(`${this.source} has ${this.vocabSize} tokens, too few for ${what} (id ${id})`);
    }
  }

  private byteToken(b: number): number {
    const id = b + BYTE_OFFSET;
    if (id >= this.vocabSize) {
      // llama2.c would index past its vocab here; refuse instead.
      throw new FormatError(
        `${this.source} has ${this.vocabSize} tokens, too few for the byte-fallback token of byte 0x${hex2(b)} (id ${id})`,
      );
    }
    return id;
  }

  private buildTables(): EncodeTables {
    const keys: string[] = new Array(this.vocabSize);
    const ids = new Map<string, number>();
    let longest = 0;
    for (let id = 0; id < this.vocabSize; id++) {
      let p = this.data.subarray(this.offsets[id], this.offsets[id + 1]);
      // llama2.c compares and concatenates pieces as C strings.
      const nul = p.indexOf(0);
      if (nul >= 0) p = p.subarray(0, nul);
      const key = latin1(p, 0, p.length);
      keys[id] = key;
      longest = Math.max(longest, key.length);
      // A duplicated piece: llama2.c's bsearch over its qsorted copy may return
      // either id; we keep the first (real vocabs have no duplicates).
      if (!ids.has(key)) ids.set(key, id);
    }
    // llama2.c's str_lookup(" ") returns -1 when the vocab lacks " " and then
    // reads out of bounds; we fall back to the byte token of 0x20 instead.
    const space = ids.get(' ');
    const dummyPrefix = space ?? this.byteToken(0x20);
    return { keys, ids, longest, dummyPrefix };
  }

  /**
   * llama2.c's merge loop, which repeatedly merges the adjacent pair whose
   * concatenation is in the vocab with the highest score (strictly greater
   * than -1e10; the leftmost pair wins a tie), until none is left: the same
   * ids in O(n log n) instead of rescanning every pair (mergeByHeap).
   */
  private merge(ids: number[], t: EncodeTables): number[] {
    // Each pair (a, b) is looked up once per encode; repeats (long runs of
    // the same text) hit this memo instead of building a new string.
    const memo = new Map<number, number>();
    const V = this.vocabSize;
    const pairId = (a: number, b: number): number => {
      const k = a * V + b;
      let id = memo.get(k);
      if (id === undefined) {
        const ka = t.keys[a];
        const kb = t.keys[b];
        // A concatenation longer than every piece cannot be one: skip the string.
        id = ka.length + kb.length > t.longest ? -1 : (t.ids.get(ka + kb) ?? -1);
        memo.set(k, id);
      }
      return id;
    };

    return mergeByHeap(ids, (a, b, into) => {
      const id = pairId(a, b);
      // llama2.c starts best_score at -1e10 and needs a strictly greater score.
      if (id < 0 || !(this.scores[id] > -1e10)) return false;
      into.score = this.scores[id];
      into.id = id;
      return true;
    });
  }
}

interface EncodeTables {
  /** Piece i as a binary (latin1) string: one char per byte. */
  keys: string[];
  /** Binary piece string to id. */
  ids: Map<string, number>;
  /** Length of the longest piece. */
  longest: number;
  /** The id llama2.c adds before non-empty text (the " " piece). */
  dummyPrefix: number;
}

/** bytes[start..end) as a string of one char per byte: a cheap exact Map key for arbitrary bytes. */
function latin1(bytes: Uint8Array, start: number, end: number): string {
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * What llama2.c's `sscanf(piece, "<0x%02hhX>", &byte) == 1` accepts: the
 * literal "<0x" then one or two hex digits (either case). sscanf's count does
 * not depend on the closing '>', so neither does this. Returns -1 otherwise.
 * (sscanf would also skip whitespace or take a sign before the digits; no
 * real vocab has such pieces.)
 */
function parseBytePiece(p: Uint8Array): number {
  if (p.length < 4 || p[0] !== 0x3c || p[1] !== 0x30 || p[2] !== 0x78) return -1;
  const hi = hexDigit(p[3]);
  if (hi < 0) return -1;
  const lo = p.length > 4 ? hexDigit(p[4]) : -1;
  return lo < 0 ? hi : hi * 16 + lo;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

const hex2 = (b: number): string => b.toString(16).toUpperCase().padStart(2, '0');

const EMPTY = new Uint8Array(0);
/** llama.cpp's token types used by fromBPE. */
const TYPE_CONTROL = 3;
const TYPE_USER_DEFINED = 4;
const BYTE_LEVEL_CHARS = BYTE_TO_CHAR;

/**
 * Whether bytes are a JSON object (a tokenizer.json) rather than a
 * tokenizer.bin: after any whitespace or byte-order mark, "{" then
 * whitespace, '"' or "}". A tokenizer.bin starting so would declare a
 * max_token_length of at least 2427 bytes, which no vocabulary has.
 */
export function looksLikeTokenizerJson(bytes: Uint8Array): boolean {
  const ws = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
  let i = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  while (i < bytes.length && ws(bytes[i])) i++;
  if (bytes[i] !== 0x7b) return false;
  i++;
  while (i < bytes.length && ws(bytes[i])) i++;
  return bytes[i] === 0x22 || bytes[i] === 0x7d;
}

/** A whole regular file, at most MAX_TOKENIZER_BYTES. */
async function readTokenizerFile(path: string, source: string): Promise<Uint8Array> {
  const file = await openFileSource(path, { name: source, what: 'tokenizer' });
  try {
    if (file.size > MAX_TOKENIZER_BYTES) {
      throw new FormatError(
        `${source}: is ${fmtBytes(file.size)} bytes, more than any tokenizer (at most ${fmtBytes(MAX_TOKENIZER_BYTES)} accepted; a model file given as the tokenizer?)`,
      );
    }
    const bytes = new Uint8Array(file.size);
    await file.readAt(bytes, 0);
    return bytes;
  } finally {
    await file.close();
  }
}

/** A byte-level token's bytes; a token that is not byte-level text prints as its UTF-8. */
function byteLevelPiece(t: string): Uint8Array {
  const bytes: number[] = [];
  for (const ch of t) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) return new TextEncoder().encode(t);
    bytes.push(b);
  }
  return Uint8Array.from(bytes);
}
/** One shared single-byte array per byte, so decoding byte tokens allocates nothing. */
const BYTE_PIECES: Uint8Array[] = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
