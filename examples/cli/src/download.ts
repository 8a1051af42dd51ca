/**
 * The default model: stories15M.bin and the Llama 2 tokenizer.bin, fetched
 * once into a cache folder. A download is written to a temporary file beside
 * its destination and renamed only when every byte arrived, so an interrupted
 * download is never mistaken for a model.
 */
import { existsSync, rmSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { checkValue, url } from './args.js';

export const DEFAULT_MODEL_URL = 'https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin';
export const DEFAULT_TOKENIZER_URL = 'https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin';

const HINT = 'Pass a local model with -m model.bin -t tokenizer.bin';

/** A download that failed: its message names the file, the URL, the reason and the way out. */
export class DownloadError extends Error {
  override name = 'DownloadError';
  constructor(file: string, url: string, reason: string) {
    super(`could not download ${file} from ${url}: ${reason}. ${HINT}`);
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
export function defaultUrls(flags: { modelUrl?: string; tokenizerUrl?: string }, env: Env = process.env): { model: string; tokenizer: string } {
  const base = env.RAMA_MODEL_BASE_URL ? checkValue('RAMA_MODEL_BASE_URL', env.RAMA_MODEL_BASE_URL, url).replace(/\/+$/, '') : undefined;
  return {
    model: flags.modelUrl ?? (base ? `${base}/stories15M.bin` : DEFAULT_MODEL_URL),
    tokenizer: flags.tokenizerUrl ?? (base ? `${base}/tokenizer.bin` : DEFAULT_TOKENIZER_URL),
  };
}

/** The cache file for a URL: its last path segment. */
export function cachedName(url: string): string {
  const name = basename(decodeURIComponent(new URL(url).pathname));
  return name && name !== '/' ? name : 'download.bin';
}

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
}

/** Returns the cached copy of `url`, downloading it first when absent. */
export async function ensureCached(url: string, opts: { dir?: string; progress?: ProgressStream } = {}): Promise<string> {
  const dest = join(opts.dir ?? cacheDir(), cachedName(url));
  if (!existsSync(dest)) await download(url, dest, opts.progress);
  return dest;
}

/** Downloads `url` to `dest` through a temporary file, with progress on `progress`. */
export async function download(url: string, dest: string, progress?: ProgressStream): Promise<void> {
  const file = basename(dest);
  const fail = (reason: string) => new DownloadError(file, url, reason);

  let res: Response;
  try {
    res = await fetch(url, { headers: { 'accept-encoding': 'identity' }, redirect: 'follow' });
  } catch (e) {
    throw fail(describe(e));
  }
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => {});
    throw fail(`HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`);
  }
  const length = Number(res.headers.get('content-length'));
  const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
  const total = Number.isSafeInteger(length) && length > 0 && !encoded ? length : undefined;

  await mkdir(dirname(dest), { recursive: true });
  const tmp = `${dest}.${process.pid}.part`;
  // Ctrl-C or a kill while downloading: leave no partial file behind.
  const onSignal = (signal: NodeJS.Signals) => {
    rmSync(tmp, { force: true });
    process.kill(process.pid, signal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const bar = new ProgressBar(file, url, total, progress);
  const fh = await open(tmp, 'w');
  try {
    let received = 0;
    const reader = res.body.getReader();
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw fail(`${describe(e)} after ${formatBytes(received)}`);
      }
      if (chunk.done) break;
      await fh.write(chunk.value);
      received += chunk.value.length;
      bar.update(received);
    }
    await fh.close();
    if (total !== undefined && received !== total) {
      throw fail(`the connection closed after ${received} of ${total} bytes`);
    }
    if (received === 0) throw fail('the server sent an empty file');
    await rename(tmp, dest);
    bar.done(received);
  } catch (e) {
    bar.abandon();
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e instanceof DownloadError ? e : fail(describe(e));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
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

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * On a terminal: a bar redrawn in place at most ten times a second.
 * Elsewhere (a log, a pipe): one plain line when the download starts.
 */
class ProgressBar {
  private last = 0;
  private drawn = -1;

  constructor(
    private readonly file: string,
    url: string,
    private readonly total: number | undefined,
    private readonly out: ProgressStream | undefined,
  ) {
    if (out && !out.isTTY) {
      out.write(`rama: downloading ${file}${total ? ` (${formatBytes(total)})` : ''} from ${url}\n`);
    }
  }

  update(received: number): void {
    if (!this.out?.isTTY) return;
    const now = Date.now();
    if (now - this.last < 100 && received !== this.total) return;
    this.last = now;
    this.draw(received);
  }

  done(received: number): void {
    if (!this.out?.isTTY) return;
    if (this.drawn !== received) this.draw(received);
    this.out.write('\n');
  }

  /** Ends the line the bar was drawn on, so an error message starts on a fresh one. */
  abandon(): void {
    if (this.out?.isTTY && this.drawn >= 0) this.out.write('\n');
  }

  private draw(received: number): void {
    const width = 30;
    let line: string;
    if (this.total) {
      const f = Math.min(1, received / this.total);
      const filled = Math.round(f * width);
      line = `${this.file} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}% ${formatBytes(received)} / ${formatBytes(this.total)}`;
    } else {
      line = `${this.file} ${formatBytes(received)}`;
    }
    this.out!.write(`\r${line}\x1b[K`);
    this.drawn = received;
  }
}
