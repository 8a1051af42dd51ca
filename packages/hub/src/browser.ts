/**
 * The browser's cache: the Cache API (caches.open). It is there in every
 * browser, in pages and workers alike, and keeps a Response as it came, so a
 * cached model comes back as a Blob the browser may keep on disk rather than
 * in memory (OPFS would also do, but its writable files came to some
 * browsers late). A download is held as Blobs until it is complete and its
 * SHA-256 checked, then stored in one put(): a bad or partial file is never
 * in the cache. A broken connection is resumed within the same call
 * (Range, If-Range); one cut short by closing the page starts over.
 */
import { AbortError, ArgumentError } from '@rama/core';
import { HubError } from './errors.js';
import { authHeaders, hfFileInfo } from './hf.js';
import { hubSettings, type CachedModel, type CacheOptions, type FetchOptions } from './options.js';
import { fileLabel, modelParts, parseModelRef, resolveUrl, type ModelRef } from './ref.js';
import { Sha256 } from './sha256.js';
import { looksLikeHtml, transfer, type Sink } from './transfer.js';

const KEY_BASE = 'https://rama.invalid/';
const META = 'x-rama-meta';

interface Meta {
  name: string;
  url: string;
  size: number;
  sha256?: string;
}

function cacheKey(ref: ModelRef): string {
  if (ref.kind === 'hf') return `${KEY_BASE}hf/${ref.owner}/${ref.repo}/${encodeURIComponent(ref.revision)}/${ref.path.split('/').map(encodeURIComponent).join('/')}`;
  return `${KEY_BASE}url/${encodeURIComponent(ref.url)}`;
}

function storage(): CacheStorage {
  if (typeof caches === 'undefined') throw new ArgumentError('@rama/hub: this environment has no Cache API (caches), so models cannot be cached here');
  return caches;
}

const env = (): Record<string, string | undefined> => (typeof process !== 'undefined' && process.env ? process.env : {});

export async function fetchModel(name: string, opts: FetchOptions = {}): Promise<Blob[]> {
  const s = hubSettings(opts, env());
  const cache = await storage().open(opts.cacheDir ?? 'rama');
  const ref = parseModelRef(name);
  const blobs: Blob[] = [];
  for (const part of modelParts(ref)) {
    if (opts.signal?.aborted) throw new AbortError(`download of ${ref.name} aborted`);
    blobs.push(await fetchOne(part, cache, s, opts));
  }
  return blobs;
}

async function fetchOne(ref: ModelRef, cache: Cache, s: ReturnType<typeof hubSettings>, opts: FetchOptions): Promise<Blob> {
  const key = cacheKey(ref);
  const hit = await cache.match(key);
  if (hit) {
    const meta = JSON.parse(hit.headers.get(META) ?? 'null') as Meta | null;
    const blob = await hit.blob();
    if (meta && blob.size === meta.size) return blob;
    await cache.delete(key);
  }
  const source = ref.kind === 'hf' ? resolveUrl(ref, s.endpoint) : ref.url;
  if (s.offline) {
    throw new HubError('E_OFFLINE', { model: ref.name, url: source, reason: 'offline mode is on and it is not in the cache' },
      `${ref.name} is not in the browser's cache and offline mode is on (${s.offlineVia}); load it once online to download it`);
  }
  const info = ref.kind === 'hf'
    ? await hfFileInfo(ref, { endpoint: s.endpoint, token: s.token, fetch: s.fetch, stallMs: s.stallMs, signal: opts.signal, metadata: opts.metadata ?? 'api' })
    : { url: ref.url, size: undefined, sha256: undefined, sameOrigin: false };
  const file = fileLabel(ref);

  // Held in Blobs of up to 64 MiB, which a browser may move out of memory.
  let blobs: Blob[] = [];
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let offset = 0;
  let validator: string | undefined;
  let hash = new Sha256();
  let head = new Uint8Array(0);
  const flush = () => {
    if (pending.length) blobs.push(new Blob(pending as BlobPart[]));
    pending = [];
    pendingBytes = 0;
  };
  const discard = async () => {
    blobs = [];
    pending = [];
    pendingBytes = 0;
    offset = 0;
    validator = undefined;
    hash = new Sha256();
    head = new Uint8Array(0);
  };
  const sink: Sink = {
    resumePoint: async () => (offset > 0 && validator ? { offset, validator } : undefined),
    async begin(at, v) {
      if (at === 0) {
        await discard();
        validator = v;
      }
    },
    async write(chunk) {
      const copy = chunk.slice();
      if (head.length < 64) head = new Uint8Array([...head, ...copy.subarray(0, 64 - head.length)]);
      hash.update(copy);
      pending.push(copy);
      pendingBytes += copy.length;
      offset += copy.length;
      if (pendingBytes >= 64 << 20) flush();
    },
    end: async () => {},
    discard,
    async keepOrDiscard() {
      if (validator) return '';
      await discard();
      return '';
    },
  };
  const retries = opts.retries ?? 3;
  for (let attempt = 0; ; attempt++) {
    const before = offset;
    try {
      await transfer(info.url, sink, {
        file, model: ref.name, headers: info.sameOrigin ? authHeaders(s.token) : undefined, size: info.size,
        onProgress: opts.onProgress && ((p) => opts.onProgress!({ ...p, url: source })), stallMs: s.stallMs, stallHint: opts.stallHint, signal: opts.signal, fetch: s.fetch,
      });
      break;
    } catch (e) {
      if (e instanceof HubError && e.code === 'E_NETWORK' && offset > before && attempt < retries) continue;
      throw e;
    }
  }
  flush();
  const blob = new Blob(blobs);
  const fail = (code: 'E_SIZE' | 'E_CHECKSUM' | 'E_NOT_A_FILE', problem: string) => new HubError(code, { model: ref.name, url: info.url, reason: `what arrived is not a usable ${file}: ${problem}` });
  if (info.size !== undefined && blob.size !== info.size) throw fail('E_SIZE', `it is ${blob.size} bytes, not ${info.size}`);
  if (looksLikeHtml(head)) throw fail('E_NOT_A_FILE', 'it is an HTML page');
  if (info.sha256) {
    const got = hash.hex();
    if (got !== info.sha256) throw fail('E_CHECKSUM', `its SHA-256 is ${got}, not ${info.sha256}`);
  }
  const meta: Meta = { name: ref.name, url: source, size: blob.size, sha256: info.sha256 };
  await cache.put(key, new Response(blob, { headers: { 'content-type': 'application/octet-stream', [META]: JSON.stringify(meta) } }));
  opts.onProgress?.({ file, url: source, loaded: blob.size, total: blob.size, resumedFrom: 0, done: true });
  return blob;
}

export async function listCached(opts: CacheOptions = {}): Promise<CachedModel[]> {
  const cache = await storage().open(opts.cacheDir ?? 'rama');
  const found: CachedModel[] = [];
  for (const req of await cache.keys()) {
    const res = await cache.match(req);
    const meta = JSON.parse(res?.headers.get(META) ?? 'null') as Meta | null;
    if (meta) found.push({ name: meta.name, path: req.url, size: meta.size, sha256: meta.sha256 });
  }
  return found;
}

export async function removeCached(name: string, opts: CacheOptions = {}): Promise<string[]> {
  const cache = await storage().open(opts.cacheDir ?? 'rama');
  const removed: string[] = [];
  for (const part of modelParts(parseModelRef(name))) {
    const key = cacheKey(part);
    if (await cache.delete(key)) removed.push(key);
  }
  return removed;
}
