/**
 * OpenAI's chat and text completion requests, checked and turned into what
 * the library takes; and its response, chunk and logprobs shapes. Unknown
 * fields are ignored (clients send many); a known field with a wrong type or
 * range is a 400 naming it. `null` means absent, as OpenAI's clients send it.
 */
import type { ChatMessage, GeneratedToken } from '@rama/llama';
import { invalid } from './http.js';

export interface SamplingRequest {
  stream: boolean;
  includeUsage: boolean;
  maxTokens?: number;
  temperature: number;
  topp: number;
  seed?: number;
  stop: string[];
  /** Whether to report logprobs, and how many alternatives per token. */
  logprobs: boolean;
  topLogprobs: number;
}

export interface ChatRequest extends SamplingRequest {
  kind: 'chat';
  messages: ChatMessage[];
}

export interface CompletionRequest extends SamplingRequest {
  kind: 'completion';
  prompt: string | number[];
  echo: boolean;
}

type Body = Record<string, unknown>;

const given = (v: unknown): boolean => v !== undefined && v !== null;
const kind = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

function num(body: Body, name: string, min: number, max: number): number | undefined {
  const v = body[name];
  if (!given(v)) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw invalid(name, `'${name}' must be a number, got ${kind(v)}.`, 'invalid_type');
  if (v < min || v > max) throw invalid(name, `'${name}' must be between ${min} and ${max}, got ${v}.`, 'invalid_value');
  return v;
}

function int(body: Body, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = num(body, name, min, max);
  if (v !== undefined && !Number.isInteger(v)) throw invalid(name, `'${name}' must be an integer, got ${v}.`, 'invalid_type');
  return v;
}

function bool(body: Body, name: string): boolean | undefined {
  const v = body[name];
  if (!given(v)) return undefined;
  if (typeof v !== 'boolean') throw invalid(name, `'${name}' must be a boolean, got ${kind(v)}.`, 'invalid_type');
  return v;
}

function str(body: Body, name: string): string | undefined {
  const v = body[name];
  if (!given(v)) return undefined;
  if (typeof v !== 'string') throw invalid(name, `'${name}' must be a string, got ${kind(v)}.`, 'invalid_type');
  return v;
}

/** The most stop strings (OpenAI allows 4; a few more cost nothing). */
const MAX_STOP = 16;

/** What chat and text completions share. */
function sampling(body: Body): SamplingRequest {
  str(body, 'model'); // any name: the server has one model
  str(body, 'user'); // ignored
  num(body, 'presence_penalty', -2, 2); // accepted and ignored: the library has a repetition penalty of another kind
  num(body, 'frequency_penalty', -2, 2);
  const n = int(body, 'n', 1, 128);
  if (n !== undefined && n !== 1) throw invalid('n', `Only n=1 is supported, got n=${n}.`, 'unsupported_value');

  const stream = bool(body, 'stream') ?? false;
  let includeUsage = false;
  const so = body.stream_options;
  if (given(so)) {
    if (typeof so !== 'object' || Array.isArray(so)) throw invalid('stream_options', `'stream_options' must be an object, got ${kind(so)}.`, 'invalid_type');
    if (!stream) throw invalid('stream_options', "'stream_options' is only allowed when 'stream' is true.", 'invalid_value');
    includeUsage = bool(so as Body, 'include_usage') ?? false;
  }

  // OpenAI's temperature 0 and top_p 0 both mean the likeliest token; the library's topp 0 means no top-p.
  let temperature = num(body, 'temperature', 0, 2) ?? 1;
  const topp = num(body, 'top_p', 0, 1) ?? 1;
  if (topp === 0) temperature = 0;

  let seed = int(body, 'seed', Number.MIN_SAFE_INTEGER);
  // The library's RNG refuses 0 (xorshift's state would never change): any other fixed seed stands in for it.
  if (seed === 0) seed = 0x5eed;

  let stop: string[] = [];
  const s = body.stop;
  if (typeof s === 'string') stop = [s];
  else if (Array.isArray(s)) stop = s;
  else if (given(s)) throw invalid('stop', `'stop' must be a string or an array of strings, got ${kind(s)}.`, 'invalid_type');
  if (stop.length > MAX_STOP) throw invalid('stop', `'stop' holds at most ${MAX_STOP} strings, got ${stop.length}.`, 'invalid_value');
  if (stop.some((x) => typeof x !== 'string' || x === '')) throw invalid('stop', "'stop' must hold non-empty strings.", 'invalid_type');

  return { stream, includeUsage, temperature, topp, seed, stop, logprobs: false, topLogprobs: 0 };
}

export function parseChatRequest(body: Body): ChatRequest {
  const base = sampling(body);
  const maxTokens = int(body, 'max_completion_tokens', 1) ?? int(body, 'max_tokens', 1);
  const logprobs = bool(body, 'logprobs') ?? false;
  const top = int(body, 'top_logprobs', 0, 20);
  if (top !== undefined && !logprobs) throw invalid('top_logprobs', "'top_logprobs' needs 'logprobs' to be true.", 'invalid_value');

  const raw = body.messages;
  if (!Array.isArray(raw)) throw invalid('messages', `'messages' must be an array, got ${kind(raw)}.`, given(raw) ? 'invalid_type' : 'missing_required_parameter');
  if (raw.length === 0) throw invalid('messages', "'messages' must not be empty.", 'invalid_value');
  const messages = mergeTurns(raw.map((m, i) => message(m, i)));
  return { ...base, kind: 'chat', messages, maxTokens, logprobs, topLogprobs: top ?? 0 };
}

/** One chat message: its role (`developer` reads as `system`) and its text (a string, or text parts). */
function message(m: unknown, i: number): ChatMessage {
  const where = `messages[${i}]`;
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw invalid(where, `'${where}' must be an object, got ${kind(m)}.`, 'invalid_type');
  const { role, content } = m as Body;
  const r = role === 'developer' ? 'system' : role;
  if (r !== 'system' && r !== 'user' && r !== 'assistant') {
    throw invalid(`${where}.role`, `'${where}.role' must be 'system', 'developer', 'user' or 'assistant', got ${JSON.stringify(role) ?? 'nothing'}.`, 'invalid_value');
  }
  let text: string;
  if (typeof content === 'string') text = content;
  else if (Array.isArray(content)) {
    text = content
      .map((p, j) => {
        const part = p as Body | null;
        if (part === null || typeof part !== 'object' || part.type !== 'text' || typeof part.text !== 'string') {
          throw invalid(`${where}.content[${j}]`, `'${where}.content[${j}]' must be a text part { type: 'text', text }: this model reads only text.`, 'invalid_value');
        }
        return part.text;
      })
      .join('');
  } else throw invalid(`${where}.content`, `'${where}.content' must be a string or an array of text parts, got ${kind(content)}.`, 'invalid_type');
  return { role: r, content: text };
}

/**
 * Consecutive messages of one role as one message (paragraphs joined), as
 * OpenAI accepts them: Llama 2's template has turns, user and assistant in
 * alternation, and the library checks that order.
 */
function mergeTurns(messages: ChatMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const m of messages) {
    const last = out[out.length - 1];
    if (last && last.role === m.role) out[out.length - 1] = { role: m.role, content: `${last.content}\n\n${m.content}` };
    else out.push(m);
  }
  return out;
}

export function parseCompletionRequest(body: Body, vocabSize: number): CompletionRequest {
  const base = sampling(body);
  const maxTokens = int(body, 'max_tokens', 1);
  const top = int(body, 'logprobs', 0, 5);
  const echo = bool(body, 'echo') ?? false;
  const bestOf = int(body, 'best_of', 1, 128);
  if (bestOf !== undefined && bestOf !== 1) throw invalid('best_of', `Only best_of=1 is supported, got ${bestOf}.`, 'unsupported_value');
  if (given(body.suffix)) throw invalid('suffix', "'suffix' (insertion) is not supported.", 'unsupported_value');

  // A string, one string in an array, or token ids (one prompt: several need n prompts' worth of choices).
  let prompt: string | number[];
  const p = body.prompt;
  if (typeof p === 'string') prompt = p;
  else if (Array.isArray(p) && p.length === 1 && typeof p[0] === 'string') prompt = p[0];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'number')) {
    if (!p.every((x) => Number.isInteger(x) && x >= 0 && x < vocabSize)) throw invalid('prompt', `Token ids in 'prompt' must be integers in 0..${vocabSize - 1}.`, 'invalid_value');
    prompt = p as number[];
  } else if (Array.isArray(p) && p.length === 1 && Array.isArray(p[0])) return parseCompletionRequest({ ...body, prompt: p[0] }, vocabSize);
  else if (Array.isArray(p) && p.length > 1) throw invalid('prompt', 'Only one prompt per request is supported.', 'unsupported_value');
  else throw invalid('prompt', `'prompt' must be a string or an array of token ids, got ${kind(p)}.`, given(p) ? 'invalid_type' : 'missing_required_parameter');
  return { ...base, kind: 'completion', prompt, maxTokens, logprobs: top !== undefined, topLogprobs: top ?? 0, echo };
}

/** OpenAI's finish_reason for the library's stop reason. */
export function finishReason(reason: string): 'stop' | 'length' {
  return reason === 'steps' || reason === 'context' ? 'length' : 'stop';
}

export interface TokenInfo {
  token: string;
  bytes: number[];
  logprob: number;
  top: { token: string; bytes: number[]; logprob: number }[];
}

const utf8 = new TextEncoder();
const loose = new TextDecoder();

/** The chosen token's and the alternatives' text and bytes, from the library's logprobs. */
export function tokenInfo(t: GeneratedToken, piece: Uint8Array): TokenInfo {
  const top = (t.topLogprobs ?? []).map((c) => ({ token: c.text, bytes: [...utf8.encode(c.text)], logprob: c.logprob }));
  return { token: loose.decode(piece), bytes: [...piece], logprob: t.logprob!, top };
}

/** Chat's `logprobs.content` entries. */
export const chatLogprobs = (infos: TokenInfo[]) => ({
  content: infos.map((i) => ({ token: i.token, logprob: i.logprob, bytes: i.bytes, top_logprobs: i.top })),
  refusal: null,
});

/** Text completions' legacy logprobs object. */
export function completionLogprobs(infos: TokenInfo[], k: number, offset: number) {
  const text_offset: number[] = [];
  for (const i of infos) {
    text_offset.push(offset);
    offset += i.token.length;
  }
  return {
    tokens: infos.map((i) => i.token),
    token_logprobs: infos.map((i) => i.logprob),
    top_logprobs: k === 0 ? null : infos.map((i) => Object.fromEntries(i.top.map((c) => [c.token, c.logprob]))),
    text_offset,
  };
}
