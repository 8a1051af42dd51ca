/**
 * One file over HTTP into a Sink (a file in Node, memory in a browser), with
 * resume: a partial copy continues with `Range: bytes=N-` guarded by
 * `If-Range` (the server's strong ETag, else Last-Modified), so bytes of two
 * different versions are never joined. A server that falls silent fails
 * after a stall timeout instead of hanging. Browser-safe.
 */
import { AbortError } from '@rama/core';
import { HubError } from './errors.js';

export interface ResumePoint {
  offset: number;
  validator: string;
}

/** Where the bytes go. */
export interface Sink {
  /** Bytes kept from an earlier attempt that may be resumed, with their validator. */
  resumePoint(): Promise<ResumePoint | undefined>;
  /** Starts writing at `offset` (0: from scratch, remembering `validator` for a later resume). */
  begin(offset: number, validator: string | undefined): Promise<void>;
  write(chunk: Uint8Array): Promise<void>;
  /** Ends the current attempt (closes what begin opened); called after success and failure. */
  end(): Promise<void>;
  /** Forgets what arrived. */
  discard(): Promise<void>;
  /** After a broken transfer: words saying the partial copy is kept (e.g. "; the partial file X is kept"), or '' when it is discarded. */
  keepOrDiscard(): Promise<string>;
}

/** A download's progress, as `onProgress` receives it. */
export interface Progress {
  /** The file: its path in the repository, or its file name. */
  file: string;
  /** The address it comes from. */
  url: string;
  /** Bytes there so far (a resumed download starts above 0). */
  loaded: number;
  /** Its size, when known. */
  total: number | undefined;
  /** Bytes already there when this transfer started (> 0 for a resumed one). */
  resumedFrom: number;
  /** True on the last event of a completed file. */
  done: boolean;
}

export interface TransferOptions {
  /** The file's name in messages and progress. */
  file: string;
  /** The model's name in errors (default: file). */
  model?: string;
  headers?: Record<string, string>;
  /** The size the file must have, when known. */
  size?: number;
  onProgress?: (p: Progress) => void;
  /** Milliseconds without a byte before the transfer fails. */
  stallMs: number;
  /** Words after "the server sent nothing for N s" saying what sets the limit. */
  stallHint?: string;
  signal?: AbortSignal;
  fetch?: typeof fetch;
}

/** Downloads `url` into `sink`; resolves to the byte count. What arrived is left in the sink for the caller to verify. */
export async function transfer(url: string, sink: Sink, opts: TransferOptions): Promise<number> {
  const { file } = opts;
  const model = opts.model ?? file;
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const fail = (code: ConstructorParameters<typeof HubError>[0], reason: string, cause?: unknown) => new HubError(code, { model, url, reason, cause });
  const stalled = () => `the server sent nothing for ${opts.stallMs / 1000} s${opts.stallHint ? ` (${opts.stallHint})` : ''}`;

  // At most two requests: a resume, then (if the server cannot resume) the whole file.
  for (let resume = await sink.resumePoint(); ; resume = undefined) {
    const stall = new StallTimer(opts.stallMs, opts.signal);
    try {
      const headers: Record<string, string> = { 'accept-encoding': 'identity', ...opts.headers };
      if (resume) Object.assign(headers, { range: `bytes=${resume.offset}-`, 'if-range': resume.validator });
      let res: Response;
      try {
        res = await fetchFn(url, { headers, redirect: 'follow', signal: stall.signal });
      } catch (e) {
        if (stall.aborted) throw new AbortError(`download of ${model} aborted`);
        throw stall.fired ? fail('E_STALLED', stalled(), e) : fail('E_NETWORK', describeError(e), e);
      }
      // 416: the partial copy is no prefix of what the server has now.
      if (resume && res.status === 416) {
        await cancel(res);
        await sink.discard();
        continue;
      }
      if (!res.ok || !res.body) {
        await cancel(res);
        const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
        if (res.status === 401 || res.status === 403) throw fail('E_UNAUTHORIZED', `${status}: the server refuses access`);
        if (res.status === 404) throw fail('E_FILE_NOT_FOUND', status);
        throw fail('E_HTTP', status);
      }
      const type = res.headers.get('content-type') ?? '';
      if (/^\s*text\/html\b/i.test(type)) {
        await cancel(res);
        throw fail('E_NOT_A_FILE', `the server sent an HTML page (Content-Type ${type}), not the file; check the address`);
      }
      // A compressed body's Content-Length counts compressed bytes, and its ranges cannot be resumed.
      const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
      const length = encoded ? undefined : byteCount(res.headers.get('content-length'));
      let offset = 0;
      let total = length;
      let validator: string | undefined;
      if (res.status === 206) {
        const range = parseContentRange(res.headers.get('content-range'));
        if (!resume || !range || range.start !== resume.offset) {
          await cancel(res);
          if (!resume) throw fail('E_HTTP', 'the server sent part of the file (HTTP 206) when asked for all of it');
          await sink.discard();
          continue;
        }
        offset = resume.offset;
        total = range.total ?? (length === undefined ? undefined : offset + length);
      } else {
        // A fresh start (also when If-Range found the file changed): remember how to resume it.
        const etag = res.headers.get('etag');
        validator = encoded ? undefined : etag && !etag.startsWith('W/') ? etag : (res.headers.get('last-modified') ?? undefined);
      }
      if (opts.size !== undefined && total !== undefined && total !== opts.size) {
        await cancel(res);
        await sink.discard();
        throw fail('E_SIZE', `the server announces ${total} bytes, but ${file} has ${opts.size}`);
      }

      const report = (loaded: number, done: boolean) => opts.onProgress?.({ file, url, loaded, total, resumedFrom: offset, done });
      let received = offset;
      await sink.begin(offset, validator);
      report(received, false);
      try {
        const reader = res.body.getReader();
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (e) {
            await sink.end();
            if (stall.aborted) throw new AbortError(`download of ${model} aborted`);
            const what = stall.fired ? stalled() : `the connection broke (${describeError(e)})`;
            throw fail(stall.fired ? 'E_STALLED' : 'E_NETWORK', `${what} after ${progressOf(received, total)}${await sink.keepOrDiscard()}`, e);
          }
          if (chunk.done) break;
          stall.restart();
          await sink.write(chunk.value);
          received += chunk.value.length;
          report(received, false);
        }
      } finally {
        await sink.end();
      }
      if (total !== undefined && received < total) {
        throw fail('E_NETWORK', `the connection closed after ${progressOf(received, total)}${await sink.keepOrDiscard()}`);
      }
      if (total !== undefined && received > total) {
        await sink.discard();
        throw fail('E_SIZE', `the server sent ${received} bytes after announcing ${total}`);
      }
      if (received === 0) {
        await sink.discard();
        throw fail('E_SIZE', 'the server sent an empty file');
      }
      return received;
    } finally {
      stall.stop();
    }
  }
}

async function cancel(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

/** "476562 of 932124 bytes", or "476562 bytes" when the total is unknown. */
function progressOf(received: number, total: number | undefined): string {
  return total === undefined ? `${received} bytes` : `${received} of ${total} bytes`;
}

export function byteCount(header: string | null): number | undefined {
  return header !== null && /^\d+$/.test(header.trim()) ? Number(header) : undefined;
}

/** "bytes 100-199/200" -> { start: 100, total: 200 } ("*" as the total: undefined). */
function parseContentRange(header: string | null): { start: number; total?: number } | undefined {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(header ?? '');
  return m ? { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) } : undefined;
}

/** Aborts a fetch when no byte has come for `ms` milliseconds, or when the caller's signal aborts. */
export class StallTimer {
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timedOut = false;
  private readonly onAbort = () => this.controller.abort();
  readonly signal = this.controller.signal;

  constructor(
    private readonly ms: number,
    private readonly outer?: AbortSignal,
  ) {
    if (outer?.aborted) this.controller.abort();
    outer?.addEventListener('abort', this.onAbort);
    this.restart();
  }

  /** The stall timeout fired. */
  get fired(): boolean {
    return this.timedOut;
  }

  /** The caller aborted. */
  get aborted(): boolean {
    return !!this.outer?.aborted;
  }

  restart(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.ms);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.outer?.removeEventListener('abort', this.onAbort);
  }
}

/** fetch's errors hide the reason in `cause` ("fetch failed" / "connect ECONNREFUSED ..."). */
export function describeError(e: unknown): string {
  const err = e as { message?: string; cause?: { message?: string; code?: string } };
  const cause = err?.cause;
  if (cause?.message) return cause.message;
  if (cause?.code) return cause.code;
  return err?.message ?? String(e);
}

/** An HTML page (an error, login or "file moved" page) served where a file was expected. */
export function looksLikeHtml(head: Uint8Array): boolean {
  let text = '';
  for (const b of head.subarray(0, 64)) text += String.fromCharCode(b);
  text = text.replace(/^\xef\xbb\xbf/, '').trimStart().toLowerCase();
  return /^<(!doctype html|html|head|body|!--)/.test(text);
}
