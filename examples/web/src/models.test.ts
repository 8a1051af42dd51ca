/**
 * End to end: models by picked file, by URL and by `hf:` name in the built
 * page, in headless Chromium. A GGUF fixture (it carries its own tokenizer)
 * is served by a local static server and by @rama/testkit's fake Hub (another
 * origin: CORS); each way must generate the greedy token ids that Llama.load
 * of the same file gives in Node. Checked too: the progress bar reaches 100%,
 * a reload loads from the browser's cache without a request for the file,
 * "Clear cache" makes it download again, and bad input (404s, bytes that are
 * not a model, a checksum mismatch, offline and not cached, a .bin without its
 * tokenizer) shows a clear error.
 */
import { readFileSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'vite';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { Llama } from '@rama/llama';
import { isCI, missingMessage, sharedFile, startFakeHub, type FakeHub } from '@rama/testkit';
// @rama/llama's own (unpublished) gguf-split writer for its tests: the splits are made from the fixture here.
import { encodeGGUF, readGGUFContents, splitGGUF } from '../../../packages/llama/src/test-gguf.js';
import { CHROMIUM, launchChromium, servePage } from './test-support.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = 'aidreams260K-f32.gguf';
const OTHER = 'stories260K-q8_0.gguf';
const SPLIT = 'aidreams260K-f32-split';
const fixturePath = sharedFile(`gguf/${FIXTURE}`);
const otherPath = sharedFile(`gguf/${OTHER}`);
const PROMPT = 'Once upon a time';
const STEPS = 40;

const missing = !fixturePath ? `gguf/${FIXTURE}` : !otherPath ? `gguf/${OTHER}` : undefined;
if (!existsSync(CHROMIUM) && isCI()) throw new Error(`no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`);
const skipReason = missing ? missingMessage(missing) : !existsSync(CHROMIUM) ? `skipped: no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)` : undefined;

/** Paths the page's server was asked for, in order. */
const served: string[] = [];

interface Run {
  state: string | null;
  status: string | null;
  ids: number[] | undefined;
  /** #model-info's data-source: file, network or cache. */
  source: string | undefined;
  /** Every text #status showed, and the largest fraction the progress bar showed. */
  statuses: string[];
  progress: number;
  cacheCount: string | null;
  logs: string[];
}

describe('web example: GGUF models by file, URL and hf: name, cached in the browser', () => {
  let dist = '';
  let server: Server | undefined;
  let hub: FakeHub | undefined;
  let browser: Browser | undefined;
  let origin = '';
  let expected: number[] = [];
  let splits: (readonly [string, Uint8Array])[] = [];
  const garbage = new Uint8Array(4096).map((_, i) => (i * 131 + 7) & 0xff);

  beforeAll(async () => {
    if (skipReason) return;
    const bytes = new Uint8Array(readFileSync(fixturePath!));
    // The reference: the same file, greedy, in Node.
    const llama = await Llama.load({ model: fixturePath! });
    try {
      for await (const t of llama.generate(PROMPT, { steps: STEPS, temperature: 0 })) if (!t.prompt) expected.push(t.id);
    } finally {
      llama.dispose();
    }
    dist = mkdtempSync(join(tmpdir(), 'rama-web-models-'));
    await build({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'warn', build: { outDir: dist, emptyOutDir: true } });
    // The fixture as a 3-file gguf-split model.
    const whole = await readGGUFContents(bytes);
    const n = whole.tensors.length;
    splits = splitGGUF(whole, [1, n >> 1, n - 1 - (n >> 1)]).map((c, i) => [`${SPLIT}-0000${i + 1}-of-00003.gguf`, encodeGGUF(c)] as const);
    server = await servePage(dist, { [`/models/${FIXTURE}`]: bytes, '/models/garbage.gguf': garbage, ...Object.fromEntries(splits.map(([f, b]) => [`/models/${f}`, b])) }, { onRequest: (path) => served.push(path) });
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    hub = await startFakeHub({
      'test/tiny': { files: { [FIXTURE]: bytes, [OTHER]: new Uint8Array(readFileSync(otherPath!)) } },
      'test/split': { files: Object.fromEntries(splits) },
    });
    browser = await launchChromium();
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await hub?.close();
    if (server) await new Promise((r) => server!.close(r));
    if (dist) rmSync(dist, { recursive: true, force: true });
  });

  /** A page in `context` (whose Cache API persists across its pages and reloads), recording #status texts and the progress bar. */
  async function open(context: BrowserContext, query: Record<string, string>): Promise<{ page: Page; logs: string[] }> {
    const page = await context.newPage();
    const logs: string[] = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    await page.addInitScript(() => {
      const w = window as unknown as { statuses: string[]; progress: number };
      w.statuses = [];
      w.progress = 0;
      addEventListener('DOMContentLoaded', () => {
        const status = document.getElementById('status')!;
        new MutationObserver(() => w.statuses.push(status.textContent ?? '')).observe(status, { childList: true, characterData: true, subtree: true });
        const bar = document.getElementById('progress') as HTMLProgressElement;
        new MutationObserver(() => {
          if (bar.hasAttribute('value') && bar.max > 0) w.progress = Math.max(w.progress, bar.value / bar.max);
        }).observe(bar, { attributes: true });
      });
    });
    const q = new URLSearchParams({ prompt: PROMPT, steps: String(STEPS), temperature: '0', backend: 'cpu', ...query });
    await page.goto(`${origin}/?${q}`);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    return { page, logs };
  }

  /** Presses Generate and waits for the end. */
  async function generate(page: Page, logs: string[]): Promise<Run> {
    await page.evaluate(() => {
      const w = window as unknown as { statuses: string[]; progress: number };
      w.statuses = [];
      w.progress = 0;
    });
    await page.click('#generate');
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 150_000 });
    // The cache line is refreshed after the load, asynchronously.
    await page.waitForFunction(() => document.getElementById('cache-info')!.dataset.count !== undefined);
    const ids = await page.getAttribute('#output', 'data-ids');
    const seen = await page.evaluate(() => {
      const x = window as unknown as { statuses: string[]; progress: number };
      return { statuses: x.statuses, progress: x.progress };
    });
    return {
      state: await page.getAttribute('#status', 'data-state'),
      status: await page.textContent('#status'),
      ids: ids ? (JSON.parse(ids) as number[]) : undefined,
      source: (await page.getAttribute('#model-info', 'data-source')) ?? undefined,
      ...seen,
      cacheCount: await page.getAttribute('#cache-info', 'data-count'),
      logs,
    };
  }

  const expectDone = (r: Run) => expect(r.state, `${r.status}\n${r.logs.join('\n')}`).toBe('done');
  const mib = (n: number) => (n / 2 ** 20).toFixed(2);
  const fileRequests = (from: number) => served.slice(from).filter((p) => p.startsWith('/models/'));
  const cdnGets = () => hub!.requests.filter((r) => r.method === 'GET' && r.url.startsWith('/cdn/')).length;

  it("the Node reference generates llama.cpp's greedy tokens for the fixture", (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    expect(expected.length).toBeGreaterThan(5);
    // An independent check of the reference itself, when llama.cpp's output for the fixture is there.
    const refs = sharedFile(`gguf/refs/${FIXTURE.replace(/\.gguf$/, '')}.jsonl`);
    if (!refs) return;
    const line = readFileSync(refs, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { prompt: string; gen_ids: number[] }).find((l) => l.prompt === PROMPT);
    expect(line, `${refs} has the prompt ${PROMPT}`).toBeDefined();
    expect(expected).toEqual(line!.gen_ids.slice(0, expected.length));
  });

  it(`picked file: ${FIXTURE} needs no tokenizer and gives Node's greedy ids, downloading nothing`, async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const context = await browser!.newContext();
    try {
      const { page, logs } = await open(context, {});
      await page.setInputFiles('#model-file', fixturePath!);
      const before = served.length;
      const r = await generate(page, logs);
      expectDone(r);
      expect(r.ids).toEqual(expected);
      expect(r.source).toBe('file');
      expect(fileRequests(before)).toEqual([]);
      expect(r.cacheCount).toBe('0');
    } finally {
      await context.close();
    }
  }, 240_000);

  it(`picked file on WebGPU: Node's greedy ids`, async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const context = await browser!.newContext();
    try {
      const { page, logs } = await open(context, { backend: 'webgpu' });
      await page.setInputFiles('#model-file', fixturePath!);
      const r = await generate(page, logs);
      expectDone(r);
      expect(await page.textContent('#backend')).toBe('webgpu');
      expect(r.ids).toEqual(expected);
    } finally {
      await context.close();
    }
  }, 240_000);

  it('by URL: progress to 100%, Node\'s ids; a reload loads from the cache with no request; Clear cache downloads again', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const context = await browser!.newContext();
    try {
      const { page, logs } = await open(context, { model: `/models/${FIXTURE}` });
      let before = served.length;
      const first = await generate(page, logs);
      expectDone(first);
      expect(first.ids).toEqual(expected);
      expect(first.source).toBe('network');
      expect(fileRequests(before)).toEqual([`/models/${FIXTURE}`]);
      const size = statSync(fixturePath!).size;
      expect(first.progress).toBe(1);
      expect(first.statuses).toContain(`Downloading ${FIXTURE}: ${mib(size)} MiB of ${mib(size)} MiB (100%)`);
      expect(first.cacheCount).toBe('1');
      expect(await page.textContent('#model-info')).toMatch(/downloaded/);

      // A reload forgets the loaded model; the file comes from the Cache API.
      await page.reload();
      before = served.length;
      const second = await generate(page, logs);
      expectDone(second);
      expect(second.ids).toEqual(expected);
      expect(second.source).toBe('cache');
      expect(fileRequests(before), 'no request for the file').toEqual([]);
      expect(second.statuses).toContain(`Found ${FIXTURE} in the browser's cache.`);
      expect(await page.textContent('#model-info')).toMatch(/from the browser's cache/);

      // Clear cache, then the same load downloads it again.
      await page.reload();
      await page.waitForSelector('#cache-info[data-count="1"]');
      await page.click('#clear-cache');
      await page.waitForSelector('#cache-info[data-count="0"]');
      expect(await page.textContent('#status')).toBe("Removed 1 file from the browser's cache.");
      before = served.length;
      const third = await generate(page, logs);
      expectDone(third);
      expect(third.ids).toEqual(expected);
      expect(third.source).toBe('network');
      expect(fileRequests(before)).toEqual([`/models/${FIXTURE}`]);
    } finally {
      await context.close();
    }
  }, 300_000);

  it(`by hf: name from the fake Hub (another origin, CORS): Node's ids, cached across reloads, downloaded again after Clear cache`, async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const context = await browser!.newContext();
    try {
      const { page, logs } = await open(context, { model: `hf:test/tiny/${FIXTURE}`, endpoint: hub!.endpoint });
      const cdnBefore = cdnGets();
      const first = await generate(page, logs);
      expectDone(first);
      expect(first.ids).toEqual(expected);
      expect(first.source).toBe('network');
      expect(first.progress).toBe(1);
      const size = statSync(fixturePath!).size;
      expect(first.statuses).toContain(`Downloading ${FIXTURE}: ${mib(size)} MiB of ${mib(size)} MiB (100%)`);
      expect(cdnGets() - cdnBefore).toBe(1);

      await page.reload();
      const requestsBefore = hub!.requests.length;
      const second = await generate(page, logs);
      expectDone(second);
      expect(second.ids).toEqual(expected);
      expect(second.source).toBe('cache');
      expect(hub!.requests.slice(requestsBefore), 'no request to the Hub').toEqual([]);

      // The same cached file loaded in the page itself (no worker).
      await page.reload();
      await page.selectOption('#engine', 'page');
      const inPage = await generate(page, logs);
      expectDone(inPage);
      expect(inPage.ids).toEqual(expected);
      expect(inPage.source).toBe('cache');
      expect(await page.textContent('#device')).toMatch(/in the page$/);
      expect(hub!.requests.slice(requestsBefore), 'no request to the Hub').toEqual([]);

      await page.click('#clear-cache');
      await page.waitForSelector('#cache-info[data-count="0"]');
      await page.reload();
      const third = await generate(page, logs);
      expectDone(third);
      expect(third.ids).toEqual(expected);
      expect(third.source).toBe('network');
      expect(cdnGets() - cdnBefore).toBe(2);
    } finally {
      await context.close();
    }
  }, 300_000);

  it('a split GGUF by hf: name (all parts cached, the worker reads them by name) and by URL (loaded in the page): Node\'s ids', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const context = await browser!.newContext();
    try {
      const first = `${SPLIT}-00001-of-00003.gguf`;
      const { page, logs } = await open(context, { model: `hf:test/split/${first}`, endpoint: hub!.endpoint });
      const cdnBefore = cdnGets();
      const r = await generate(page, logs);
      expectDone(r);
      expect(r.ids).toEqual(expected);
      expect(await page.textContent('#device')).toMatch(/in a Web Worker$/);
      expect(r.cacheCount).toBe('3');
      expect(cdnGets() - cdnBefore, 'each part downloaded once').toBe(3);
      for (const [f] of splits) expect(r.statuses.some((t) => t.startsWith(`Downloading ${f}:`)), f).toBe(true);

      await page.reload();
      const requestsBefore = hub!.requests.length;
      const again = await generate(page, logs);
      expectDone(again);
      expect(again.ids).toEqual(expected);
      expect(again.source).toBe('cache');
      expect(hub!.requests.slice(requestsBefore), 'no request to the Hub').toEqual([]);

      await page.goto(`${origin}/?${new URLSearchParams({ prompt: PROMPT, steps: String(STEPS), temperature: '0', backend: 'cpu', model: `/models/${first}` })}`);
      const before = served.length;
      const byUrl = await generate(page, logs);
      expectDone(byUrl);
      expect(byUrl.ids).toEqual(expected);
      expect(await page.textContent('#device')).toMatch(/in the page$/);
      expect(await page.textContent('#note')).toMatch(/A split GGUF by URL loads in this page/);
      expect(fileRequests(before).sort()).toEqual(splits.map(([f]) => `/models/${f}`).sort());
    } finally {
      await context.close();
    }
  }, 300_000);

  it('Stop during a download aborts it, and nothing is cached', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const context = await browser!.newContext();
    hub!.cdn = 'stall';
    try {
      const { page } = await open(context, { model: `hf:test/tiny/${OTHER}`, endpoint: hub!.endpoint });
      await page.click('#generate');
      await page.waitForFunction(() => /^Downloading /.test(document.getElementById('status')!.textContent ?? ''));
      await page.click('#stop');
      await page.waitForSelector('#status[data-state="idle"]');
      expect(await page.textContent('#status')).toBe(`Stopped: download of hf:test/tiny/${OTHER} aborted.`);
      await page.waitForSelector('#cache-info[data-count="0"]');
    } finally {
      hub!.cdn = 'ok';
      await context.close();
    }
  }, 240_000);

  it('bad input shows a clear error: 404 names, a 404 URL, bytes that are not a model, a checksum mismatch, offline, a .bin without tokenizer', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const context = await browser!.newContext();
    try {
      const attempt = async (query: Record<string, string>) => {
        const { page, logs } = await open(context, { endpoint: hub!.endpoint, ...query });
        try {
          const r = await generate(page, logs);
          expect(r.state, r.status ?? '').toBe('error');
          return r;
        } finally {
          await page.close();
        }
      };
      let r = await attempt({ model: 'hf:test/tiny/missing.gguf' });
      expect(r.status).toMatch(/^Error: could not download hf:test\/tiny\/missing\.gguf from http:\/\/127\.0\.0\.1:\d+\/.*the repository test\/tiny has no file missing\.gguf at revision main/);
      r = await attempt({ model: 'hf:nobody/none/model.gguf' });
      expect(r.status).toMatch(/could not download hf:nobody\/none\/model\.gguf .*HTTP 404.*the repository nobody\/none does not exist/);
      r = await attempt({ model: '/models/missing.gguf' });
      expect(r.status).toMatch(/could not download http:\/\/127\.0\.0\.1:\d+\/models\/missing\.gguf.*404/);

      // Bytes that are not a GGUF: the loader's FormatError names the file, and the page drops it from the cache.
      r = await attempt({ model: '/models/garbage.gguf' });
      expect(r.status).toMatch(/garbage\.gguf.*removed http:\/\/127\.0\.0\.1:\d+\/models\/garbage\.gguf from the browser's cache/);
      expect(r.cacheCount).toBe('0');

      // The Hub's SHA-256 is checked: other bytes are refused and not cached.
      hub!.cdn = 'wrong-bytes';
      try {
        r = await attempt({ model: `hf:test/tiny/${OTHER}` });
      } finally {
        hub!.cdn = 'ok';
      }
      expect(r.status).toMatch(new RegExp(`could not download hf:test/tiny/${OTHER.replace(/\./g, '\\.')} .*SHA-256 is [0-9a-f]{64}, not [0-9a-f]{64}`));
      expect(r.cacheCount).toBe('0');

      // Offline and not cached: no request, and the message says so.
      const requestsBefore = hub!.requests.length;
      r = await attempt({ model: `hf:test/tiny/${OTHER}`, offline: '1' });
      expect(r.status).toMatch(/not in the browser's cache and offline mode is on/);
      expect(hub!.requests.length).toBe(requestsBefore);

      // A llama2.c checkpoint needs its tokenizer: said before anything is downloaded.
      const before = served.length;
      r = await attempt({ model: '/models/stories15M.bin' });
      expect(r.status).toMatch(/stories15M\.bin looks like a llama2\.c checkpoint \(\.bin\), which needs its tokenizer/);
      expect(fileRequests(before)).toEqual([]);
    } finally {
      await context.close();
    }
  }, 300_000);
});
