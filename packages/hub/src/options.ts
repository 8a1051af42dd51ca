/** Options shared by Node and the browser, and how environment variables fill them in. */
import type { Progress } from './transfer.js';

/** Where the cache is. */
export interface CacheOptions {
  /** Node: the cache folder (default $RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama). Browser: the Cache API cache's name (default "rama"). */
  cacheDir?: string;
}

/** Options of fetching a model by name. */
export interface FetchOptions extends CacheOptions {
  /** Called as bytes arrive, per file: `{ file, url, loaded, total, resumedFrom, done }`. */
  onProgress?: (p: Progress) => void;
  /** Aborting it stops the download with an AbortError (a partial file is kept, to resume). */
  signal?: AbortSignal;
  /** Use only the cache; never touch the network (default: HF_HUB_OFFLINE=1). */
  offline?: boolean;
  /** A Hugging Face token for gated and private repositories (default: $HF_TOKEN). */
  token?: string;
  /** The Hub's address (default: $HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** The fetch to use (default: globalThis.fetch). */
  fetch?: typeof fetch;
  /** Milliseconds without a byte before a download fails (default 30 000). */
  stallTimeoutMs?: number;
  /** Words after "the server sent nothing for N s" in that error, saying what sets the limit. */
  stallHint?: string;
  /** How the Hub's size and SHA-256 are read: 'redirect' (its 302's headers; Node's default) or 'api' (the tree API; the browser's). */
  metadata?: 'redirect' | 'api';
  /** How many times a broken connection is resumed within one call (default 3). */
  retries?: number;
}

/** One cached model file. */
export interface CachedModel {
  /** hf:owner/repo/path[@revision], the URL, or (a file kept directly in the cache folder) its file name. */
  name: string;
  /** Node: the file's path. Browser: the cache key. */
  path: string;
  /** Bytes. */
  size: number;
  /** The SHA-256 it was verified against, when the source published one. */
  sha256?: string;
}

/** The Hugging Face Hub. */
export const DEFAULT_ENDPOINT = 'https://huggingface.co';

type Env = Record<string, string | undefined>;

/** Options with the environment's defaults filled in. */
export function hubSettings(opts: FetchOptions, env: Env) {
  const envOffline = /^(1|true|yes|on)$/i.test(env.HF_HUB_OFFLINE ?? '');
  return {
    endpoint: (opts.endpoint ?? env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, ''),
    token: opts.token ?? (env.HF_TOKEN || undefined),
    offline: opts.offline ?? envOffline,
    offlineVia: opts.offline !== undefined ? 'the offline option' : 'HF_HUB_OFFLINE',
    fetch: opts.fetch ?? globalThis.fetch.bind(globalThis),
    stallMs: opts.stallTimeoutMs ?? 30_000,
  };
}
