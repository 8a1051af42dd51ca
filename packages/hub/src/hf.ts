/**
 * What the Hub says about a file before it is downloaded: where the bytes
 * are, their size and their SHA-256. Two ways, both read here:
 * - the resolve URL asked with `redirect: 'manual'` (Node): an LFS file
 *   answers 302 to its CDN address with `X-Linked-Etag` (the quoted SHA-256)
 *   and `X-Linked-Size`; a small (non-LFS) file answers 200 itself;
 * - `GET /api/models/{repo}/tree/{revision}/{dir}` (browsers, where a manual
 *   redirect is opaque): each entry's `lfs.oid` and `lfs.size`.
 * Errors follow the Hub's `X-Error-Code` header.
 */
import { AbortError } from '@rama/core';
import { HubError, type HubErrorCode } from './errors.js';
import { resolveUrl, type HfRef } from './ref.js';
import { byteCount, describeError, StallTimer } from './transfer.js';

export interface FileInfo {
  /** Where to GET the bytes (a CDN address, or the resolve URL). */
  url: string;
  size?: number;
  /** Lower-case hex; absent for a file the Hub keeps in git rather than LFS. */
  sha256?: string;
  /** Whether `url` is on the Hub itself, so the token may be sent there. */
  sameOrigin: boolean;
}

export interface HubContext {
  endpoint: string;
  token?: string;
  fetch: typeof fetch;
  stallMs: number;
  signal?: AbortSignal;
  /** 'redirect' (Node's default) or 'api' (the browser's). */
  metadata: 'redirect' | 'api';
}

export function authHeaders(token: string | undefined): Record<string, string> {
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** Asks the Hub about one file. */
export async function hfFileInfo(ref: HfRef, ctx: HubContext): Promise<FileInfo> {
  if (ctx.metadata === 'api') return viaApi(ref, ctx);
  const start = resolveUrl(ref, ctx.endpoint);
  let url = start;
  // A renamed repository answers with a relative redirect to its new name: follow those, stop at the CDN.
  for (let hop = 0; hop < 5; hop++) {
    const res = await request(ref, url, { method: 'HEAD', redirect: 'manual', headers: authHeaders(ctx.token) }, ctx);
    if (res.type === 'opaqueredirect' || res.status === 0) return viaApi(ref, ctx);
    const sha = res.headers.get('x-linked-etag')?.replace(/^W\//, '').replace(/"/g, '').toLowerCase();
    const size = byteCount(res.headers.get('x-linked-size')) ?? byteCount(res.headers.get('content-length'));
    if (res.status >= 300 && res.status < 400) {
      const location = res.headers.get('location');
      if (!location) throw new HubError('E_HTTP', { model: ref.name, url, reason: `HTTP ${res.status} without a Location header` });
      const next = new URL(location, url);
      const sameOrigin = next.origin === new URL(start).origin;
      if (sameOrigin && location.startsWith('/') && !sha) {
        url = next.href;
        continue;
      }
      return { url: next.href, size, sha256: sha && /^[0-9a-f]{64}$/.test(sha) ? sha : undefined, sameOrigin };
    }
    if (res.ok) return { url, size, sha256: sha && /^[0-9a-f]{64}$/.test(sha) ? sha : undefined, sameOrigin: true };
    throw hubStatusError(ref, url, res, ctx.token);
  }
  throw new HubError('E_HTTP', { model: ref.name, url, reason: 'too many redirects' });
}

interface TreeEntry {
  type?: string;
  path?: string;
  size?: number;
  lfs?: { oid?: string; size?: number };
}

async function viaApi(ref: HfRef, ctx: HubContext): Promise<FileInfo> {
  const dir = ref.path.split('/').slice(0, -1).map(encodeURIComponent).join('/');
  const base = ctx.endpoint.replace(/\/+$/, '');
  let url: string | undefined = `${base}/api/models/${ref.owner}/${ref.repo}/tree/${encodeURIComponent(ref.revision)}${dir ? `/${dir}` : ''}`;
  // The listing comes in pages linked by `Link: <...>; rel="next"`.
  while (url) {
    const res = await request(ref, url, { headers: authHeaders(ctx.token) }, ctx);
    if (!res.ok) throw hubStatusError(ref, url, res, ctx.token);
    let entries: TreeEntry[];
    try {
      entries = (await res.json()) as TreeEntry[];
      if (!Array.isArray(entries)) throw new Error('not a list');
    } catch (e) {
      throw new HubError('E_HTTP', { model: ref.name, url, reason: `the Hub's file list is not valid JSON (${describeError(e)})`, cause: e });
    }
    const entry = entries.find((e) => e.path === ref.path && e.type === 'file');
    if (entry) {
      const oid = entry.lfs?.oid?.toLowerCase();
      return {
        url: resolveUrl(ref, ctx.endpoint),
        size: entry.lfs?.size ?? entry.size,
        sha256: oid && /^[0-9a-f]{64}$/.test(oid) ? oid : undefined,
        sameOrigin: true,
      };
    }
    const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('link') ?? '');
    url = next ? new URL(next[1], url).href : undefined;
  }
  throw new HubError('E_FILE_NOT_FOUND', { model: ref.name, url: resolveUrl(ref, ctx.endpoint), reason: `the repository ${ref.owner}/${ref.repo} has no file ${ref.path} at revision ${ref.revision}` });
}

async function request(ref: HfRef, url: string, init: RequestInit, ctx: HubContext): Promise<Response> {
  const stall = new StallTimer(ctx.stallMs, ctx.signal);
  try {
    const res = await ctx.fetch(url, { ...init, signal: stall.signal });
    // The body (a listing) must arrive in time too.
    if (init.method !== 'HEAD' && res.ok) {
      const body = await res.arrayBuffer();
      return new Response(body, { status: res.status, headers: res.headers });
    }
    await res.body?.cancel().catch(() => {});
    return res;
  } catch (e) {
    if (ctx.signal?.aborted) {
      throw new AbortError(`download of ${ref.name} aborted`);
    }
    if (stall.fired) throw new HubError('E_STALLED', { model: ref.name, url, reason: `the Hub sent nothing for ${ctx.stallMs / 1000} s`, cause: e });
    throw new HubError('E_NETWORK', { model: ref.name, url, reason: `the Hub could not be reached (${describeError(e)})`, cause: e });
  } finally {
    stall.stop();
  }
}

/** The Hub's answer as a HubError: by its X-Error-Code, else by the status. */
export function hubStatusError(ref: HfRef, url: string, res: Response, token: string | undefined): HubError {
  const code = res.headers.get('x-error-code') ?? '';
  const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  const repo = `${ref.owner}/${ref.repo}`;
  const tokenHint = token ? 'the token given (HF_TOKEN or the token option) has no access to it' : 'if it is private or gated, set HF_TOKEN to a token with access';
  const make = (c: HubErrorCode, reason: string) => new HubError(c, { model: ref.name, url, reason: `${status}: ${reason}` });
  if (code === 'RepositoryNotFound') return make('E_REPO_NOT_FOUND', `the repository ${repo} does not exist or is not visible (${tokenHint})`);
  if (code === 'RevisionNotFound') return make('E_FILE_NOT_FOUND', `the repository ${repo} has no revision ${ref.revision}`);
  if (code === 'EntryNotFound') return make('E_FILE_NOT_FOUND', `the repository ${repo} has no file ${ref.path} at revision ${ref.revision}`);
  if (code === 'GatedRepo' || res.status === 401 || res.status === 403) {
    return make('E_UNAUTHORIZED', `the repository ${repo} is gated or private: ${token ? `${tokenHint}; accept its terms on the Hub with that account` : 'set HF_TOKEN to a token with access (and accept its terms on the Hub)'}`);
  }
  if (res.status === 404) return make('E_FILE_NOT_FOUND', `no file ${ref.path} in ${repo} at revision ${ref.revision}`);
  return make('E_HTTP', 'the Hub refused the request');
}
