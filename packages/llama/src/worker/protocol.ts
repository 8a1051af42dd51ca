/**
 * Messages between the page (index.ts) and the engine worker (serve.ts).
 * Requests and replies go over the worker's own channel, matched by id; each
 * generation streams over a MessageChannel of its own, whose page end pulls
 * tokens with credits so that the worker runs at most a few tokens ahead of
 * the consumer (a consumer that stops asking suspends the generation, as on
 * the page).
 */
import { AbortError, ArgumentError, BackendError, FormatError, NumericError, RamaError } from '@rama/core';
import type { ModelConfig } from '@rama/checkpoint';
import type { GeneratedToken, GenerationResult } from '../generation.js';
import type { ModelFormat } from '../gguf.js';
import type { ModelSpec } from '../spec.js';

/** A model or tokenizer as it travels: an absolute URL (fetched by the worker), a Blob, or bytes. */
export type WireSource = { url: string } | Blob | ArrayBuffer | Uint8Array;

/** What the page learns about the model once it is loaded (ModelSpec less its template functions). */
export interface ModelInfo {
  spec: Omit<ModelSpec, 'chatTemplate' | 'jinjaTemplate'>;
  config: ModelConfig;
  format: ModelFormat;
  contextLength: number;
  batchSize: number;
  sessions: number;
  quantized: boolean;
  backend: BackendInfo;
}

/** The backend that runs in the worker, described. */
export interface BackendInfo {
  name: string;
  description: string;
  /** CPU threads, when the backend says. */
  threads?: number;
  /** Why the backend runs on fewer threads or slower kernels than it could (missing cross-origin isolation, a CSP), if it does. */
  notice?: string;
}

/** Loading progress, reported to `onProgress`. */
export interface LoadProgress {
  /** `download`: a URL is being fetched (bytes so far, of `total` when the server said); `load`: the model is being read and uploaded. */
  phase: 'download' | 'load';
  /** Which file (download only): `model` or `tokenizer` for a URL; for an `hf:` name, the file in its repository. */
  file?: string;
  loaded?: number;
  total?: number;
}

export type Request =
  | { op: 'load'; options: Record<string, unknown> & { model: WireSource; tokenizer?: WireSource } }
  | { op: 'tokenize'; text: string; options?: unknown }
  | { op: 'countTokens'; text: string; options?: unknown }
  | { op: 'detokenize'; ids: readonly number[] }
  | { op: 'session'; session: number }
  | { op: 'reset'; session: number }
  | { op: 'disposeSession'; session: number }
  | { op: 'generate' | 'chat'; session: number; input: unknown; options: Record<string, unknown>; aborted: boolean; port: MessagePort }
  | { op: 'dispose' };

/** From the worker on its channel. */
export type Reply =
  | { type: 'ready' }
  | { type: 'progress'; id: number; progress: LoadProgress }
  | { type: 'reply'; id: number; value?: unknown }
  | { type: 'error'; id: number; error: WireError };

/** Page to worker, on a generation's port. */
export type PortIn = { credit: number } | { abort: true } | { cancel: true };

/** Worker to page, on a generation's port. */
export type PortOut =
  | { token: GeneratedToken }
  | { end: GenerationResult; tokens: readonly number[] }
  | { error: WireError };

/** Tokens the worker may run ahead of the consumer. */
export const CREDITS = 8;

/** An error as it crosses: its class name, message, code and stack. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/** Rama's error classes by their names, subclasses first: a minifier may rename the classes, so `name` is not trusted. */
const CLASSES: [string, new (...args: never[]) => Error][] = [
  ['FormatError', FormatError], ['ArgumentError', ArgumentError], ['BackendError', BackendError], ['NumericError', NumericError],
  ['AbortError', AbortError], ['RamaError', RamaError],
];

export function toWire(e: unknown): WireError {
  if (e instanceof Error) {
    const name = CLASSES.find(([, c]) => e instanceof c)?.[0] ?? e.name;
    return { name, message: e.message, code: (e as { code?: string }).code, stack: e.stack };
  }
  return { name: 'Error', message: String(e) };
}

const TYPED: Record<string, (message: string) => Error> = {
  FormatError: (m) => new FormatError(m),
  ArgumentError: (m) => new ArgumentError(m),
  BackendError: (m) => new BackendError(m),
  NumericError: (m) => new NumericError(m),
  AbortError: (m) => new AbortError(m),
};

/** The same typed error on this side (RamaError subclasses by name; others as a plain Error of that name). */
export function fromWire(w: WireError): Error {
  const make = TYPED[w.name];
  let e: Error;
  if (make) e = make(w.message);
  else if (w.name === 'RamaError') e = new RamaError(w.code ?? 'E_RAMA', w.message);
  else {
    e = new Error(w.message);
    e.name = w.name;
  }
  e.name = w.name;
  // The worker's stack says where it was thrown; this side's would only show the message handler.
  if (w.stack) e.stack = w.stack;
  return e;
}
