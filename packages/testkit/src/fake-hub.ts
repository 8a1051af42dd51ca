/**
 * A local imitation of the Hugging Face Hub for download tests, on
 * 127.0.0.1 (nothing reaches the network):
 * - `/{owner}/{repo}/resolve/{revision}/{path}` (GET or HEAD): an LFS file
 *   answers 302 to `/cdn/{sha256}` with `X-Linked-Etag` ("sha256"),
 *   `X-Linked-Size` and `ETag`; a non-LFS file answers 200 with its bytes;
 * - `/cdn/{sha256}`: the bytes, with Range and If-Range;
 * - `/api/models/{owner}/{repo}/tree/{revision}[/{dir}]`: the directory's
 *   entries with `lfs.oid` and `lfs.size`;
 * - 404 with `X-Error-Code: RepositoryNotFound`, `RevisionNotFound` or
 *   `EntryNotFound`, and 401 `GatedRepo` for a gated repository without the token.
 * The CDN can misbehave on request (`hub.cdn`). Every answer carries the
 * CORS headers a browser page on another origin needs to read it (the real
 * Hub sends them too), and `Cross-Origin-Resource-Policy: cross-origin` so a
 * cross-origin isolated page (COEP) may load it; preflights (OPTIONS) are
 * answered and recorded.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeHubRepo {
  /** Files by path in the repository. */
  files: Record<string, Uint8Array>;
  /** Paths kept in git rather than LFS: no redirect, no SHA-256 from the Hub. */
  small?: string[];
  /** Answers 401 unless `Authorization: Bearer <token>` is sent. */
  gated?: boolean;
  /** Revisions besides main (every one has the same files). */
  revisions?: string[];
}

/**
 * What the CDN does: 'ok'; 'drop' (half the bytes asked for, then the
 * connection drops, every time); 'drop-once' (that, on the first request
 * only); 'wrong-bytes' (other bytes of the same length); 'stall' (half,
 * then silence); 'html' (a login page).
 */
export type CdnBehaviour = 'ok' | 'drop' | 'drop-once' | 'wrong-bytes' | 'stall' | 'html';

export interface FakeHubRequest {
  method: string;
  url: string;
  range?: string;
  ifRange?: string;
  authorization?: string;
}

export interface FakeHub {
  /** http://127.0.0.1:<port>, for HF_ENDPOINT. */
  endpoint: string;
  repos: Record<string, FakeHubRepo>;
  /** Every request, in order. */
  requests: FakeHubRequest[];
  cdn: CdnBehaviour;
  close(): Promise<void>;
}

/** What a browser needs to read the Hub's answers from another origin, resume (Range, If-Range) and send a token. */
const CORS: Record<string, string> = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'ETag, X-Linked-Etag, X-Linked-Size, X-Error-Code, Content-Range, Content-Length, Accept-Ranges, Link, Location',
  'cross-origin-resource-policy': 'cross-origin',
};

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export async function startFakeHub(repos: Record<string, FakeHubRepo>, opts: { token?: string } = {}): Promise<FakeHub> {
  const byHash = new Map<string, Uint8Array>();
  let dropped = false;
  const hub: FakeHub = {
    endpoint: '',
    repos,
    requests: [],
    cdn: 'ok',
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };

  const error = (res: ServerResponse, status: number, code: string | undefined, message: string) => {
    res.writeHead(status, { 'content-type': 'application/json', ...(code ? { 'x-error-code': code } : {}) }).end(JSON.stringify({ error: message }));
  };

  /** The repository and revision of a request, or undefined when an error was sent. */
  const find = (req: IncomingMessage, res: ServerResponse, id: string, revision: string): FakeHubRepo | undefined => {
    const repo = repos[id];
    if (!repo) return error(res, 404, 'RepositoryNotFound', 'Repository not found'), undefined;
    if (repo.gated && req.headers.authorization !== `Bearer ${opts.token}`) return error(res, 401, 'GatedRepo', `Access to model ${id} is restricted`), undefined;
    if (revision !== 'main' && !repo.revisions?.includes(revision)) return error(res, 404, 'RevisionNotFound', `Invalid rev id: ${revision}`), undefined;
    return repo;
  };

  const sendBytes = (req: IncomingMessage, res: ServerResponse, body: Uint8Array, etag: string, behaviour: CdnBehaviour) => {
    if (behaviour === 'html') {
      res.writeHead(200, { 'content-type': 'text/html' }).end('<!DOCTYPE html><html><body>Sign in</body></html>');
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    let start = 0;
    if (range && (ifRange === undefined || ifRange === etag)) {
      start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
    }
    let rest = body.subarray(start);
    if (behaviour === 'wrong-bytes') rest = rest.map((b) => b ^ 0x5a);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(rest.length), etag, 'accept-ranges': 'bytes' };
    if (start > 0) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    if (req.method === 'HEAD') return void res.end();
    const drop = behaviour === 'drop' || (behaviour === 'drop-once' && !dropped);
    if (drop) {
      dropped = true;
      res.write(rest.subarray(0, rest.length >> 1), () => setTimeout(() => res.destroy(), 20));
    } else if (behaviour === 'stall') {
      res.write(rest.subarray(0, rest.length >> 1));
    } else {
      res.end(rest);
    }
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    hub.requests.push({
      method: req.method ?? 'GET',
      url: req.url ?? '',
      range: req.headers.range,
      ifRange: req.headers['if-range'] as string | undefined,
      authorization: req.headers.authorization,
    });
    for (const [k, v] of Object.entries(CORS)) res.setHeader(k, v);
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, HEAD',
        'access-control-allow-headers': 'Range, If-Range, Authorization, Accept-Encoding',
        'access-control-max-age': '600',
      }).end();
      return;
    }
    const parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
    if (parts[0] === 'cdn') {
      const body = byHash.get(parts[1] ?? '');
      if (!body) return error(res, 404, undefined, 'no such object');
      return sendBytes(req, res, body, `"${parts[1]}"`, hub.cdn);
    }
    if (parts[0] === 'api' && parts[1] === 'models' && parts[4] === 'tree') {
      const id = `${parts[2]}/${parts[3]}`;
      const repo = find(req, res, id, parts[5] ?? 'main');
      if (!repo) return;
      const dir = parts.slice(6).join('/');
      const entries = Object.entries(repo.files)
        .filter(([p]) => p.split('/').slice(0, -1).join('/') === dir)
        .map(([path, bytes]) => {
          const lfs = !repo.small?.includes(path);
          return { type: 'file', path, size: bytes.length, oid: sha256(bytes).slice(0, 40), ...(lfs ? { lfs: { oid: sha256(bytes), size: bytes.length, pointerSize: 134 } } : {}) };
        });
      if (dir && entries.length === 0) return error(res, 404, 'EntryNotFound', `${dir} does not exist on "main"`);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(entries));
      return;
    }
    if (parts[2] === 'resolve' && parts.length >= 5) {
      const id = `${parts[0]}/${parts[1]}`;
      const repo = find(req, res, id, parts[3]);
      if (!repo) return;
      const path = parts.slice(4).join('/');
      const body = repo.files[path];
      if (!body) return error(res, 404, 'EntryNotFound', `${path} does not exist on "${parts[3]}"`);
      const hash = sha256(body);
      if (repo.small?.includes(path)) return sendBytes(req, res, body, `"${hash.slice(0, 40)}"`, 'ok');
      byHash.set(hash, body);
      res.writeHead(302, {
        location: `${hub.endpoint}/cdn/${hash}`,
        'x-linked-etag': `"${hash}"`,
        'x-linked-size': String(body.length),
        etag: `"${hash}"`,
      }).end();
      return;
    }
    error(res, 404, undefined, 'not found');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hub.endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // Every LFS file is on the CDN from the start (also when the API is asked first).
  for (const repo of Object.values(repos)) for (const [p, b] of Object.entries(repo.files)) if (!repo.small?.includes(p)) byHash.set(sha256(b), b);
  return hub;
}
