/**
 * HTTP plumbing: errors in OpenAI's shape, JSON and SSE responses, and a
 * request body read with a size limit and strict UTF-8.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An error answered as `{ error: { message, type, param, code } }`, as OpenAI's API does. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly type: string = status >= 500 ? 'server_error' : 'invalid_request_error',
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 naming the offending field. */
export const invalid = (param: string | null, message: string, code: string | null = null): HttpError => new HttpError(400, message, param, code);

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, e: HttpError): void {
  if (res.headersSent) {
    // Mid-stream: the status is sent already; the error goes as an event, as OpenAI's streams do.
    if (!res.destroyed && String(res.getHeader('content-type')).startsWith('text/event-stream')) res.write(`data: ${JSON.stringify(e.body())}\n\n`);
    res.end();
    return;
  }
  sendJson(res, e.status, e.body(), e.headers);
}

/** How long each event stream may stay blocked on a client that does not read. */
const stallLimits = new WeakMap<ServerResponse, number>();

/**
 * Starts an SSE response. A client that stops reading for `stallMs` (its
 * socket backed up all that time) is cut off, which aborts its generation and
 * frees its session: a reader that never reads cannot hold one forever.
 */
export function startEvents(res: ServerResponse, stallMs: number): void {
  stallLimits.set(res, stallMs);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    // Proxies (nginx) would otherwise buffer the stream.
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
}

/**
 * Writes one SSE event and waits while the client's socket is backed up: a
 * slow reader pauses its own generation (the library lets the other
 * sessions go on meanwhile) instead of growing the server's memory.
 */
export async function writeEvent(res: ServerResponse, data: string, event?: string): Promise<void> {
  if (res.destroyed || res.writableEnded) return;
  const ok = res.write(`${event ? `event: ${event}\n` : ''}data: ${data}\n\n`);
  if (!ok) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        res.off('drain', done);
        res.off('close', done);
        resolve();
      };
      const timer = setTimeout(() => {
        res.destroy();
        done();
      }, stallLimits.get(res) ?? 30_000);
      res.on('drain', done);
      res.on('close', done);
    });
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The request body as text: 413 beyond `limit` bytes (announced by
 * Content-Length or found while reading), 400 when it is not UTF-8.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk as Buffer);
  }
  try {
    return strictUtf8.decode(Buffer.concat(chunks));
  } catch {
    throw invalid(null, 'The request body is not valid UTF-8.', 'invalid_encoding');
  }
}

const tooLarge = (limit: number) =>
  // The rest of the body is not read: the connection closes after the answer.
  new HttpError(413, `The request body is larger than ${limit} bytes.`, null, 'request_too_large', 'invalid_request_error', { connection: 'close' });

/** The body parsed as a JSON object. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw invalid(null, `We could not parse the JSON body of your request: ${(e as Error).message}`, 'invalid_json');
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid(null, 'The request body must be a JSON object.', 'invalid_json');
  return body as Record<string, unknown>;
}
