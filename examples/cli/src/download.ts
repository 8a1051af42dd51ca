/**
 * The downloaded model (`-m stories15M`): stories15M.bin and the Llama 2 tokenizer.bin, fetched
 * once into a cache folder. A download goes to `<name>.part` and becomes
 * `<name>` only once it is complete and verified (see verify.ts), so an HTML
 * page or half a file is never taken for a model. An interrupted download is
 * resumed with a Range request guarded by the server's ETag, and a server
 * that stops sending fails after a timeout instead of hanging.
 */
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { checkValue, number, url as httpUrl } from './args.js';
import { ProgressBar, type ProgressStream } from './progress.js';
import { findProblem, knownFile, type FileKind, type KnownFile } from './verify.js';

export type { ProgressStream } from './progress.js';

export const DEFAULT_MODEL_URL = 'https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin';
export const DEFAULT_TOKENIZER_URL = 'https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin';
/** Seconds without a byte from the server before a download fails; RAMA_DOWNLOAD_TIMEOUT overrides. */
export const DEFAULT_STALL_SECONDS = 30;

const HINT = 'Pass a local model with -m model.bin -t tokenizer.bin';

/** A file to download: its address, which flag or variable gave it (for messages), and what it must be. */
export interface DownloadSource {
  url: string;
  /** Where the address came from, in words: "from --model-url". */
  via?: string;
  kind?: FileKind;
}

/** A download that failed: its message names the file, the URL and where it came from, the reason and the way out. */
export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(file: string, source: DownloadSource, reason: string) {
    super(`could not download ${file} from ${source.url}${source.via ? ` (${source.via})` : ''}: ${reason}. ${HINT}`);
  }
}

type Env = Record<string, string | undefined>;

/** $RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama. */
export function cacheDir(env: Env = process.env): string {
  if (env.RAMA_CACHE) return env.RAMA_CACHE;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'rama');
  return join(homedir(), '.cache', 'rama');
}

/**
 * Where the default files come from: the flags, else $RAMA_MODEL_BASE_URL/<name>,
 * else the public addresses. A bad RAMA_MODEL_BASE_URL is a UsageError naming it.
 */
export function defaultSources(flags: { modelUrl?: string; tokenizerUrl?: string }, env: Env = process.env): Record<FileKind, DownloadSource> {
  const raw = env.RAMA_MODEL_BASE_URL;
  const base = raw ? checkValue('RAMA_MODEL_BASE_URL', raw, httpUrl).replace(/\/+$/, '') : undefined;
  const source = (kind: FileKind, flag: string, given: string | undefined, name: string, publicUrl: string): DownloadSource => {
    if (given) return { url: given, via: `from ${flag}`, kind };
    if (base) return { url: `${base}/${name}`, via: 'from RAMA_MODEL_BASE_URL', kind };
    return { url: publicUrl, via: `the default address; ${flag} or RAMA_MODEL_BASE_URL sets another`, kind };
  };
  return {
    model: source('model', '--model-url', flags.modelUrl, 'stories15M.bin', DEFAULT_MODEL_URL),
    tokenizer: source('tokenizer', '--tokenizer-url', flags.tokenizerUrl, 'tokenizer.bin', DEFAULT_TOKENIZER_URL),
  };
}

/** The stall timeout in milliseconds: RAMA_DOWNLOAD_TIMEOUT seconds, else 30 s. */
export function stallTimeoutMs(env: Env = process.env): number {
  const raw = env.RAMA_DOWNLOAD_TIMEOUT;
  return 1000 * (raw ? checkValue('RAMA_DOWNLOAD_TIMEOUT', raw, number({ above: 0 })) : DEFAULT_STALL_SECONDS);
}

/**
 * The cache file for a URL: the last segment of its decoded path, made safe
 * as one file name inside the cache folder. Decoding comes first and both
 * separators split, so "..%2f" and "..%5c" cannot climb out; leading dots go
 * (no "..", no hidden files), control characters and those Windows refuses
 * become "_", and what is left empty becomes "download.bin".
 */
export function cachedName(url: string): string {
  const path = new URL(url).pathname;
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // A malformed %-escape: name the file after the raw segment.
  }
  let name = (decoded.split(/[/\\]/).filter(Boolean).pop() ?? '')
    .replace(/[\x00-\x1f\x7f<>:"|?*]/g, '_')
    .replace(/^[.\s]+|[.\s]+$/g, '');
  // File systems take 255 bytes per name; leave room for ".part.json".
  while (Buffer.byteLength(name) > 200) name = Array.from(name).slice(0, -1).join('');
  return name || 'download.bin';
}

export interface CacheOptions {
  dir?: string;
  /** Where download progress and "downloading it again" notes go (rama: stderr). */
  progress?: ProgressStream;
  /** Files whose size and SHA-256 are known, by cache name (default: KNOWN_FILES). */
  known?: readonly KnownFile[];
  /** Milliseconds without a byte before a download fails (default: stallTimeoutMs()). */
  stallMs?: number;
}

/**
 * Returns the cached copy of a file, downloading it first when it is absent,
 * or when the cached copy fails verification (reported on `progress`, with
 * its path, before it is replaced).
 */
export async function ensureCached(source: DownloadSource | string, opts: CacheOptions = {}): Promise<string> {
  const src = typeof source === 'string' ? { url: source } : source;
  const dest = join(opts.dir ?? cacheDir(), cachedName(src.url));
  const expected = knownFile(basename(dest), opts.known);
  if (existsSync(dest)) {
    const problem = await findProblem(dest, { known: expected, kind: src.kind });
    if (!problem) return dest;
    opts.progress?.write(`rama: the cached file ${dest} is damaged (${problem}); downloading it again\n`);
    await rm(dest, { force: true });
  }
  await download(src, dest, { progress: opts.progress, expected, stallMs: opts.stallMs });
  return dest;
}

export interface DownloadOptions {
  progress?: ProgressStream;
  /** The file's known size and SHA-256, checked before it gets its name. */
  expected?: KnownFile;
  stallMs?: number;
}

/** What is stored beside `<name>.part`: enough to resume it safely. */
interface PartInfo {
  url: string;
  /** The validator sent as If-Range: a strong ETag, else Last-Modified. */
  validator?: string;
}

/**
 * Downloads to `dest` through `<dest>.part`, resuming a partial file left by
 * an earlier attempt when the server still has the same file.
 */
export async function download(source: DownloadSource | string, dest: string, opts: DownloadOptions = {}): Promise<void> {
  const src = typeof source === 'string' ? { url: source } : source;
  const file = basename(dest);
  const part = `${dest}.part`;
  const info = `${part}.json`;
  const fail = (reason: string) => new DownloadError(file, src, reason);
  const discard = () => Promise.all([rm(part, { force: true }), rm(info, { force: true })]);
  // After a broken transfer: keep what arrived when a later run can resume it, else remove it.
  const keepOrDiscard = async (): Promise<string> => {
    if (await resumePoint(part, info, src.url)) return `; the partial file ${part} is kept, and the next run resumes it`;
    await discard();
    return '';
  };
  const stallMs = opts.stallMs ?? stallTimeoutMs();
  await mkdir(dirname(dest), { recursive: true });

  // At most two requests: a resume, then (if the server cannot resume) the whole file.
  for (let resume = await resumePoint(part, info, src.url); ; resume = undefined) {
    const stall = new StallTimer(stallMs);
    const stalled = () => `the server sent nothing for ${stallMs / 1000} s (RAMA_DOWNLOAD_TIMEOUT sets this limit)`;
    try {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (resume) Object.assign(headers, { range: `bytes=${resume.offset}-`, 'if-range': resume.validator });
      let res: Response;
      try {
        res = await fetch(src.url, { headers, redirect: 'follow', signal: stall.signal });
      } catch (e) {
        throw fail(stall.fired ? stalled() : describe(e));
      }
      // 416: the partial file is no prefix of what the server has now.
      if (resume && res.status === 416) {
        await res.body?.cancel().catch(() => {});
        await discard();
        continue;
      }
      if (!res.ok || !res.body) {
        await res.body?.cancel().catch(() => {});
        throw fail(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
      }
      const type = res.headers.get('content-type') ?? '';
      if (/^\s*text\/html\b/i.test(type)) {
        await res.body.cancel().catch(() => {});
        throw fail(`the server sent an HTML page (Content-Type ${type}), not the file; check the address`);
      }
      // A compressed body's Content-Length counts compressed bytes, and its ranges cannot be resumed.
      const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
      const length = encoded ? undefined : byteCount(res.headers.get('content-length'));
      let offset = 0;
      let total = length;
      if (res.status === 206) {
        const range = parseContentRange(res.headers.get('content-range'));
        if (!resume || !range || range.start !== resume.offset) {
          await res.body.cancel().catch(() => {});
          if (!resume) throw fail('the server sent part of the file (HTTP 206) when asked for all of it');
          await discard();
          continue;
        }
        offset = resume.offset;
        total = range.total ?? (length === undefined ? undefined : offset + length);
      } else {
        // A fresh start (also when If-Range found the file changed): remember how to resume it.
        const etag = res.headers.get('etag');
        const validator = encoded ? undefined : etag && !etag.startsWith('W/') ? etag : (res.headers.get('last-modified') ?? undefined);
        await writeFile(info, JSON.stringify({ url: src.url, validator } satisfies PartInfo));
      }
      if (opts.expected && total !== undefined && total !== opts.expected.size) {
        await res.body.cancel().catch(() => {});
        await discard();
        throw fail(`the server announces ${total} bytes, but ${file} has ${opts.expected.size}`);
      }

      const bar = new ProgressBar(file, src.url, total, opts.progress, offset);
      let received = offset;
      const fh = await open(part, offset > 0 ? 'a' : 'w');
      try {
        const reader = res.body.getReader();
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (e) {
            throw fail(`${stall.fired ? stalled() : `the connection broke (${describe(e)})`} after ${progressOf(received, total)}${await keepOrDiscard()}`);
          }
          if (chunk.done) break;
          stall.restart();
          await fh.write(chunk.value);
          received += chunk.value.length;
          bar.update(received);
        }
      } catch (e) {
        bar.abandon();
        throw e;
      } finally {
        await fh.close();
      }
      if (total !== undefined && received < total) {
        bar.abandon();
        throw fail(`the connection closed after ${progressOf(received, total)}${await keepOrDiscard()}`);
      }
      const problem =
        total !== undefined && received > total
          ? `the server sent ${received} bytes after announcing ${total}`
          : received === 0
            ? 'the server sent an empty file'
            : await findProblem(part, { known: opts.expected, kind: src.kind });
      if (problem) {
        bar.abandon();
        await discard();
        throw fail(`what arrived is not a usable ${file}: ${problem}`);
      }
      await rename(part, dest);
      await rm(info, { force: true });
      bar.done(received);
      return;
    } finally {
      stall.stop();
    }
  }
}

/** Where a partial file can resume: it exists, came from the same URL, and the server gave a validator for If-Range. */
async function resumePoint(part: string, info: string, url: string): Promise<{ offset: number; validator: string } | undefined> {
  try {
    const saved = JSON.parse(await readFile(info, 'utf8')) as PartInfo;
    const { size } = await stat(part);
    if (saved.url === url && typeof saved.validator === 'string' && size > 0) return { offset: size, validator: saved.validator };
  } catch {
    // No partial file, or no usable record of it: start over.
  }
  return undefined;
}

/** "476562 of 932124 bytes", or "476562 bytes" when the total is unknown. */
function progressOf(received: number, total: number | undefined): string {
  return total === undefined ? `${received} bytes` : `${received} of ${total} bytes`;
}

function byteCount(header: string | null): number | undefined {
  return header !== null && /^\d+$/.test(header.trim()) ? Number(header) : undefined;
}

/** "bytes 100-199/200" -> { start: 100, total: 200 } ("*" as the total: undefined). */
function parseContentRange(header: string | null): { start: number; total?: number } | undefined {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(header ?? '');
  return m ? { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) } : undefined;
}

/** Aborts a fetch when no byte has come for `ms` milliseconds. */
class StallTimer {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  readonly signal = this.controller.signal;

  constructor(private readonly ms: number) {
    this.restart();
  }

  get fired(): boolean {
    return this.signal.aborted;
  }

  restart(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.controller.abort(), this.ms);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/** fetch's errors hide the reason in `cause` ("fetch failed" / "connect ECONNREFUSED ..."). */
function describe(e: unknown): string {
  const err = e as { message?: string; cause?: { message?: string; code?: string } };
  const cause = err?.cause;
  if (cause?.message) return cause.message;
  if (cause?.code) return cause.code;
  return err?.message ?? String(e);
}
