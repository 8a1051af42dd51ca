/**
 * @rama/hub against a local imitation of the Hub (@rama/testkit's
 * startFakeHub on 127.0.0.1) serving the shared GGUF fixtures: names,
 * metadata by redirect and by the tree API, the cache, resume after a
 * dropped connection, checksum and size errors, the Hub's error codes,
 * tokens, offline use, split models. Nothing reaches the network.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AbortError, ArgumentError } from '@rama/core';
import { missingMessage, sharedFile, startFakeHub, type FakeHub } from '@rama/testkit';
import { fetchModel as fetchAny, HubError, listCached, modelParts, parseModelRef, removeCached, type FetchOptions, type Progress } from './index.js';
import { cacheDir, cachedName } from './node.js';
import { Sha256 } from './sha256.js';

/** Node's answer: paths (through the index's dispatch, as a library user calls it). */
const fetchModel = (name: string, o: FetchOptions) => fetchAny(name, o) as Promise<string[]>;

const FIXTURE = 'gguf/aidreams260K-q8_0.gguf';
const fixturePath = sharedFile(FIXTURE);
const gguf = fixturePath ? new Uint8Array(readFileSync(fixturePath)) : new Uint8Array(0);
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const parts = [randomBytes(3000), randomBytes(2000), randomBytes(1000)].map((b) => new Uint8Array(b));
const readme = new TextEncoder().encode('# tiny\n');

let hub: FakeHub;
let cache: string;
const opts = (more: Record<string, unknown> = {}) => ({ endpoint: hub.endpoint, cacheDir: cache, ...more });

beforeAll(async () => {
  hub = await startFakeHub(
    {
      'test/tiny': {
        files: {
          'aidreams260K-q8_0.gguf': gguf,
          'sub/dir/model.gguf': gguf,
          'README.md': readme,
          'split/m-00001-of-00003.gguf': parts[0],
          'split/m-00002-of-00003.gguf': parts[1],
          'split/m-00003-of-00003.gguf': parts[2],
        },
        small: ['README.md'],
        revisions: ['v1'],
      },
      'test/gated': { files: { 'model.gguf': gguf }, gated: true },
    },
    { token: 'hf_secret' },
  );
});
afterAll(() => hub.close());
beforeEach(() => {
  hub.cdn = 'ok';
  hub.requests.length = 0;
  cache = mkdtempSync(join(tmpdir(), 'rama-hub-test-'));
  return () => rmSync(cache, { recursive: true, force: true });
});

/** Every file under the cache folder. */
const files = () => readdirSync(cache, { recursive: true, encoding: 'utf8' }).filter((p) => statSync(join(cache, p)).isFile()).sort();

describe('names', () => {
  it('hf:owner/repo/path[@revision] and URLs', () => {
    expect(parseModelRef('hf:test/tiny/a.gguf')).toEqual({ kind: 'hf', name: 'hf:test/tiny/a.gguf', owner: 'test', repo: 'tiny', path: 'a.gguf', revision: 'main' });
    expect(parseModelRef('hf:o/r/sub/dir/a.gguf@v1.0')).toMatchObject({ path: 'sub/dir/a.gguf', revision: 'v1.0', name: 'hf:o/r/sub/dir/a.gguf@v1.0' });
    expect(parseModelRef('hf:o/r/a.gguf@refs/pr/1')).toMatchObject({ revision: 'refs/pr/1' });
    expect(parseModelRef('https://h.example/x/a.gguf')).toEqual({ kind: 'url', name: 'https://h.example/x/a.gguf', url: 'https://h.example/x/a.gguf' });
  });

  for (const bad of ['hf:', 'hf:owner', 'hf:owner/repo', 'hf:owner/repo/', 'hf:o/r/../x.gguf', 'hf:o/r/a.gguf@', 'hf:-o/r/a.gguf', 'model.gguf', 'ftp://x/y']) {
    it(`${JSON.stringify(bad)} is an ArgumentError naming it`, () => {
      expect(() => parseModelRef(bad)).toThrow(ArgumentError);
      expect(() => parseModelRef(bad)).toThrow(JSON.stringify(bad));
    });
  }

  it('a split GGUF part names every part, in order', () => {
    const names = modelParts(parseModelRef('hf:o/r/d/m-00002-of-00003.gguf@v1')).map((r) => r.name);
    expect(names).toEqual(['hf:o/r/d/m-00001-of-00003.gguf@v1', 'hf:o/r/d/m-00002-of-00003.gguf@v1', 'hf:o/r/d/m-00003-of-00003.gguf@v1']);
    expect(modelParts(parseModelRef('https://h/x/m-00001-of-00002.gguf')).map((r) => r.name)).toEqual(['https://h/x/m-00001-of-00002.gguf', 'https://h/x/m-00002-of-00002.gguf']);
    expect(() => modelParts(parseModelRef('hf:o/r/m-00004-of-00003.gguf'))).toThrow(ArgumentError);
  });

  it('cache folder: RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama; URL file names stay inside it', () => {
    expect(cacheDir({ RAMA_CACHE: '/a', XDG_CACHE_HOME: '/b' })).toBe('/a');
    expect(cacheDir({ XDG_CACHE_HOME: '/b' })).toBe(join('/b', 'rama'));
    expect(cacheDir({})).toMatch(/[/\\]\.cache[/\\]rama$/);
    expect(cachedName('http://h/x/..%2f..%2fevil.bin')).toBe('evil.bin');
    expect(cachedName('http://h/')).toBe('download.bin');
  });
});

describe('fetchModel in Node', () => {
  it('downloads an LFS file by its redirect, checks its SHA-256, reports progress, then serves it from the cache', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    const events: Progress[] = [];
    const [path] = await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts({ onProgress: (p: Progress) => events.push(p) }));
    expect(path).toBe(join(cache, 'hf', 'test', 'tiny', 'main', 'aidreams260K-q8_0.gguf'));
    expect(sha(readFileSync(path))).toBe(sha(gguf));
    expect(hub.requests.map((r) => `${r.method} ${r.url}`)).toEqual([`HEAD /test/tiny/resolve/main/aidreams260K-q8_0.gguf`, `GET /cdn/${sha(gguf)}`]);
    expect(events[0]).toMatchObject({ file: 'aidreams260K-q8_0.gguf', loaded: 0, total: gguf.length, done: false });
    expect(events.at(-1)).toMatchObject({ loaded: gguf.length, total: gguf.length, done: true });
    expect(events.map((e) => e.loaded)).toEqual([...events.map((e) => e.loaded)].sort((a, b) => a - b));
    expect(files()).toEqual([join('hf', 'test', 'tiny', 'main', 'aidreams260K-q8_0.gguf'), join('hf', 'test', 'tiny', 'main', 'aidreams260K-q8_0.gguf.rama.json')]);

    hub.requests.length = 0;
    expect(await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts())).toEqual([path]);
    expect(hub.requests).toEqual([]);
  });

  it('by the tree API (how a browser learns the SHA-256), in a sub-folder, at a revision', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    const [path] = await fetchModel('hf:test/tiny/sub/dir/model.gguf@v1', opts({ metadata: 'api' }));
    expect(path).toBe(join(cache, 'hf', 'test', 'tiny', 'v1', 'sub', 'dir', 'model.gguf'));
    expect(sha(readFileSync(path))).toBe(sha(gguf));
    expect(hub.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /api/models/test/tiny/tree/v1/sub/dir', 'GET /test/tiny/resolve/v1/sub/dir/model.gguf', `GET /cdn/${sha(gguf)}`]);
  });

  it('a file kept in git (no LFS) is served by the resolve URL itself', async () => {
    const [path] = await fetchModel('hf:test/tiny/README.md', opts());
    expect(readFileSync(path, 'utf8')).toBe('# tiny\n');
  });

  it('a dropped connection is resumed with Range and If-Range, and the whole file must still match the hash', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    // The fake's drop-once fires once per server; a fresh one for this test.
    const own = await startFakeHub({ 'test/tiny': hub.repos['test/tiny'] });
    try {
      own.cdn = 'drop-once';
      const [path] = await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', { endpoint: own.endpoint, cacheDir: cache });
      expect(sha(readFileSync(path))).toBe(sha(gguf));
      const cdn = own.requests.filter((r) => r.url.startsWith('/cdn/'));
      expect(cdn).toHaveLength(2);
      expect(cdn[0].range).toBeUndefined();
      expect(cdn[1].range).toMatch(/^bytes=[1-9]\d*-$/);
      expect(cdn[1].ifRange).toBe(`"${sha(gguf)}"`);
    } finally {
      await own.close();
    }
  });

  it('a connection that keeps dropping fails (E_NETWORK) keeping the partial file; the next call resumes it', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    hub.cdn = 'drop';
    const name = 'hf:test/tiny/aidreams260K-q8_0.gguf';
    const error = (await fetchModel(name, opts({ retries: 1 })).catch((e: unknown) => e)) as HubError;
    expect(error).toBeInstanceOf(HubError);
    expect(error.code).toBe('E_NETWORK');
    expect(error.message).toContain(`could not download ${name} from ${hub.endpoint}/cdn/`);
    expect(error.message).toMatch(new RegExp(`the connection (closed|broke \\(.+\\)) after \\d+ of ${gguf.length} bytes; the partial file .* is kept`));
    const part = join(cache, 'hf', 'test', 'tiny', 'main', 'aidreams260K-q8_0.gguf.part');
    const kept = statSync(part).size;
    expect(kept).toBeGreaterThan(0);

    hub.cdn = 'ok';
    hub.requests.length = 0;
    const [path] = await fetchModel(name, opts());
    expect(sha(readFileSync(path))).toBe(sha(gguf));
    expect(hub.requests.filter((r) => r.url.startsWith('/cdn/')).map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect(existsSync(part)).toBe(false);
  });

  it('wrong bytes: E_CHECKSUM naming both hashes; nothing is kept', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    hub.cdn = 'wrong-bytes';
    const error = (await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts()).catch((e: unknown) => e)) as HubError;
    expect(error.code).toBe('E_CHECKSUM');
    expect(error.message).toMatch(new RegExp(`^could not download hf:test/tiny/aidreams260K-q8_0.gguf from .*: what arrived is not a usable aidreams260K-q8_0.gguf: its SHA-256 is [0-9a-f]{64}, not ${sha(gguf)}$`));
    expect(files()).toEqual([]);
  });

  it('an HTML page from the CDN: E_NOT_A_FILE; nothing is kept', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    hub.cdn = 'html';
    const error = (await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts()).catch((e: unknown) => e)) as HubError;
    expect(error.code).toBe('E_NOT_A_FILE');
    expect(files()).toEqual([]);
  });

  it('a server that falls silent: E_STALLED after the stall timeout', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    hub.cdn = 'stall';
    const error = (await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts({ stallTimeoutMs: 300 })).catch((e: unknown) => e)) as HubError;
    hub.cdn = 'ok';
    expect(error.code).toBe('E_STALLED');
    expect(error.message).toMatch(/the server sent nothing for 0.3 s after \d+ of \d+ bytes/);
  });

  const hubErrors: [string, string, RegExp][] = [
    ['hf:nobody/none/model.gguf', 'E_REPO_NOT_FOUND', /HTTP 404 Not Found: the repository nobody\/none does not exist or is not visible \(if it is private or gated, set HF_TOKEN/],
    ['hf:test/tiny/missing.gguf', 'E_FILE_NOT_FOUND', /the repository test\/tiny has no file missing.gguf at revision main$/],
    ['hf:test/tiny/aidreams260K-q8_0.gguf@v9', 'E_FILE_NOT_FOUND', /the repository test\/tiny has no revision v9$/],
    ['hf:test/gated/model.gguf', 'E_UNAUTHORIZED', /HTTP 401 Unauthorized: the repository test\/gated is gated or private: set HF_TOKEN/],
  ];
  for (const [name, code, message] of hubErrors) {
    for (const metadata of ['redirect', 'api'] as const) {
      it(`${name} (${metadata}): ${code}, naming the model and URL`, async () => {
        const error = (await fetchModel(name, opts({ metadata })).catch((e: unknown) => e)) as HubError;
        expect(error).toBeInstanceOf(HubError);
        expect(error.code).toBe(code);
        expect(error.message).toContain(`could not download ${name} from ${hub.endpoint}/`);
        expect(error.message).toMatch(message);
        expect(files()).toEqual([]);
      });
    }
  }

  it('a gated repository with the token (option or HF_TOKEN) downloads; the token goes in Authorization', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    const [a] = await fetchModel('hf:test/gated/model.gguf', opts({ token: 'hf_secret' }));
    expect(sha(readFileSync(a))).toBe(sha(gguf));
    expect(hub.requests[0].authorization).toBe('Bearer hf_secret');
    rmSync(a);
    process.env.HF_TOKEN = 'hf_secret';
    try {
      await fetchModel('hf:test/gated/model.gguf', opts());
    } finally {
      delete process.env.HF_TOKEN;
    }
    const wrong = (await fetchModel('hf:test/gated/model.gguf', opts({ token: 'hf_other', cacheDir: join(cache, 'x') })).catch((e: unknown) => e)) as HubError;
    expect(wrong.code).toBe('E_UNAUTHORIZED');
    expect(wrong.message).toContain('the token given (HF_TOKEN or the token option) has no access to it');
  });

  it('offline (option or HF_HUB_OFFLINE=1): a cached model is used without a request; an uncached one is E_OFFLINE', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    const name = 'hf:test/tiny/aidreams260K-q8_0.gguf';
    const error = (await fetchModel(name, opts({ offline: true })).catch((e: unknown) => e)) as HubError;
    expect(error.code).toBe('E_OFFLINE');
    expect(error.message).toBe(`${name} is not in the cache (${join(cache, 'hf', 'test', 'tiny', 'main', 'aidreams260K-q8_0.gguf')}) and offline mode is on (the offline option); run once online to download it`);
    expect(hub.requests).toEqual([]);
    const [path] = await fetchModel(name, opts());
    hub.requests.length = 0;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      expect(await fetchModel(name, opts({ endpoint: 'http://127.0.0.1:1' }))).toEqual([path]);
      const other = (await fetchModel('hf:test/tiny/README.md', opts()).catch((e: unknown) => e)) as HubError;
      expect(other.code).toBe('E_OFFLINE');
      expect(other.message).toContain('(HF_HUB_OFFLINE)');
    } finally {
      delete process.env.HF_HUB_OFFLINE;
    }
    expect(hub.requests).toEqual([]);
  });

  it('a cached file whose size changed is downloaded again', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    const [path] = await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts());
    writeFileSync(path, 'truncated');
    await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts());
    expect(sha(readFileSync(path))).toBe(sha(gguf));
  });

  it('an unreachable Hub: E_NETWORK naming the model and URL', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const error = (await fetchModel('hf:test/tiny/x.gguf', opts({ endpoint: `http://127.0.0.1:${port}` })).catch((e: unknown) => e)) as HubError;
    expect(error.code).toBe('E_NETWORK');
    expect(error.message).toMatch(new RegExp(`^could not download hf:test/tiny/x.gguf from http://127.0.0.1:${port}/test/tiny/resolve/main/x.gguf: the Hub could not be reached \\(.*ECONNREFUSED.*\\)$`));
  });

  it('an aborted signal: AbortError', async () => {
    const error = await fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', opts({ signal: AbortSignal.abort() })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortError);
  });

  it('a split GGUF: every part, in order', async () => {
    const paths = await fetchModel('hf:test/tiny/split/m-00001-of-00003.gguf', opts());
    expect(paths).toEqual([1, 2, 3].map((k) => join(cache, 'hf', 'test', 'tiny', 'main', 'split', `m-0000${k}-of-00003.gguf`)));
    paths.forEach((p, k) => expect(sha(readFileSync(p))).toBe(sha(parts[k])));
  });

  it('a plain URL is cached under url/<host>/<hash>/<name>', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    const url = `${hub.endpoint}/cdn/${sha(gguf)}`;
    const [path] = await fetchModel(url, opts());
    expect(path).toMatch(new RegExp(`url[/\\\\]127\\.0\\.0\\.1_\\d+[/\\\\][0-9a-f]{12}[/\\\\]${sha(gguf)}$`));
    expect(sha(readFileSync(path))).toBe(sha(gguf));
  });

  it('listCached and removeCached', async () => {
    await fetchModel('hf:test/tiny/split/m-00001-of-00003.gguf', opts());
    await fetchModel('hf:test/tiny/README.md', opts());
    writeFileSync(join(cache, 'stories15M.bin'), 'x');
    const list = await listCached({ cacheDir: cache });
    expect(list.map((m) => [m.name, m.size])).toEqual([
      ['hf:test/tiny/README.md', readme.length],
      ['hf:test/tiny/split/m-00001-of-00003.gguf', 3000],
      ['hf:test/tiny/split/m-00002-of-00003.gguf', 2000],
      ['hf:test/tiny/split/m-00003-of-00003.gguf', 1000],
      ['stories15M.bin', 1],
    ]);
    expect(list[1].sha256).toBe(sha(parts[0]));
    expect(await removeCached('hf:test/tiny/split/m-00002-of-00003.gguf', { cacheDir: cache })).toHaveLength(3);
    expect(await removeCached('stories15M.bin', { cacheDir: cache })).toEqual([join(cache, 'stories15M.bin')]);
    expect(await removeCached('hf:test/tiny/nothing.gguf', { cacheDir: cache })).toEqual([]);
    expect((await listCached({ cacheDir: cache })).map((m) => m.name)).toEqual(['hf:test/tiny/README.md']);
    await expect(removeCached('../x', { cacheDir: cache })).rejects.toThrow(ArgumentError);
  });
});

describe('the browser side', () => {
  /** The Cache API as a browser has it, in memory. */
  class MemoryCache {
    readonly entries = new Map<string, Response>();
    async match(key: RequestInfo) {
      return this.entries.get(typeof key === 'string' ? key : key.url)?.clone();
    }
    async put(key: string, res: Response) {
      const body = await res.arrayBuffer();
      this.entries.set(key, new Response(body, { headers: res.headers }));
    }
    async delete(key: string) {
      return this.entries.delete(key);
    }
    async keys() {
      return [...this.entries.keys()].map((u) => new Request(u));
    }
  }
  const stores = new Map<string, MemoryCache>();
  beforeAll(() => {
    (globalThis as { caches?: unknown }).caches = { open: async (n: string) => (stores.get(n) ?? stores.set(n, new MemoryCache()).get(n))! };
  });
  afterAll(() => {
    delete (globalThis as { caches?: unknown }).caches;
  });

  it('fetchModel gives Blobs from the Cache API, by the tree API, resuming a dropped connection; a wrong checksum stores nothing', async (ctx) => {
    if (!fixturePath) return ctx.skip(missingMessage(FIXTURE));
    const browser = await import('./browser.js');
    const own = await startFakeHub({ 'test/tiny': hub.repos['test/tiny'] });
    try {
      own.cdn = 'drop-once';
      const [blob] = await browser.fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', { endpoint: own.endpoint, cacheDir: 'a' });
      expect(sha(new Uint8Array(await blob.arrayBuffer()))).toBe(sha(gguf));
      // fetch follows the resolve URL's redirect to the CDN: the Range goes to both.
      expect(own.requests.map((r) => `${r.method} ${r.url}`)).toEqual([
        'GET /api/models/test/tiny/tree/main',
        'GET /test/tiny/resolve/main/aidreams260K-q8_0.gguf',
        `GET /cdn/${sha(gguf)}`,
        'GET /test/tiny/resolve/main/aidreams260K-q8_0.gguf',
        `GET /cdn/${sha(gguf)}`,
      ]);
      expect(own.requests[4].range).toMatch(/^bytes=[1-9]\d*-$/);
      expect(own.requests[4].ifRange).toBe(`"${sha(gguf)}"`);
      expect((await browser.listCached({ cacheDir: 'a' })).map((m) => [m.name, m.size, m.sha256])).toEqual([['hf:test/tiny/aidreams260K-q8_0.gguf', gguf.length, sha(gguf)]]);
      own.requests.length = 0;
      const [again] = await browser.fetchModel('hf:test/tiny/aidreams260K-q8_0.gguf', { endpoint: own.endpoint, cacheDir: 'a', offline: true });
      expect(again.size).toBe(gguf.length);
      expect(own.requests).toEqual([]);

      own.cdn = 'wrong-bytes';
      const error = (await browser.fetchModel('hf:test/tiny/sub/dir/model.gguf', { endpoint: own.endpoint, cacheDir: 'b' }).catch((e: unknown) => e)) as HubError;
      expect(error.code).toBe('E_CHECKSUM');
      expect(await browser.listCached({ cacheDir: 'b' })).toEqual([]);
      expect(await browser.removeCached('hf:test/tiny/aidreams260K-q8_0.gguf', { cacheDir: 'a' })).toHaveLength(1);
      expect(await browser.listCached({ cacheDir: 'a' })).toEqual([]);
    } finally {
      await own.close();
    }
  });

  it('the incremental SHA-256 matches node:crypto at every length around a block', () => {
    const data = new Uint8Array(randomBytes(300));
    for (let n = 0; n <= 300; n += 7) {
      const h = new Sha256();
      // Fed in uneven pieces.
      for (let i = 0; i < n; i += 13) h.update(data.subarray(i, Math.min(n, i + 13)));
      expect(h.hex()).toBe(sha(data.subarray(0, n)));
    }
    expect(new Sha256().update(new TextEncoder().encode('abc')).hex()).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
