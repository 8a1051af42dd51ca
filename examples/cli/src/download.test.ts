/**
 * The default-model download and its cache, against a node:http server on
 * 127.0.0.1 that serves the shared models by name (and, for checks, the wrong
 * file under a known name), honours Range and If-Range, and can misbehave on
 * request: drop the connection, stall, send HTML. Nothing here reaches the
 * network.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { generateGoldens, sharedFile } from '@rama/testkit';
import { cacheDir, cachedName, defaultSources, download, ensureCached, DEFAULT_MODEL_URL, DEFAULT_TOKENIZER_URL } from './download.js';
import { KNOWN_FILES, type KnownFile } from './verify.js';
import { jsonLines, runCli } from './run-cli.js';

const read = (name: string) => {
  const path = sharedFile(`models/${name}`);
  return path ? readFileSync(path) : undefined;
};
const model = read('aidreams260K.bin');
const tok512 = read('tok512-aidreams.bin');
const llamaTokenizer = read('tokenizer.bin');
const tok512Path = sharedFile('models/tok512-aidreams.bin');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** What the server sends for each name; stories15M.bin is deliberately NOT the published file. */
const files: Record<string, Buffer | undefined> = {
  'aidreams260K.bin': model,
  'tok512-aidreams.bin': tok512,
  'tokenizer.bin': llamaTokenizer,
  'stories15M.bin': model,
};
const HTML = '<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n';

type Behaviour = 'ok' | 'truncate' | 'stall' | 'stall-headers' | '404' | 'chunked' | 'html' | 'html-as-binary' | 'ignore-range' | 'no-etag';
let behaviour: Behaviour = 'ok';
/** Changing it changes every ETag: the files "changed" on the server. */
let version = 1;
let requests: { url: string; range?: string; ifRange?: string }[] = [];
let server: Server;
let origin = '';
let base = '';

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = req.url ?? '';
    requests.push({ url, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined });
    const name = decodeURIComponent(url).split(/[/\\]/).pop() ?? '';
    // Under /any/, every name is the model: a server that maps paths loosely.
    const body = url.startsWith('/files/') ? files[name] : url.startsWith('/any/') ? model : undefined;
    if (!body || behaviour === '404') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
      return;
    }
    if (behaviour === 'stall-headers') return; // accepts, then never answers
    if (behaviour === 'html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(HTML);
      return;
    }
    if (behaviour === 'html-as-binary') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(HTML);
      return;
    }
    if (behaviour === 'chunked') {
      // No content-length: the client cannot know the size up front.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(body.subarray(0, 1000));
      setTimeout(() => res.end(body.subarray(1000)), 20);
      return;
    }
    const etag = `"${sha256(body).slice(0, 16)}-${version}"`;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    let start = 0;
    if (range && behaviour !== 'ignore-range' && (ifRange === undefined || ifRange === etag)) {
      start = Number(range[1]);
      if (start >= body.length) {
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
    }
    const rest = body.subarray(start);
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream', 'content-length': String(rest.length) };
    if (behaviour !== 'no-etag') headers.etag = etag;
    if (start > 0) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(start > 0 ? 206 : 200, headers);
    if (behaviour === 'truncate' || behaviour === 'no-etag') {
      // Half the promised bytes, then the connection drops.
      res.write(rest.subarray(0, rest.length >> 1), () => setTimeout(() => res.destroy(), 20));
    } else if (behaviour === 'stall') {
      res.write(rest.subarray(0, rest.length >> 1)); // ... and nothing more, the connection left open
    } else {
      res.end(rest);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  base = `${origin}/files`;
});
afterAll(() => {
  server.closeAllConnections();
  return new Promise<void>((r) => server.close(() => r()));
});

let cache: string;
beforeEach(() => {
  behaviour = 'ok';
  version = 1;
  requests = [];
  cache = mkdtempSync(join(tmpdir(), 'rama-dl-test-'));
  return () => {
    server.closeAllConnections(); // a stalled response must not outlive its test
    rmSync(cache, { recursive: true, force: true });
  };
});

const haveFiles = () => model !== undefined && tok512 !== undefined && llamaTokenizer !== undefined;
const skipMessage = 'skipped: shared models/aidreams260K.bin, tok512-aidreams.bin or tokenizer.bin not found (set RAMA_SHARED)';
const HINT = '. Pass a local model with -m model.bin -t tokenizer.bin';

/** Every file under `dir`, as paths relative to it. */
function walk(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((p) => statSync(join(dir, p)).isFile())
    .sort();
}

/** The single "rama: error: " line of a run, checked to be the last line and free of stack traces. */
function errorLine(stderr: string): string {
  expect(stderr).not.toContain('    at ');
  const last = stderr.trimEnd().split('\n').pop() ?? '';
  expect(last).toMatch(/^rama: error: /);
  return last.slice('rama: error: '.length);
}

describe('cache folder, addresses and file names', () => {
  it('RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama', () => {
    expect(cacheDir({ RAMA_CACHE: '/a', XDG_CACHE_HOME: '/b' })).toBe('/a');
    expect(cacheDir({ XDG_CACHE_HOME: '/b' })).toBe(join('/b', 'rama'));
    expect(cacheDir({})).toMatch(/[/\\]\.cache[/\\]rama$/);
  });

  it('the public addresses by default, RAMA_MODEL_BASE_URL, then the flags; each says where it came from', () => {
    expect(DEFAULT_MODEL_URL).toBe('https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin');
    expect(DEFAULT_TOKENIZER_URL).toBe('https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin');
    expect(defaultSources({}, {})).toEqual({
      model: { url: DEFAULT_MODEL_URL, via: 'the default address; --model-url or RAMA_MODEL_BASE_URL sets another', kind: 'model' },
      tokenizer: { url: DEFAULT_TOKENIZER_URL, via: 'the default address; --tokenizer-url or RAMA_MODEL_BASE_URL sets another', kind: 'tokenizer' },
    });
    expect(defaultSources({}, { RAMA_MODEL_BASE_URL: 'http://h/x/' })).toEqual({
      model: { url: 'http://h/x/stories15M.bin', via: 'from RAMA_MODEL_BASE_URL', kind: 'model' },
      tokenizer: { url: 'http://h/x/tokenizer.bin', via: 'from RAMA_MODEL_BASE_URL', kind: 'tokenizer' },
    });
    expect(defaultSources({ modelUrl: 'http://m/a.bin', tokenizerUrl: 'http://t/b.bin' }, { RAMA_MODEL_BASE_URL: 'http://h' })).toEqual({
      model: { url: 'http://m/a.bin', via: 'from --model-url', kind: 'model' },
      tokenizer: { url: 'http://t/b.bin', via: 'from --tokenizer-url', kind: 'tokenizer' },
    });
  });

  const names: [string, string][] = [
    ['http://h/x/stories%2015M.bin?download=1', 'stories 15M.bin'],
    ['http://h/x/..%2f..%2fevil.bin', 'evil.bin'],
    ['http://h/x/..%5c..%5cevil.bin', 'evil.bin'],
    ['http://h/x/C:%5cevil.bin', 'evil.bin'],
    ['http://h/x/..%2f..%2f', 'download.bin'],
    ['http://h/x/%2e%2e%2f', 'download.bin'],
    ['http://h/x/..', 'download.bin'],
    ['http://h/', 'download.bin'],
    ['http://h/x/.bashrc', 'bashrc'],
    ['http://h/x/a%00b%0a.bin', 'a_b_.bin'],
    ['http://h/x/%E0%A4%A.bin', '%E0%A4%A.bin'],
  ];
  for (const [url, name] of names) {
    it(`the cache name of ${url} is ${JSON.stringify(name)}, inside the cache folder`, () => {
      const got = cachedName(url);
      expect(got).toBe(name);
      expect(dirname(join('/cache', got))).toBe('/cache');
    });
  }

  it('a long name is shortened to fit a file system', () => {
    const got = cachedName(`http://h/${'é'.repeat(300)}.bin`);
    expect(Buffer.byteLength(got)).toBeLessThanOrEqual(200);
  });
});

describe('download() and ensureCached()', () => {
  it('on a terminal: draws a progress bar in place, ending at 100%', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const written: string[] = [];
    const dest = join(cache, 'sub', 'aidreams260K.bin');
    await download(`${base}/aidreams260K.bin`, dest, { progress: { isTTY: true, write: (s: string) => written.push(s) } });
    expect(readFileSync(dest).equals(model!)).toBe(true);
    const all = written.join('');
    expect(all).toContain('\raidreams260K.bin [');
    expect(all).toMatch(/100% .*\n$/);
    expect(readdirSync(join(cache, 'sub'))).toEqual(['aidreams260K.bin']);
  });

  it('elsewhere: one plain line naming the file, its size and the URL', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const written: string[] = [];
    await download(`${base}/tok512-aidreams.bin`, join(cache, 'tok512-aidreams.bin'), { progress: { isTTY: false, write: (s: string) => written.push(s) } });
    expect(written).toEqual([`rama: downloading tok512-aidreams.bin (6.1 KiB) from ${base}/tok512-aidreams.bin\n`]);
  });

  it('without a content-length: still completes', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    behaviour = 'chunked';
    const dest = join(cache, 'aidreams260K.bin');
    await download(`${base}/aidreams260K.bin`, dest, { progress: { isTTY: true, write: () => {} } });
    expect(readFileSync(dest).equals(model!)).toBe(true);
  });

  it('the Llama 2 tokenizer.bin passes its pinned size and SHA-256', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    expect(KNOWN_FILES.find((k) => k.name === 'tokenizer.bin')).toEqual({ name: 'tokenizer.bin', size: llamaTokenizer!.length, sha256: sha256(llamaTokenizer!) });
    const path = await ensureCached(`${base}/tokenizer.bin`, { dir: cache });
    expect(readFileSync(path).equals(llamaTokenizer!)).toBe(true);
  });

  it('a file in the table of known files must match it: a wrong SHA-256 is refused and nothing is kept', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const entry: KnownFile = { name: 'aidreams260K.bin', size: model!.length, sha256: sha256(model!) };
    const good = await ensureCached({ url: `${base}/aidreams260K.bin`, kind: 'model' }, { dir: join(cache, 'good'), known: [entry] });
    expect(readFileSync(good).equals(model!)).toBe(true);

    const wrong = { ...entry, sha256: '0'.repeat(64) };
    const source = { url: `${base}/aidreams260K.bin`, via: 'from --model-url', kind: 'model' as const };
    const error = await ensureCached(source, { dir: cache, known: [wrong] }).catch((e: Error) => e);
    expect((error as Error).message).toBe(
      `could not download aidreams260K.bin from ${base}/aidreams260K.bin (from --model-url): what arrived is not a usable aidreams260K.bin: its SHA-256 is ${entry.sha256}, not ${wrong.sha256}${HINT}`,
    );
    expect(readdirSync(cache)).toEqual(['good']);
  });

  it('a damaged cached copy of a known file is reported with its path and downloaded again', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const dest = join(cache, 'tokenizer.bin');
    writeFileSync(dest, llamaTokenizer!.subarray(0, 1000)); // as an interrupted copy would leave it
    const written: string[] = [];
    const path = await ensureCached(`${base}/tokenizer.bin`, { dir: cache, progress: { write: (s: string) => written.push(s) } });
    expect(path).toBe(dest);
    expect(readFileSync(dest).equals(llamaTokenizer!)).toBe(true);
    expect(written[0]).toBe(`rama: the cached file ${dest} is damaged (it is 1000 bytes, not ${llamaTokenizer!.length}); downloading it again\n`);
  });

  it('a cached copy of the right size but other bytes fails its SHA-256 and is downloaded again', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const dest = join(cache, 'tokenizer.bin');
    const other = Buffer.from(llamaTokenizer!);
    other[other.length - 1] ^= 1;
    writeFileSync(dest, other);
    const written: string[] = [];
    await ensureCached(`${base}/tokenizer.bin`, { dir: cache, progress: { write: (s: string) => written.push(s) } });
    expect(readFileSync(dest).equals(llamaTokenizer!)).toBe(true);
    expect(written[0]).toMatch(/is damaged \(its SHA-256 is [0-9a-f]{64}, not 50a52ef8/);
  });

  it('a partial file resumes with Range and If-Range; 416 or a changed file starts over', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const url = `${base}/aidreams260K.bin`;
    const dest = join(cache, 'aidreams260K.bin');
    behaviour = 'truncate';
    await expect(download(url, dest)).rejects.toThrow(/the partial file .*aidreams260K\.bin\.part is kept/);
    const kept = statSync(`${dest}.part`).size;
    expect(kept).toBeGreaterThan(0);
    const etag = (JSON.parse(readFileSync(`${dest}.part.json`, 'utf8')) as { validator: string }).validator;
    expect(etag).toMatch(/^"[0-9a-f]{16}-1"$/);

    behaviour = 'ok';
    requests = [];
    await download(url, dest);
    expect(requests).toEqual([{ url: '/files/aidreams260K.bin', range: `bytes=${kept}-`, ifRange: etag }]);
    expect(readFileSync(dest).equals(model!)).toBe(true);
    expect(readdirSync(cache)).toEqual(['aidreams260K.bin']);

    // A partial file as long as the whole: the server answers 416, and the client fetches it all again.
    rmSync(dest);
    writeFileSync(`${dest}.part`, model!);
    writeFileSync(`${dest}.part.json`, JSON.stringify({ url, validator: etag }));
    requests = [];
    await download(url, dest);
    expect(requests.map((r) => r.range)).toEqual([`bytes=${model!.length}-`, undefined]);
    expect(readFileSync(dest).equals(model!)).toBe(true);

    // The file changed on the server since: If-Range no longer matches and the server sends all of it (200).
    rmSync(dest);
    writeFileSync(`${dest}.part`, Buffer.alloc(1000, 7));
    writeFileSync(`${dest}.part.json`, JSON.stringify({ url, validator: etag }));
    version = 2;
    await download(url, dest);
    expect(readFileSync(dest).equals(model!)).toBe(true);
  });

  it('a server that ignores Range (200) gets the file rewritten from the start', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const url = `${base}/aidreams260K.bin`;
    const dest = join(cache, 'aidreams260K.bin');
    writeFileSync(`${dest}.part`, Buffer.alloc(1000, 7));
    writeFileSync(`${dest}.part.json`, JSON.stringify({ url, validator: '"whatever"' }));
    behaviour = 'ignore-range';
    await download(url, dest);
    expect(requests[0].range).toBe('bytes=1000-');
    expect(readFileSync(dest).equals(model!)).toBe(true);
  });

  it('a partial file from another URL, or without a validator, is not resumed', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const url = `${base}/aidreams260K.bin`;
    const dest = join(cache, 'aidreams260K.bin');
    writeFileSync(`${dest}.part`, Buffer.alloc(1000, 7));
    writeFileSync(`${dest}.part.json`, JSON.stringify({ url: `${origin}/elsewhere/aidreams260K.bin`, validator: '"x"' }));
    await download(url, dest);
    expect(requests[0].range).toBeUndefined();
    expect(readFileSync(dest).equals(model!)).toBe(true);

    // A server without ETag or Last-Modified: what arrived cannot be resumed safely, so it is not kept.
    rmSync(dest);
    behaviour = 'no-etag';
    const error = await download(url, dest).catch((e: Error) => e);
    expect((error as Error).message).toMatch(/: the connection (closed|broke \(.+\)) after \d+ of 932124 bytes\. Pass a local/);
    expect(readdirSync(cache)).toEqual([]);
  });

  it('a server that accepts the connection and never answers times out, naming the URL', async () => {
    behaviour = 'stall-headers';
    const error = await download(`${base}/aidreams260K.bin`, join(cache, 'aidreams260K.bin'), { stallMs: 200 }).catch((e: Error) => e);
    expect((error as Error).message).toBe(
      `could not download aidreams260K.bin from ${base}/aidreams260K.bin: the server sent nothing for 0.2 s (RAMA_DOWNLOAD_TIMEOUT sets this limit)${HINT}`,
    );
    expect(readdirSync(cache)).toEqual([]);
  });
});

describe('rama -m stories15M or --model-url: the model downloaded once', () => {
  const urls = () => ['--model-url', `${base}/aidreams260K.bin`, '--tokenizer-url', `${base}/tok512-aidreams.bin`];

  it('downloads both files into RAMA_CACHE, runs them, then uses the cache', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt');
    if (!g) return ctx.skip('skipped: goldens/generate.jsonl not found');
    const args = ['--json', '-p', g.prompt, '-s', String(g.steps), '-r', '0', ...urls()];
    const env = { RAMA_CACHE: cache };
    const first = await runCli(args, { env });
    expect(first.code).toBe(0);
    // stderr is a pipe here: one plain line per file, no bar.
    expect(first.stderr).toBe(
      `rama: downloading aidreams260K.bin (910.3 KiB) from ${base}/aidreams260K.bin\n` + `rama: downloading tok512-aidreams.bin (6.1 KiB) from ${base}/tok512-aidreams.bin\n`,
    );
    expect((jsonLines(first.stdout).pop() as { tokens: number[] }).tokens).toEqual(g.tokens);
    expect(readdirSync(cache).sort()).toEqual(['aidreams260K.bin', 'tok512-aidreams.bin']);
    expect(requests.map((r) => r.url)).toEqual(['/files/aidreams260K.bin', '/files/tok512-aidreams.bin']);

    const second = await runCli(args, { env });
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');
    const [a, b] = [first, second].map((r) => jsonLines(r.stdout).pop() as { tokens: number[]; text: string });
    expect([b.tokens, b.text]).toEqual([a.tokens, a.text]);
    expect(requests).toHaveLength(2);
  });

  it('--model-url without -m downloads the model; -t is used as given', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const r = await runCli(['--json', '-s', '5', '-r', '0', '-t', tok512Path!, '--model-url', `${base}/aidreams260K.bin`], { env: { RAMA_CACHE: cache } });
    expect(r.code).toBe(0);
    expect(requests.map((q) => q.url)).toEqual(['/files/aidreams260K.bin']);
    expect(readdirSync(cache)).toEqual(['aidreams260K.bin']);
  });

  const traversals: [string, string][] = [
    ['/any/x/..%2f..%2f', 'download.bin'],
    ['/any/x/..%2f..%2fevil.bin', 'evil.bin'],
    ['/any/x/..%5c..%5cevil.bin', 'evil.bin'],
    ['/any/%2e%2e%2fevil.bin', 'evil.bin'],
  ];
  for (const [path, name] of traversals) {
    it(`--model-url ...${path} writes ${name} inside the cache folder and nothing outside it`, async (ctx) => {
      if (!haveFiles()) return ctx.skip(skipMessage);
      // The cache folder does not exist yet, two levels below a folder that is watched.
      const root = join(cache, 'root');
      mkdirSync(root);
      const r = await runCli(['--json', '-s', '3', '-t', tok512Path!, '--model-url', `${origin}${path}`], { env: { RAMA_CACHE: join(root, 'a', 'b') } });
      expect(walk(root)).toEqual([join('a', 'b', name)]);
      expect(r.stderr).toBe(`rama: downloading ${name} (910.3 KiB) from ${origin}${path}\n`);
      expect(r.code).toBe(0);
    });
  }

  it('the wrong file under a known name (stories15M.bin) is refused before it is used', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const env = { RAMA_CACHE: cache, RAMA_MODEL_BASE_URL: base };
    // With a Content-Length, the size gives it away before the download.
    const announced = await runCli(['-m', 'stories15M', '-p', 'hi', '-t', tok512Path!], { env });
    expect(announced.code).toBe(1);
    expect(errorLine(announced.stderr)).toBe(
      `could not download stories15M.bin from ${base}/stories15M.bin (from RAMA_MODEL_BASE_URL): the server announces ${model!.length} bytes, but stories15M.bin has 60816028${HINT}`,
    );
    // Without one, the file is checked once it has arrived.
    behaviour = 'chunked';
    const arrived = await runCli(['-m', 'stories15M', '-p', 'hi', '-t', tok512Path!], { env });
    expect(arrived.code).toBe(1);
    expect(errorLine(arrived.stderr)).toBe(
      `could not download stories15M.bin from ${base}/stories15M.bin (from RAMA_MODEL_BASE_URL): what arrived is not a usable stories15M.bin: it is ${model!.length} bytes, not 60816028${HINT}`,
    );
    expect(readdirSync(cache)).toEqual([]);
  });

  it('a dropped connection keeps the partial file, and the next run resumes it', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const env = { RAMA_CACHE: cache };
    const args = ['--json', '-s', '5', '-r', '0', '-t', tok512Path!, '--model-url', `${base}/aidreams260K.bin`];
    behaviour = 'truncate';
    const bad = await runCli(args, { env });
    expect(bad.code).toBe(1);
    const part = join(cache, 'aidreams260K.bin.part');
    expect(errorLine(bad.stderr)).toMatch(
      new RegExp(`^could not download aidreams260K.bin from ${base}/aidreams260K.bin \\(from --model-url\\): the connection (closed|broke \\(.+\\)) after \\d+ of ${model!.length} bytes; the partial file ${part} is kept, and the next run resumes it${HINT}$`),
    );
    expect(readdirSync(cache).sort()).toEqual(['aidreams260K.bin.part', 'aidreams260K.bin.part.json']);
    const kept = statSync(part).size;

    behaviour = 'ok';
    requests = [];
    const good = await runCli(args, { env });
    expect(good.code).toBe(0);
    expect(good.stderr).toMatch(new RegExp(`^rama: resuming aidreams260K.bin at .* of 910.3 KiB from ${base}/aidreams260K.bin\n$`));
    expect(requests.map((r) => r.range)).toEqual([`bytes=${kept}-`]);
    expect(readFileSync(join(cache, 'aidreams260K.bin')).equals(model!)).toBe(true);
    expect(readdirSync(cache)).toEqual(['aidreams260K.bin']);
  });

  it('a stalled server times out after RAMA_DOWNLOAD_TIMEOUT seconds with a clear error; the partial file is kept', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    behaviour = 'stall';
    const r = await runCli(['-p', 'hi', '-t', tok512Path!, '--model-url', `${base}/aidreams260K.bin`], {
      // 2 s: ample for the first half to arrive on a loaded machine, then the server falls silent.
      env: { RAMA_CACHE: cache, RAMA_DOWNLOAD_TIMEOUT: '2' },
      timeoutMs: 60_000, // far beyond 2 s: a hang is killed and fails the test
    });
    expect(r.code).toBe(1);
    expect(errorLine(r.stderr)).toMatch(
      new RegExp(
        `^could not download aidreams260K.bin from ${base}/aidreams260K.bin \\(from --model-url\\): the server sent nothing for 2 s \\(RAMA_DOWNLOAD_TIMEOUT sets this limit\\) after \\d+ of ${model!.length} bytes; the partial file .* is kept`,
      ),
    );
    expect(existsSync(join(cache, 'aidreams260K.bin.part'))).toBe(true);
  });

  it('RAMA_DOWNLOAD_TIMEOUT must be a number of seconds > 0: exit 2', async () => {
    const r = await runCli(['-m', 'stories15M', '-p', 'hi'], { env: { RAMA_CACHE: cache, RAMA_DOWNLOAD_TIMEOUT: '0x10' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('rama: error: invalid value for RAMA_DOWNLOAD_TIMEOUT: "0x10" (expected a number > 0)\n');
  });

  it('an HTML page (Content-Type text/html) is an error naming the URL and the flag; nothing is cached', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    behaviour = 'html';
    const r = await runCli(['-p', 'hi', ...urls()], { env: { RAMA_CACHE: cache } });
    expect(r.code).toBe(1);
    expect(errorLine(r.stderr)).toBe(
      `could not download aidreams260K.bin from ${base}/aidreams260K.bin (from --model-url): the server sent an HTML page (Content-Type text/html; charset=utf-8), not the file; check the address${HINT}`,
    );
    expect(readdirSync(cache)).toEqual([]);
  });

  it('an HTML page sent as a binary file is recognised too', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    behaviour = 'html-as-binary';
    const r = await runCli(['-p', 'hi', ...urls()], { env: { RAMA_CACHE: cache } });
    expect(r.code).toBe(1);
    expect(errorLine(r.stderr)).toBe(
      `could not download aidreams260K.bin from ${base}/aidreams260K.bin (from --model-url): what arrived is not a usable aidreams260K.bin: it is an HTML page${HINT}`,
    );
    expect(readdirSync(cache)).toEqual([]);
  });

  it('a cached file that is an HTML page or not the right kind of file is reported with its path and downloaded again', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    writeFileSync(join(cache, 'aidreams260K.bin'), HTML);
    writeFileSync(join(cache, 'tok512-aidreams.bin'), model!); // a model where the tokenizer should be
    const r = await runCli(['--json', '-s', '5', '-r', '0', ...urls()], { env: { RAMA_CACHE: cache } });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(
      [
        `rama: the cached file ${join(cache, 'aidreams260K.bin')} is damaged (it is an HTML page); downloading it again`,
        `rama: downloading aidreams260K.bin (910.3 KiB) from ${base}/aidreams260K.bin`,
        `rama: the cached file ${join(cache, 'tok512-aidreams.bin')} is damaged (it does not start with a llama2.c tokenizer header); downloading it again`,
        `rama: downloading tok512-aidreams.bin (6.1 KiB) from ${base}/tok512-aidreams.bin`,
        '',
      ].join('\n'),
    );
    expect(readFileSync(join(cache, 'aidreams260K.bin')).equals(model!)).toBe(true);
    expect(readFileSync(join(cache, 'tok512-aidreams.bin')).equals(tok512!)).toBe(true);
  });

  it('a 404: names the file, the URL and where it came from, the HTTP status, and how to pass -m; exit 1', async () => {
    behaviour = '404';
    const r = await runCli(['-m', 'stories15M', '-p', 'hi'], { env: { RAMA_CACHE: cache, RAMA_MODEL_BASE_URL: base } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toEqual([`rama: error: could not download stories15M.bin from ${base}/stories15M.bin (from RAMA_MODEL_BASE_URL): HTTP 404 Not Found${HINT}`]);
    expect(readdirSync(cache)).toEqual([]);
  });

  it('an unreachable server: the connection error, and how to pass -m; exit 1', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await runCli(['-m', 'stories15M', '-p', 'hi'], { env: { RAMA_CACHE: cache, RAMA_MODEL_BASE_URL: `http://127.0.0.1:${port}` } });
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^rama: error: could not download stories15M.bin from http://127.0.0.1:${port}/stories15M.bin \\(from RAMA_MODEL_BASE_URL\\): .*ECONNREFUSED.*\\. Pass a local model with -m model.bin -t tokenizer.bin$`),
    );
    expect(readdirSync(cache)).toEqual([]);
  });
});
