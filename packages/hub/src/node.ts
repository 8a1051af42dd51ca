/**
 * @rama/hub/node: the cache on disk. Files live under the cache folder
 * ($RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama):
 *   hf/<owner>/<repo>/<revision>/<path>     a Hub file
 *   url/<host>/<hash>/<name>                a file by URL
 * each with `<file>.rama.json` (its name, source, size, SHA-256) written once
 * it is complete and verified. A download goes to `<file>.part` (with
 * `<file>.part.json`: how to resume it) and gets its name only then.
 * node:* modules are imported on demand, so a browser bundle that reaches
 * this file still loads.
 */
import { AbortError, ArgumentError } from '@rama/core';
import { HubError, type HubErrorCode } from './errors.js';
import { hfFileInfo, authHeaders } from './hf.js';
import { fileLabel, modelParts, parseModelRef, resolveUrl, type ModelRef } from './ref.js';
import { looksLikeHtml, transfer, type Progress, type ResumePoint, type Sink } from './transfer.js';
import { hubSettings, type CachedModel, type FetchOptions, type CacheOptions } from './options.js';

type Env = Record<string, string | undefined>;

const nodeModules = async () => ({
  fsp: await import('node:fs/promises'),
  fs: await import('node:fs'),
  path: await import('node:path'),
  crypto: await import('node:crypto'),
});
let loaded: ReturnType<typeof nodeModules> | undefined;
const node = () => (loaded ??= nodeModules());

/** $RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama. */
export function cacheDir(env: Env = process.env): string {
  if (env.RAMA_CACHE) return env.RAMA_CACHE;
  // Synchronous, without a static node: import (process.getBuiltinModule: Node >= 20.16; else plain joins).
  const builtin = typeof process.getBuiltinModule === 'function' ? process.getBuiltinModule : undefined;
  const join = builtin ? builtin('node:path').join : (...parts: string[]) => parts.join('/');
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, 'rama');
  const home = builtin ? builtin('node:os').homedir() : (process.env.HOME ?? process.env.USERPROFILE ?? '.');
  return join(home, '.cache', 'rama');
}

/**
 * A file name for a URL: the last segment of its decoded path, made safe as
 * one name inside a folder. Decoding comes first and both separators split,
 * so "..%2f" and "..%5c" cannot climb out; leading dots go (no "..", no
 * hidden files), control characters and those Windows refuses become "_",
 * and what is left empty becomes "download.bin".
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
  while (new TextEncoder().encode(name).length > 200) name = Array.from(name).slice(0, -1).join('');
  return name || 'download.bin';
}

/** Where a model file is cached. */
export async function cachePath(ref: ModelRef, dir: string): Promise<string> {
  const { path, crypto } = await node();
  if (ref.kind === 'hf') return path.join(dir, 'hf', ref.owner, ref.repo, encodeURIComponent(ref.revision), ...ref.path.split('/'));
  const url = new URL(ref.url);
  const host = url.host.replace(/[^A-Za-z0-9.-]/g, '_');
  const hash = crypto.createHash('sha256').update(url.href).digest('hex').slice(0, 12);
  return path.join(dir, 'url', host, hash, cachedName(url.href));
}

export async function sha256File(file: string): Promise<string> {
  const { fs, crypto } = await node();
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Uint8Array);
  return hash.digest('hex');
}

/** What a file must be: its size and SHA-256 when known, and a caller's own check of its first bytes. */
export interface Expected {
  size?: number;
  /** Lower-case hex. */
  sha256?: string;
  /** What is wrong with a file starting with `head` (its first 64 bytes), in words, or undefined. */
  check?: (head: Uint8Array) => string | undefined;
}

/**
 * What is wrong with the file at `file`, or undefined when it passes every
 * check that applies. The cheap checks come first; the SHA-256 reads it all.
 */
export async function fileProblem(file: string, expected: Expected): Promise<{ code: HubErrorCode; problem: string } | undefined> {
  const { fsp } = await node();
  const size = (await fsp.stat(file)).size;
  if (expected.size !== undefined && size !== expected.size) return { code: 'E_SIZE', problem: `it is ${size} bytes, not ${expected.size}` };
  const fh = await fsp.open(file, 'r');
  let head: Uint8Array;
  try {
    const buf = new Uint8Array(64);
    const { bytesRead } = await fh.read(buf, 0, 64, 0);
    head = buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
  if (looksLikeHtml(head)) return { code: 'E_NOT_A_FILE', problem: 'it is an HTML page' };
  const own = expected.check?.(head);
  if (own) return { code: 'E_NOT_A_FILE', problem: own };
  if (expected.sha256) {
    const sha256 = await sha256File(file);
    if (sha256 !== expected.sha256) return { code: 'E_CHECKSUM', problem: `its SHA-256 is ${sha256}, not ${expected.sha256}` };
  }
  return undefined;
}

export interface DownloadFileOptions extends Expected {
  /** The file's name in messages and progress (default: the destination's file name). */
  file?: string;
  /** The model's name in errors (default: file). */
  model?: string;
  headers?: Record<string, string>;
  onProgress?: (p: Progress) => void;
  /** Milliseconds without a byte before the download fails (default 30 s). */
  stallTimeoutMs?: number;
  /** Words after "the server sent nothing for N s" saying what sets the limit. */
  stallHint?: string;
  signal?: AbortSignal;
  fetch?: typeof fetch;
  /** What a partial file must have come from to be resumed (default: the URL; a signed CDN URL changes, the file it stands for does not). */
  resumeKey?: string;
  /** How many times a broken connection is resumed within this call (default 0: the partial file waits for the next call). */
  retries?: number;
}

/** What is stored beside `<file>.part`: enough to resume it safely. */
interface PartInfo {
  url: string;
  /** The validator sent as If-Range: a strong ETag, else Last-Modified. */
  validator?: string;
}

/**
 * Downloads `url` to `dest` through `<dest>.part`, resuming a partial file
 * left by an earlier attempt when the server still has the same file, and
 * verifies it (size, not HTML, `check`, SHA-256) before it gets its name:
 * a file that fails is removed, never kept.
 */
export async function downloadFile(url: string, dest: string, opts: DownloadFileOptions = {}): Promise<{ size: number }> {
  const { fsp, path } = await node();
  const file = opts.file ?? path.basename(dest);
  const model = opts.model ?? file;
  const key = opts.resumeKey ?? url;
  const part = `${dest}.part`;
  const info = `${part}.json`;
  await fsp.mkdir(path.dirname(dest), { recursive: true });

  let handle: Awaited<ReturnType<typeof fsp.open>> | undefined;
  const discard = async () => {
    await closeHandle();
    await Promise.all([fsp.rm(part, { force: true }), fsp.rm(info, { force: true })]);
  };
  const closeHandle = async () => {
    const h = handle;
    handle = undefined;
    await h?.close();
  };
  const resumePoint = async (): Promise<ResumePoint | undefined> => {
    try {
      const saved = JSON.parse(await fsp.readFile(info, 'utf8')) as PartInfo;
      const { size } = await fsp.stat(part);
      if (saved.url === key && typeof saved.validator === 'string' && size > 0) return { offset: size, validator: saved.validator };
    } catch {
      // No partial file, or no usable record of it: start over.
    }
    return undefined;
  };
  const sink: Sink = {
    resumePoint,
    async begin(offset, validator) {
      if (offset === 0) await fsp.writeFile(info, JSON.stringify({ url: key, validator } satisfies PartInfo));
      handle = await fsp.open(part, offset > 0 ? 'a' : 'w');
    },
    async write(chunk) {
      await handle!.write(chunk);
    },
    end: closeHandle,
    discard,
    async keepOrDiscard() {
      if (await resumePoint()) return `; the partial file ${part} is kept, and the next run resumes it`;
      await discard();
      return '';
    },
  };

  const stallMs = opts.stallTimeoutMs ?? 30_000;
  for (let attempt = 0; ; attempt++) {
    const before = (await resumePoint())?.offset ?? 0;
    try {
      const size = await transfer(url, sink, {
        file, model, headers: opts.headers, size: opts.size, onProgress: opts.onProgress, stallMs, stallHint: opts.stallHint, signal: opts.signal, fetch: opts.fetch,
      });
      const bad = await fileProblem(part, opts);
      if (bad) {
        await discard();
        throw new HubError(bad.code, { model, url, reason: `what arrived is not a usable ${file}: ${bad.problem}` });
      }
      await fsp.rename(part, dest);
      await fsp.rm(info, { force: true });
      opts.onProgress?.({ file, url, loaded: size, total: size, resumedFrom: 0, done: true });
      return { size };
    } catch (e) {
      // A broken connection that moved the partial file forward is resumed at once, a few times.
      const grew = ((await resumePoint())?.offset ?? 0) > before;
      if (e instanceof HubError && e.code === 'E_NETWORK' && grew && attempt < (opts.retries ?? 0)) continue;
      throw e;
    }
  }
}

/** What `<file>.rama.json` holds. */
interface Meta {
  name: string;
  url: string;
  size: number;
  sha256?: string;
}

const META = '.rama.json';

async function readMeta(dest: string): Promise<Meta | undefined> {
  const { fsp } = await node();
  try {
    const meta = JSON.parse(await fsp.readFile(dest + META, 'utf8')) as Meta;
    if ((await fsp.stat(dest)).size === meta.size) return meta;
  } catch {
    // Not cached, or not completely.
  }
  return undefined;
}

/** Node's fetchModel: the cached paths, downloading what is missing. */
export async function fetchModel(name: string, opts: FetchOptions = {}): Promise<string[]> {
  const s = hubSettings(opts, process.env);
  const dir = opts.cacheDir ?? cacheDir();
  const ref = parseModelRef(name);
  const paths: string[] = [];
  for (const part of modelParts(ref)) {
    if (opts.signal?.aborted) throw new AbortError(`download of ${ref.name} aborted`);
    paths.push(await fetchOne(part, dir, s, opts));
  }
  return paths;
}

async function fetchOne(ref: ModelRef, dir: string, s: ReturnType<typeof hubSettings>, opts: FetchOptions): Promise<string> {
  const { fsp } = await node();
  const dest = await cachePath(ref, dir);
  if (await readMeta(dest)) return dest;
  const source = ref.kind === 'hf' ? resolveUrl(ref, s.endpoint) : ref.url;
  if (s.offline) {
    throw new HubError('E_OFFLINE', { model: ref.name, url: source, reason: 'offline mode is on and it is not in the cache' },
      `${ref.name} is not in the cache (${dest}) and offline mode is on (${s.offlineVia}); run once online to download it`);
  }
  const ctx = { endpoint: s.endpoint, token: s.token, fetch: s.fetch, stallMs: s.stallMs, signal: opts.signal, metadata: opts.metadata ?? 'redirect' } as const;
  const meta = ref.kind === 'hf' ? await hfFileInfo(ref, ctx) : { url: ref.url, size: undefined, sha256: undefined, sameOrigin: false };
  const { size } = await downloadFile(meta.url, dest, {
    file: fileLabel(ref),
    model: ref.name,
    headers: meta.sameOrigin ? authHeaders(s.token) : undefined,
    size: meta.size,
    sha256: meta.sha256,
    // Progress names the address the user recognises (the resolve URL), not the CDN's.
    onProgress: opts.onProgress && ((p) => opts.onProgress!({ ...p, url: source })),
    stallTimeoutMs: s.stallMs,
    stallHint: opts.stallHint,
    signal: opts.signal,
    fetch: s.fetch,
    resumeKey: `${ref.name}#${meta.sha256 ?? meta.size ?? ''}`,
    retries: opts.retries ?? 3,
  });
  await fsp.writeFile(dest + META, JSON.stringify({ name: ref.name, url: source, size, sha256: meta.sha256 } satisfies Meta));
  return dest;
}

/** Every model file in the cache: Hub and URL files, and single files kept directly in the cache folder. */
export async function listCached(opts: CacheOptions = {}): Promise<CachedModel[]> {
  const { fsp, path } = await node();
  const dir = opts.cacheDir ?? cacheDir();
  const found: CachedModel[] = [];
  for (const sub of ['hf', 'url']) {
    let names: string[];
    try {
      names = await fsp.readdir(path.join(dir, sub), { recursive: true, encoding: 'utf8' });
    } catch {
      continue;
    }
    for (const rel of names.filter((n) => n.endsWith(META)).sort()) {
      const file = path.join(dir, sub, rel.slice(0, -META.length));
      const meta = await readMeta(file);
      if (meta) found.push({ name: meta.name, path: file, size: meta.size, sha256: meta.sha256 });
    }
  }
  try {
    for (const entry of (await fsp.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      if (!entry.isFile() || entry.name.startsWith('.') || /\.part(\.json)?$/.test(entry.name)) continue;
      const file = path.join(dir, entry.name);
      found.push({ name: entry.name, path: file, size: (await fsp.stat(file)).size });
    }
  } catch {
    // No cache folder yet.
  }
  return found;
}

/**
 * Removes a model from the cache: every part of an hf: name or URL (with
 * partial downloads), or a file kept directly in the cache folder by its
 * file name. Resolves to the model files removed (none: it was not cached).
 */
export async function removeCached(name: string, opts: CacheOptions = {}): Promise<string[]> {
  const { fsp, fs, path } = await node();
  const dir = opts.cacheDir ?? cacheDir();
  let files: string[];
  if (/^hf:/i.test(name) || /^https?:\/\//i.test(name)) {
    files = await Promise.all(modelParts(parseModelRef(name)).map((r) => cachePath(r, dir)));
  } else {
    if (name === '' || /[/\\]/.test(name) || name.startsWith('.')) throw new ArgumentError(`removeCached: ${JSON.stringify(name)} is not a model name (hf:owner/repo/file, a URL, or a file name in the cache folder)`);
    files = [path.join(dir, name)];
  }
  const removed: string[] = [];
  for (const file of files) {
    if (fs.existsSync(file)) removed.push(file);
    for (const f of [file, file + META, `${file}.part`, `${file}.part.json`]) await fsp.rm(f, { force: true });
  }
  return removed;
}
