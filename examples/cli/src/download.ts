/**
 * The downloaded model (`-m stories15M`): stories15M.bin and the Llama 2
 * tokenizer.bin, fetched once into the cache folder, and the messages and
 * settings (flags, RAMA_* variables) around it. The download itself (the
 * `.part` file, resume with Range and If-Range, the stall timeout, the
 * checks before a file gets its name) is @rama/hub's, which also serves
 * `-m hf:...` and URLs.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { HubError } from '@rama/hub';
import { cacheDir, cachedName, downloadFile } from '@rama/hub/node';
import { checkValue, number, url as httpUrl } from './args.js';
import { progressReporter, type ProgressStream } from './progress.js';
import { findProblem, headCheck, knownFile, type FileKind, type KnownFile } from './verify.js';

export { cacheDir, cachedName };

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

/**
 * Downloads to `dest` through `<dest>.part`, resuming a partial file left by
 * an earlier attempt when the server still has the same file. A failure is a
 * DownloadError saying why and how to pass a local model instead.
 */
export async function download(source: DownloadSource | string, dest: string, opts: DownloadOptions = {}): Promise<void> {
  const src = typeof source === 'string' ? { url: source } : source;
  const progress = progressReporter(opts.progress);
  try {
    await downloadFile(src.url, dest, {
      size: opts.expected?.size,
      sha256: opts.expected?.sha256,
      check: headCheck(src.kind),
      onProgress: progress.onProgress,
      stallTimeoutMs: opts.stallMs ?? stallTimeoutMs(),
      stallHint: 'RAMA_DOWNLOAD_TIMEOUT sets this limit',
    });
  } catch (e) {
    progress.abandon();
    if (e instanceof HubError) throw new DownloadError(basename(dest), src, e.reason);
    throw e;
  }
}
