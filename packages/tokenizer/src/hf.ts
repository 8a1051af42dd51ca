/**
 * Hugging Face's tokenizer.json (the `tokenizers` library's format) read
 * into a Pipeline: a BPE model, SentencePiece-style (Llama 2, Gemma: "▁" for
 * spaces, byte fallback) or byte-level (Llama 3, GPT-2, Qwen2, SmolLM), with
 * its normalizer, pre-tokenizer, added tokens, post-processor (BOS/EOS) and
 * decoder. tokenizer_config.json, when given, supplies what transformers
 * reads from it: add_bos_token/add_eos_token, bos_token/eos_token and
 * clean_up_tokenization_spaces. Anything else this cannot reproduce is a
 * FormatError naming it.
 */
import { FormatError } from '@rama/core';
import { BpeModel, CHAR_TO_BYTE } from './bpe.js';
import { type AddedToken, type PipelineSpec } from './pipeline.js';
import { GPT2_SPLIT, hfRegex, splitPieces, type SplitBehavior } from './pretokenize.js';

type Json = Record<string, unknown>;

export interface HfTokenizer {
  tokens: string[];
  spec: PipelineSpec;
  bosId: number;
  eosId: number;
  addBos: boolean;
  addEos: boolean;
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** Parses a JSON document given as text, bytes or an already parsed value. */
export function readJson(input: unknown, what: string): Json {
  let v = input;
  if (input instanceof Uint8Array) v = new TextDecoder().decode(input);
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch (e) {
      throw new FormatError(`${what}: is not valid JSON (${(e as Error).message})`);
    }
  }
  if (!isObject(v)) throw new FormatError(`${what}: is not a JSON object`);
  return v;
}

export function parseTokenizerJson(root: Json, config: Json | undefined, src: string): HfTokenizer {
  const fail = (msg: string): never => {
    throw new FormatError(`${src}: ${msg}`);
  };
  const model = root.model;
  if (!isObject(model)) fail('has no "model" object');
  const m = model as Json;
  if (m.type !== 'BPE' && !(m.type === undefined && 'merges' in m)) {
    fail(`model type ${JSON.stringify(m.type)} is not supported (only "BPE")`);
  }
  if (m.dropout !== undefined && m.dropout !== null && m.dropout !== 0) fail(`BPE dropout ${String(m.dropout)} is not supported`);
  for (const key of ['continuing_subword_prefix', 'end_of_word_suffix']) {
    if (m[key] !== undefined && m[key] !== null && m[key] !== '') fail(`BPE ${key} ${JSON.stringify(m[key])} is not supported`);
  }
  if (!isObject(m.vocab)) fail('model.vocab is not an object of token to id');
  const vocab = m.vocab as Json;
  if (!Array.isArray(m.merges)) fail('model.merges is not a list');

  // Token texts by id: the model's vocabulary, then added tokens.
  const tokens: string[] = [];
  const addedCount = Array.isArray(root.added_tokens) ? root.added_tokens.length : 0;
  // Ids run from 0 with no gap in real files; this bound keeps a stray huge id from sizing the vocabulary.
  const idLimit = Object.keys(vocab).length + addedCount;
  const place = (text: string, id: unknown, what: string): void => {
    if (!(Number.isInteger(id) && (id as number) >= 0 && (id as number) < idLimit)) {
      fail(`${what} ${JSON.stringify(text)} has the id ${JSON.stringify(id)}, not an integer from 0 to ${idLimit - 1} (the number of tokens listed)`);
    }
    const i = id as number;
    if (tokens[i] !== undefined && tokens[i] !== text) fail(`id ${i} is both ${JSON.stringify(tokens[i])} and ${JSON.stringify(text)}`);
    tokens[i] = text;
  };
  for (const [text, id] of Object.entries(vocab)) place(text, id, 'token');
  const modelSize = tokens.length;
  const modelTokens = Array.from({ length: modelSize }, (_, i) => tokens[i] ?? '');

  const addedList = root.added_tokens ?? [];
  if (!Array.isArray(addedList)) fail('added_tokens is not a list');
  const added: AddedToken[] = (addedList as unknown[]).map((a, k) => {
    if (!isObject(a) || typeof a.content !== 'string') return fail(`added_tokens[${k}] has no "content" string`);
    place(a.content, a.id, 'added token');
    return {
      id: a.id as number, content: a.content, special: a.special === true,
      lstrip: a.lstrip === true, rstrip: a.rstrip === true, singleWord: a.single_word === true,
    };
  });
  // Ids nothing names (holes) get an empty text, which no text can produce.
  for (let i = 0; i < tokens.length; i++) tokens[i] ??= '';

  const idOf = (text: string): number | undefined => {
    const a = added.find((t) => t.content === text);
    if (a) return a.id;
    const v = vocab[text];
    return typeof v === 'number' ? v : undefined;
  };

  let unkId: number | undefined;
  if (typeof m.unk_token === 'string') {
    unkId = idOf(m.unk_token);
    if (unkId === undefined) fail(`unk_token ${JSON.stringify(m.unk_token)} is not a token`);
  }
  const bpe = new BpeModel(modelTokens, m.merges as (string | string[])[], {
    ignoreMerges: m.ignore_merges === true,
    byteFallback: m.byte_fallback === true,
    unkId,
    fuseUnk: m.fuse_unk === true,
  }, src);

  const normalize = normalizer(root.normalizer, fail);
  const pre = preTokenizer(root.pre_tokenizer, fail);
  const post = postProcessor(root.post_processor, fail);
  const dec = decoder(root.decoder, fail);

  // BOS/EOS: tokenizer_config.json names them; else the post-processor's template does.
  const configToken = (key: string): number | undefined => {
    const v = config?.[key];
    const text = typeof v === 'string' ? v : isObject(v) && typeof v.content === 'string' ? v.content : undefined;
    if (text === undefined) return undefined;
    const id = idOf(text);
    if (id === undefined) fail(`tokenizer_config's ${key} ${JSON.stringify(text)} is not a token`);
    return id;
  };
  const bosId = configToken('bos_token') ?? post.bos ?? -1;
  const eosId = configToken('eos_token') ?? post.eos ?? -1;
  const addBos = typeof config?.add_bos_token === 'boolean' ? config.add_bos_token : post.bos !== undefined;
  const addEos = typeof config?.add_eos_token === 'boolean' ? config.add_eos_token : post.eos !== undefined;

  const specialIds = new Set(added.filter((a) => a.special).map((a) => a.id));
  const addedIds = new Set(added.map((a) => a.id));
  const pieces = tokens.map((t, id) => {
    if (specialIds.has(id)) return EMPTY;
    if (addedIds.has(id) && id >= modelSize) return utf8.encode(t);
    return dec.piece(t);
  });

  return {
    tokens,
    spec: {
      model: bpe,
      normalize,
      preTokenize: pre.split,
      byteLevel: pre.byteLevel,
      added,
      pieces,
      stripSpaceAfterBos: dec.stripFirstSpace,
      cleanup: config?.clean_up_tokenization_spaces === true ? 'hf' : 'none',
    },
    bosId,
    eosId,
    addBos,
    addEos,
  };
}

type Fail = (msg: string) => never;

function pattern(p: unknown, where: string, fail: Fail): RegExp {
  if (isObject(p) && typeof p.String === 'string') return new RegExp(p.String.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&'), 'gu');
  if (isObject(p) && typeof p.Regex === 'string') {
    try {
      return hfRegex(p.Regex, where);
    } catch (e) {
      return fail((e as Error).message);
    }
  }
  return fail(`${where} has a pattern that is neither {"String"} nor {"Regex"}: ${JSON.stringify(p)}`);
}

function normalizer(n: unknown, fail: Fail): ((s: string) => string) | undefined {
  if (n === null || n === undefined) return undefined;
  if (!isObject(n)) return fail(`normalizer is not an object`);
  switch (n.type) {
    case 'Sequence': {
      if (!Array.isArray(n.normalizers)) return fail('normalizer Sequence has no "normalizers" list');
      const steps = n.normalizers.map((x) => normalizer(x, fail)).filter((f): f is (s: string) => string => f !== undefined);
      return (s) => steps.reduce((acc, f) => f(acc), s);
    }
    case 'Prepend': {
      const p = String(n.prepend ?? '');
      return (s) => (s ? p + s : s);
    }
    case 'Replace': {
      const re = pattern(n.pattern, 'normalizer Replace', fail);
      const content = String(n.content ?? '');
      return (s) => s.replace(re, () => content);
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD': {
      const form = n.type;
      return (s) => s.normalize(form);
    }
    case 'Lowercase':
      return (s) => s.toLowerCase();
    case 'Strip': {
      const left = n.strip_left !== false;
      const right = n.strip_right !== false;
      return (s) => (left && right ? s.trim() : left ? s.trimStart() : right ? s.trimEnd() : s);
    }
    default:
      return fail(`normalizer type ${JSON.stringify(n.type)} is not supported (supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip)`);
  }
}

interface PreTokenizer {
  split: (s: string, atStart: boolean) => string[];
  byteLevel: boolean;
}

const BEHAVIORS: readonly SplitBehavior[] = ['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext'];

function preTokenizer(p: unknown, fail: Fail): PreTokenizer {
  if (p === null || p === undefined) return { split: (s) => [s], byteLevel: false };
  if (!isObject(p)) return fail('pre_tokenizer is not an object');
  switch (p.type) {
    case 'Sequence': {
      if (!Array.isArray(p.pretokenizers)) return fail('pre_tokenizer Sequence has no "pretokenizers" list');
      const steps = p.pretokenizers.map((x) => preTokenizer(x, fail));
      steps.forEach((st, i) => {
        if (st.byteLevel && i !== steps.length - 1) fail('a ByteLevel pre-tokenizer that is not the last of its Sequence is not supported');
      });
      return {
        split: (s, atStart) => steps.reduce<string[]>((pieces, st) => pieces.flatMap((x, k) => st.split(x, atStart && k === 0)), [s]),
        byteLevel: steps.some((st) => st.byteLevel),
      };
    }
    case 'ByteLevel': {
      const prefix = p.add_prefix_space === true;
      const regex = p.use_regex !== false;
      return {
        split: (s) => {
          const t = prefix && !s.startsWith(' ') ? ' ' + s : s;
          return regex ? splitPieces([t], GPT2_SPLIT) : [t];
        },
        byteLevel: true,
      };
    }
    case 'Split': {
      if (p.invert === true) return fail('pre_tokenizer Split with invert is not supported');
      const behavior = p.behavior as SplitBehavior;
      if (!BEHAVIORS.includes(behavior)) return fail(`pre_tokenizer Split behavior ${JSON.stringify(p.behavior)} is not supported (supported: ${BEHAVIORS.join(', ')})`);
      const re = pattern(p.pattern, 'pre_tokenizer Split', fail);
      return { split: (s) => splitPieces([s], re, behavior), byteLevel: false };
    }
    case 'Digits': {
      const re = p.individual_digits === true ? /\p{N}/gu : /\p{N}+/gu;
      return { split: (s) => splitPieces([s], re), byteLevel: false };
    }
    case 'Metaspace': {
      const rep = typeof p.replacement === 'string' ? p.replacement : '\u2581';
      const scheme = metaspaceScheme(p, fail);
      const split = p.split !== false;
      return {
        split: (s, atStart) => {
          let t = s.replaceAll(' ', rep);
          if ((scheme === 'always' || (scheme === 'first' && atStart)) && !t.startsWith(rep)) t = rep + t;
          return split ? t.split(new RegExp(`(?=${rep.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')})`, 'u')).filter((w) => w) : [t];
        },
        byteLevel: false,
      };
    }
    default:
      return fail(`pre_tokenizer type ${JSON.stringify(p.type)} is not supported (supported: Sequence, ByteLevel, Split, Digits, Metaspace)`);
  }
}

/** Metaspace's prepend_scheme, or the older add_prefix_space flag. */
function metaspaceScheme(p: Json, fail: Fail): 'always' | 'first' | 'never' {
  const s = p.prepend_scheme;
  if (s === 'always' || s === 'first' || s === 'never') return s;
  if (s !== undefined) return fail(`Metaspace prepend_scheme ${JSON.stringify(s)} is not supported`);
  return p.add_prefix_space === false ? 'never' : 'always';
}

interface Post {
  bos?: number;
  eos?: number;
}

function postProcessor(p: unknown, fail: Fail): Post {
  if (p === null || p === undefined) return {};
  if (!isObject(p)) return fail('post_processor is not an object');
  switch (p.type) {
    case 'ByteLevel':
      return {};
    case 'Sequence': {
      if (!Array.isArray(p.processors)) return fail('post_processor Sequence has no "processors" list');
      return p.processors.reduce<Post>((acc, x) => ({ ...acc, ...postProcessor(x, fail) }), {});
    }
    case 'TemplateProcessing': {
      if (!Array.isArray(p.single)) return fail('post_processor TemplateProcessing has no "single" template');
      const specials = isObject(p.special_tokens) ? p.special_tokens : {};
      const before: number[] = [];
      const after: number[] = [];
      let seen = false;
      for (const piece of p.single) {
        if (isObject(piece) && isObject(piece.Sequence)) {
          seen = true;
        } else if (isObject(piece) && isObject(piece.SpecialToken)) {
          const name = piece.SpecialToken.id;
          const entry = typeof name === 'string' ? specials[name] : undefined;
          const ids = isObject(entry) && Array.isArray(entry.ids) ? entry.ids : undefined;
          if (!ids || !ids.every((i) => Number.isInteger(i))) return fail(`post_processor template names the special token ${JSON.stringify(name)} but special_tokens has no ids for it`);
          (seen ? after : before).push(...(ids as number[]));
        } else {
          return fail(`post_processor template piece ${JSON.stringify(piece)} is not supported`);
        }
      }
      if (before.length > 1 || after.length > 1) {
        fail(`post_processor template adds ${before.length} token(s) before and ${after.length} after the text: only one BOS and one EOS are supported`);
      }
      return { ...(before.length ? { bos: before[0] } : {}), ...(after.length ? { eos: after[0] } : {}) };
    }
    default:
      return fail(`post_processor type ${JSON.stringify(p.type)} is not supported (supported: TemplateProcessing, ByteLevel, Sequence)`);
  }
}

interface Decoder {
  /** The bytes one model token prints. */
  piece: (token: string) => Uint8Array;
  /** The first token's leading space is dropped (Strip, or Metaspace with a prefix). */
  stripFirstSpace: boolean;
}

type Step = (t: string | Uint8Array) => string | Uint8Array;

function decoder(d: unknown, fail: Fail): Decoder {
  const steps: Step[] = [];
  let stripFirstSpace = false;
  const add = (x: unknown): void => {
    if (!isObject(x)) return void fail('decoder is not an object');
    switch (x.type) {
      case 'Sequence':
        if (!Array.isArray(x.decoders)) fail('decoder Sequence has no "decoders" list');
        for (const y of x.decoders as unknown[]) add(y);
        return;
      case 'ByteLevel':
        steps.push((t) => {
          if (typeof t !== 'string') return t;
          const bytes: number[] = [];
          for (const ch of t) {
            const b = CHAR_TO_BYTE.get(ch);
            if (b === undefined) return utf8.encode(t); // not byte-level text: print it as is
            bytes.push(b);
          }
          return Uint8Array.from(bytes);
        });
        return;
      case 'Replace': {
        const re = pattern(x.pattern, 'decoder Replace', fail);
        const content = String(x.content ?? '');
        steps.push((t) => (typeof t === 'string' ? t.replace(re, () => content) : t));
        return;
      }
      case 'ByteFallback':
        steps.push((t) => {
          if (typeof t !== 'string') return t;
          const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
          return m ? Uint8Array.of(parseInt(m[1], 16)) : t;
        });
        return;
      case 'Fuse':
        return; // joining pieces is what decoding does anyway
      case 'Strip': {
        const stop = Number(x.stop ?? 0);
        const start = Number(x.start ?? 0);
        if (x.content !== ' ' || stop !== 0 || start > 1) fail(`decoder Strip ${JSON.stringify(x)} is not supported (only one leading space)`);
        if (start === 1) stripFirstSpace = true;
        return;
      }
      case 'Metaspace': {
        const rep = typeof x.replacement === 'string' ? x.replacement : '\u2581';
        if (metaspaceScheme(x, fail) !== 'never') stripFirstSpace = true;
        steps.push((t) => (typeof t === 'string' ? t.replaceAll(rep, ' ') : t));
        return;
      }
      default:
        fail(`decoder type ${JSON.stringify(x.type)} is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)`);
    }
  };
  if (d !== null && d !== undefined) add(d);
  return {
    piece: (token) => {
      let t: string | Uint8Array = token;
      for (const s of steps) t = s(t);
      return typeof t === 'string' ? utf8.encode(t) : t;
    },
    stripFirstSpace,
  };
}
