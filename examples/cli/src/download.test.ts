/**
 * The default-model download, against a node:http server on 127.0.0.1 that
 * serves the small aidreams260K model and its tokenizer under the default
 * names (stories15M.bin, tokenizer.bin). Nothing here reaches the network.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { generateGoldens, sharedFile } from '@rama/testkit';
import { cacheDir, cachedName, defaultUrls, download, DEFAULT_MODEL_URL, DEFAULT_TOKENIZER_URL } from './download.js';
import { jsonLines, runCli } from './run-cli.js';

const modelPath = sharedFile('models/aidreams260K.bin');
const tokenizerPath = sharedFile('models/tok512-aidreams.bin');
const model = modelPath ? readFileSync(modelPath) : undefined;
const tokenizer = tokenizerPath ? readFileSync(tokenizerPath) : undefined;

/** What the server does for each path; `requests` counts what it was asked. */
type Behaviour = 'ok' | 'truncate' | '404' | 'chunked';
let behaviour: Behaviour = 'ok';
let requests: string[] = [];
let server: Server;
let base = '';

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const name = (req.url ?? '').replace(/^\/files\//, '');
    const body = name === 'stories15M.bin' ? model : name === 'tokenizer.bin' ? tokenizer : undefined;
    if (!body || behaviour === '404') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
      return;
    }
    if (behaviour === 'chunked') {
      // No content-length: the client cannot know the size up front.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(body.subarray(0, 1000));
      setTimeout(() => res.end(body.subarray(1000)), 20);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
    if (behaviour === 'truncate') {
      // Half the promised bytes, then the connection drops.
      res.write(body.subarray(0, body.length >> 1), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/files`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

let cache: string;
beforeEach(() => {
  behaviour = 'ok';
  requests = [];
  cache = mkdtempSync(join(tmpdir(), 'rama-dl-test-'));
  return () => rmSync(cache, { recursive: true, force: true });
});

const haveFiles = () => model !== undefined && tokenizer !== undefined;
const skipMessage = 'skipped: shared models/aidreams260K.bin or models/tok512-aidreams.bin not found (set RAMA_SHARED)';

describe('cache folder and URLs', () => {
  it('RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama', () => {
    expect(cacheDir({ RAMA_CACHE: '/a', XDG_CACHE_HOME: '/b' })).toBe('/a');
    expect(cacheDir({ XDG_CACHE_HOME: '/b' })).toBe(join('/b', 'rama'));
    expect(cacheDir({})).toMatch(/[/\\]\.cache[/\\]rama$/);
  });

  it('the public addresses by default, RAMA_MODEL_BASE_URL, then the flags', () => {
    expect(defaultUrls({}, {})).toEqual({ model: DEFAULT_MODEL_URL, tokenizer: DEFAULT_TOKENIZER_URL });
    expect(DEFAULT_MODEL_URL).toBe('https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin');
    expect(DEFAULT_TOKENIZER_URL).toBe('https://raw.githubusercontent.com/karpathy/llama2.c/master/tokenizer.bin');
    expect(defaultUrls({}, { RAMA_MODEL_BASE_URL: 'http://h/x/' })).toEqual({ model: 'http://h/x/stories15M.bin', tokenizer: 'http://h/x/tokenizer.bin' });
    expect(defaultUrls({ modelUrl: 'http://m/a.bin', tokenizerUrl: 'http://t/b.bin' }, { RAMA_MODEL_BASE_URL: 'http://h' })).toEqual({ model: 'http://m/a.bin', tokenizer: 'http://t/b.bin' });
    expect(cachedName('http://h/x/stories%2015M.bin?download=1')).toBe('stories 15M.bin');
  });
});

describe('download()', () => {
  it('on a terminal: draws a progress bar in place, ending at 100%', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const written: string[] = [];
    const dest = join(cache, 'sub', 'stories15M.bin');
    await download(`${base}/stories15M.bin`, dest, { isTTY: true, write: (s: string) => written.push(s) });
    expect(readFileSync(dest).equals(model!)).toBe(true);
    const all = written.join('');
    expect(all).toContain('\rstories15M.bin [');
    expect(all).toMatch(/100% .*\n$/);
    expect(readdirSync(join(cache, 'sub'))).toEqual(['stories15M.bin']);
  });

  it('elsewhere: one plain line naming the file, its size and the URL', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const written: string[] = [];
    await download(`${base}/tokenizer.bin`, join(cache, 'tokenizer.bin'), { isTTY: false, write: (s: string) => written.push(s) });
    expect(written).toEqual([`rama: downloading tokenizer.bin (6.1 KiB) from ${base}/tokenizer.bin\n`]);
  });

  it('without a content-length: still completes', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    behaviour = 'chunked';
    const dest = join(cache, 'stories15M.bin');
    await download(`${base}/stories15M.bin`, dest, { isTTY: true, write: () => {} });
    expect(readFileSync(dest).equals(model!)).toBe(true);
  });

  it('a connection that drops midway leaves neither the file nor a partial file', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    behaviour = 'truncate';
    const dest = join(cache, 'stories15M.bin');
    const bar: string[] = [];
    const error = await download(`${base}/stories15M.bin`, dest, { isTTY: true, write: (s: string) => bar.push(s) }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(new RegExp(`^could not download stories15M.bin from ${base}/stories15M.bin: .+\\. Pass a local model with -m model.bin -t tokenizer.bin$`));
    expect(bar.join('')).toMatch(/\n$/); // the bar's line is ended before the error is printed
    expect(readdirSync(cache)).toEqual([]);
  });
});

describe('rama without -m: the default model, downloaded once', () => {
  it('downloads both files into RAMA_CACHE, runs them, then uses the cache', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt');
    if (!g) return ctx.skip('skipped: goldens/generate.jsonl not found');
    const args = ['--json', '-p', g.prompt, '-s', String(g.steps), '-r', '0'];
    const env = { RAMA_CACHE: cache, RAMA_MODEL_BASE_URL: base };
    const first = await runCli(args, { env });
    expect(first.code).toBe(0);
    // stderr is a pipe here: one plain line per file, no bar.
    expect(first.stderr).toBe(
      `rama: downloading stories15M.bin (910.3 KiB) from ${base}/stories15M.bin\n` + `rama: downloading tokenizer.bin (6.1 KiB) from ${base}/tokenizer.bin\n`,
    );
    expect((jsonLines(first.stdout).pop() as { tokens: number[] }).tokens).toEqual(g.tokens);
    expect(readdirSync(cache).sort()).toEqual(['stories15M.bin', 'tokenizer.bin']);
    expect(requests).toEqual(['/files/stories15M.bin', '/files/tokenizer.bin']);

    const second = await runCli(args, { env });
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');
    const [a, b] = [first, second].map((r) => jsonLines(r.stdout).pop() as { tokens: number[]; text: string });
    expect([b.tokens, b.text]).toEqual([a.tokens, a.text]);
    expect(requests).toHaveLength(2);
  });

  it('--model-url / --tokenizer-url override the addresses; -t alone still downloads the model', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    const r = await runCli(['--json', '-s', '5', '-r', '0', '-t', tokenizerPath!, '--model-url', `${base}/stories15M.bin`], { env: { RAMA_CACHE: cache } });
    expect(r.code).toBe(0);
    expect(requests).toEqual(['/files/stories15M.bin']);
    expect(readdirSync(cache)).toEqual(['stories15M.bin']);
  });

  it('an interrupted download is never used: a leftover partial file is ignored, and a dropped connection fails cleanly', async (ctx) => {
    if (!haveFiles()) return ctx.skip(skipMessage);
    // A partial file from a killed run sits beside the destination under a temporary name.
    writeFileSync(join(cache, 'stories15M.bin.12345.part'), model!.subarray(0, 100));
    const env = { RAMA_CACHE: cache, RAMA_MODEL_BASE_URL: base };
    behaviour = 'truncate';
    const bad = await runCli(['--json', '-s', '5'], { env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).not.toContain('    at ');
    expect(bad.stderr.trim().split('\n').pop()).toMatch(/^rama: error: could not download stories15M.bin from .+\. Pass a local model with -m model.bin -t tokenizer.bin$/);
    expect(existsSync(join(cache, 'stories15M.bin'))).toBe(false);
    expect(readdirSync(cache)).toEqual(['stories15M.bin.12345.part']);

    behaviour = 'ok';
    const good = await runCli(['--json', '-s', '5', '-r', '0'], { env });
    expect(good.code).toBe(0);
    expect(readFileSync(join(cache, 'stories15M.bin')).equals(model!)).toBe(true);
  });

  it('a 404: names the file, the URL and the HTTP status, and says how to pass -m; exit 1', async () => {
    behaviour = '404';
    const r = await runCli(['-p', 'hi'], { env: { RAMA_CACHE: cache, RAMA_MODEL_BASE_URL: base } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toEqual([`rama: error: could not download stories15M.bin from ${base}/stories15M.bin: HTTP 404 Not Found. Pass a local model with -m model.bin -t tokenizer.bin`]);
    expect(readdirSync(cache)).toEqual([]);
  });

  it('an unreachable server: the connection error, and how to pass -m; exit 1', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const r = await runCli(['-p', 'hi'], { env: { RAMA_CACHE: cache, RAMA_MODEL_BASE_URL: `http://127.0.0.1:${port}` } });
    expect(r.code).toBe(1);
    const lines = r.stderr.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^rama: error: could not download stories15M.bin from http://127.0.0.1:${port}/stories15M.bin: .*ECONNREFUSED.*\\. Pass a local model with -m model.bin -t tokenizer.bin$`),
    );
    expect(readdirSync(cache)).toEqual([]);
  });
});
