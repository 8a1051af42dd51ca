/**
 * End to end: builds the page with Vite, serves it (with COOP/COEP) and the
 * shared aidreams260K model from a local HTTP server, runs it in headless
 * Chromium (WebGPU on SwiftShader), and checks the greedy output against
 * llama2.c's golden: in the engine's Web Worker (WebGPU and CPU) and in the
 * page; that the page keeps running timers while the worker generates, that
 * Stop aborts; and how it runs where the server sends no COOP/COEP, or a
 * Content Security Policy that blocks workers.
 */
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, createServer as createViteServer, defaultClientConditions, type Plugin, type ViteDevServer } from 'vite';
import { chromium, type Browser } from 'playwright-core';
import { generateGoldens, isCI, missingMessage, sharedFile } from '@rama/testkit';
import { CHROMIUM, launchChromium, servePage, type ServeOptions } from './test-support.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = 'models/aidreams260K.bin';
const TOKENIZER = 'models/tok512-aidreams.bin';
const GOLDEN = 'aidreams-greedy-bos';

const modelPath = sharedFile(MODEL);
const tokenizerPath = sharedFile(TOKENIZER);
const golden = generateGoldens().find((g) => g.id === GOLDEN);
const missing = !modelPath ? MODEL : !tokenizerPath ? TOKENIZER : !golden ? 'goldens/generate.jsonl' : undefined;
if (!existsSync(CHROMIUM) && isCI()) throw new Error(`no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`);
const skipReason = missing ? missingMessage(missing) : !existsSync(CHROMIUM) ? `skipped: no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)` : undefined;

/** Every path the test servers were asked for. */
const served: string[] = [];

/** A static server for the built page and the two model files. */
/** Serves the model files from a Vite dev server. */
const modelFiles = (files: Record<string, string>): Plugin => ({
  name: 'rama-test-models',
  configureServer(server) {
    server.middlewares.use((req, res, next) => {
      const file = files[new URL(req.url ?? '/', 'http://x').pathname];
      if (!file) return next();
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': statSync(file).size, 'Cross-Origin-Resource-Policy': 'same-origin' });
      createReadStream(file).pipe(res);
    });
  },
});

interface Opened {
  state: string | null;
  status: string | null;
  output: string | null;
  backend: string | null;
  device: string | null;
  note: string | null;
  tps: number;
  logs: string[];
  /** Timer ticks on the page while it generated, and the longest gap between two (ms). */
  ticks: number;
  longestGap: number;
  /** Every text #status showed, in order. */
  statuses: string[];
}

interface GenerateOptions {
  screenshot?: string;
  noWebGpu?: boolean;
  backend?: string;
  engine?: 'worker' | 'page';
  /** A prebuilt engine worker script's URL (?worker=). */
  worker?: string;
  /** Whether the server sends COOP/COEP (so the page must be cross-origin isolated). */
  isolated?: boolean;
  /** Press Stop once this many characters of sampled text are shown. */
  stopAfterChars?: number;
  /** Another browser to open the page in. */
  browser?: Browser;
  /** Pick the model and tokenizer with the file inputs instead of URLs. */
  pickFiles?: boolean;
}

describe('web example in headless Chromium', () => {
  let dist = '';
  const servers = new Map<string, Server>();
  let dev: ViteDevServer | undefined;
  let browser: Browser | undefined;
  let files: Record<string, string> = {};

  beforeAll(async () => {
    if (skipReason) return;
    files = { [`/${MODEL}`]: modelPath!, [`/${TOKENIZER}`]: tokenizerPath! };
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await dev?.close();
    for (const server of servers.values()) await new Promise((r) => server.close(r));
    if (dist) rmSync(dist, { recursive: true, force: true });
  });

  /** The production build (vite build, once), served by a plain static server with these headers. */
  async function built(headers: Omit<ServeOptions, 'onRequest'> = {}): Promise<string> {
    if (!dist) {
      dist = mkdtempSync(join(tmpdir(), 'rama-web-'));
      await build({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'warn', build: { outDir: dist, emptyOutDir: true } });
    }
    const key = JSON.stringify(headers);
    let server = servers.get(key);
    if (!server) {
      server = await servePage(dist, files, { ...headers, onRequest: (path) => served.push(path) });
      servers.set(key, server);
    }
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Opens the page with the golden's settings, presses Generate and waits for the end. */
  async function generate(origin: string, opts: GenerateOptions = {}): Promise<Opened> {
    const page = await (opts.browser ?? browser!).newPage({ viewport: { width: 1100, height: 900 } });
    const logs: string[] = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    try {
      if (opts.noWebGpu) {
        // A browser without WebGPU: navigator.gpu is undefined.
        await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
      }
      // A timer chain on the page: while the model runs in a worker it keeps ticking.
      await page.addInitScript(() => {
        const w = window as unknown as { ticks: number[]; statuses: string[] };
        w.ticks = [];
        w.statuses = [];
        addEventListener('DOMContentLoaded', () => {
          const status = document.getElementById('status')!;
          new MutationObserver(() => w.statuses.push(status.textContent ?? '')).observe(status, { childList: true, characterData: true, subtree: true });
        });
        const tick = () => {
          if (document.getElementById('status')?.dataset.state === 'generating') w.ticks.push(performance.now());
          setTimeout(tick, 0);
        };
        setTimeout(tick, 0);
      });
      if (opts.stopAfterChars) {
        // Pressed from the page itself, as soon as the text is there: a poll from the test could come after the end.
        await page.addInitScript((n: number) => {
          addEventListener('DOMContentLoaded', () => {
            const out = document.getElementById('output')!;
            new MutationObserver(() => {
              const sampled = Array.from(out.childNodes).filter((c) => c.nodeType === Node.TEXT_NODE).map((c) => c.textContent).join('');
              if (sampled.length >= n) (document.getElementById('stop') as HTMLButtonElement).click();
            }).observe(out, { childList: true, characterData: true, subtree: true });
          });
        }, opts.stopAfterChars);
      }
      const g = golden!;
      const q = new URLSearchParams({ prompt: g.prompt, steps: String(g.steps), temperature: String(g.temperature) });
      if (!opts.pickFiles) {
        q.set('model', `/${MODEL}`);
        q.set('tokenizer', `/${TOKENIZER}`);
      }
      if (opts.backend) q.set('backend', opts.backend);
      if (opts.engine) q.set('engine', opts.engine);
      if (opts.worker) q.set('worker', opts.worker);
      await page.goto(`${origin}/?${q}`);
      const isolated = opts.isolated ?? true;
      expect(await page.evaluate(() => crossOriginIsolated), `COOP/COEP ${isolated ? 'make' : 'absent: not'} cross-origin isolated`).toBe(isolated);
      if (opts.pickFiles) {
        await page.setInputFiles('#model-file', modelPath!);
        await page.setInputFiles('#tokenizer-file', tokenizerPath!);
      }
      await page.click('#generate');
      await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 150_000 });
      if (opts.screenshot) {
        mkdirSync(dirname(opts.screenshot), { recursive: true });
        await page.screenshot({ path: opts.screenshot, fullPage: true });
      }
      return {
        state: await page.getAttribute('#status', 'data-state'),
        status: await page.textContent('#status'),
        output: await page.textContent('#output'),
        backend: await page.textContent('#backend'),
        device: await page.textContent('#device'),
        note: (await page.isVisible('#note')) ? await page.textContent('#note') : null,
        tps: Number(await page.textContent('#tps')),
        logs,
        ...(await page.evaluate(() => {
          const w = window as unknown as { ticks: number[]; statuses: string[] };
          const t = w.ticks;
          let longestGap = 0;
          for (let i = 1; i < t.length; i++) longestGap = Math.max(longestGap, t[i] - t[i - 1]);
          return { ticks: t.length, longestGap, statuses: w.statuses };
        })),
      };
    } finally {
      await page.close();
    }
  }

  const expectDone = (r: Opened) => expect(r.state, `${r.status}\n${r.logs.join('\n')}`).toBe('done');

  it(`built page: ${GOLDEN} exactly, on WebGPU in the engine's Web Worker`, async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const r = await generate(await built(), { screenshot: join(root, 'test-results', 'web.png') });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.backend, r.note ?? '').toBe('webgpu');
    expect(r.device).toMatch(/in a Web Worker$/);
    expect(r.note).toBeNull();
    expect(r.tps).toBeGreaterThan(0);
  }, 180_000);

  it(`built page: ${GOLDEN} exactly, on the CPU's threads in the worker, the page's timers ticking meanwhile`, async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const r = await generate(await built(), { backend: 'cpu' });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.backend).toBe('cpu');
    // Cross-origin isolated: the worker's CPU backend runs its own threads (every core there is).
    const cores = Math.min(2, availableParallelism());
    expect(r.device).toMatch(new RegExp(`WebAssembly SIMD, (up to )?${cores} threads?\\b.*in a Web Worker$`));
    expect(r.note).toBeNull();
    // Loading progress: the page downloaded the files into its cache, reporting bytes, then the worker read the model.
    const size = statSync(modelPath!).size;
    const mib = (size / 2 ** 20).toFixed(2);
    expect(r.statuses).toContain(`Downloading ${MODEL.split('/').pop()}: ${mib} MiB of ${mib} MiB (100%)`);
    expect(r.statuses).toContain('Reading the model and uploading the weights…');
    // The page was free while the worker generated: its timer chain kept running (a blocked page runs none).
    expect(r.ticks, r.status ?? '').toBeGreaterThan(5);
    expect(r.longestGap).toBeLessThan(1000);
  }, 180_000);

  it('built page: picked files go to the worker as they are, and give the golden', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const before = served.length;
    const r = await generate(await built(), { backend: 'cpu', pickFiles: true });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.device).toMatch(/in a Web Worker$/);
    expect(served.slice(before).filter((p) => p.startsWith('/models/')), 'nothing downloaded').toEqual([]);
  }, 180_000);

  it('built page: Stop aborts the worker\'s generation', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const r = await generate(await built(), { backend: 'cpu', stopAfterChars: 20 });
    expectDone(r);
    expect(r.status).toMatch(/^Done \(stopped\)/);
    const text = golden!.text;
    expect(r.output!.length).toBeGreaterThanOrEqual(20);
    expect(r.output!.length).toBeLessThan(text.length);
    expect(text.startsWith(r.output!)).toBe(true);
  }, 180_000);

  it('built page without COOP/COEP: the worker runs the CPU backend on one thread and says why (not an error)', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const r = await generate(await built({ isolation: false }), { backend: 'cpu', isolated: false });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.device).toMatch(/1 thread, no SharedArrayBuffer.*in a Web Worker$/);
    expect(r.note).toMatch(/runs on one thread: this page is not cross-origin isolated.*"Cross-Origin-Opener-Policy: same-origin" and "Cross-Origin-Embedder-Policy: require-corp"/);
  }, 180_000);

  it('built page with a CSP that blocks blob: workers: the CPU backend runs on one thread and names worker-src', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'";
    const r = await generate(await built({ csp }), { backend: 'cpu' });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.device).toMatch(/\b1 thread\b.*in a Web Worker$/);
    expect(r.note).toMatch(/runs on one thread: the page's Content Security Policy blocks its worker threads \(blob: URL workers\).*worker-src 'self' blob:/);
  }, 180_000);

  it('built page with a CSP that blocks every worker: the model runs in the page, with a note naming worker-src', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'none'";
    const r = await generate(await built({ csp }), { backend: 'cpu' });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.device).toMatch(/in the page$/);
    expect(r.note).toMatch(/cannot start the engine worker .*Content Security Policy blocks it: worker-src.*Running the model in this page instead/);
  }, 180_000);

  it('built page without \'wasm-unsafe-eval\': the scalar kernels run, and the note names it', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const csp = "default-src 'self'; script-src 'self'; worker-src 'self'";
    const r = await generate(await built({ csp }), { backend: 'cpu' });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.device).toMatch(/TypeScript scalar kernels.*in a Web Worker$/);
    expect(r.note).toMatch(/cannot compile its WebAssembly kernels.*add 'wasm-unsafe-eval' to script-src/);
  }, 180_000);

  it('built page with a prebuilt engine worker script given by URL (one self-contained file)', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const origin = await built();
    // What a page without a bundler gets: the worker script and every dependency in one file, loaded by URL.
    const prebuilt = join(dist, 'prebuilt');
    await build({
      configFile: false,
      root,
      logLevel: 'warn',
      resolve: { conditions: ['@rama/source', ...defaultClientConditions] },
      build: {
        outDir: prebuilt,
        emptyOutDir: true,
        target: 'es2022',
        lib: { entry: join(root, '../../packages/llama/src/worker/thread.ts'), formats: ['es'], fileName: () => 'engine.js' },
        rollupOptions: { external: (id) => id.startsWith('node:') || id === 'webgpu' || id === 'worker_threads', output: { inlineDynamicImports: true } },
      },
    });
    const before = served.length;
    const r = await generate(origin, { backend: 'cpu', worker: '/prebuilt/engine.js' });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.device).toMatch(/in a Web Worker$/);
    const asked = served.slice(before);
    expect(asked).toContain('/prebuilt/engine.js');
    expect(asked.some((p) => /\/assets\/thread-.*\.js$/.test(p)), 'the bundled worker is not started').toBe(false);
  }, 180_000);

  it('built page in a browser without WebGPU: the worker falls back to the CPU, with a note', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    // No --enable-unsafe-webgpu: this Chromium offers no WebGPU adapter, in the page or in workers.
    const plain = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--disable-background-networking', '--disable-component-update', '--no-first-run'] });
    try {
      const r = await generate(await built(), { browser: plain });
      expectDone(r);
      expect(r.output).toBe(golden!.text);
      expect(r.backend).toBe('cpu');
      expect(r.device).toMatch(/in a Web Worker$/);
      expect(r.note).toMatch(/^WebGPU is not available: .*Running on the CPU/);
    } finally {
      await plain.close();
    }
  }, 180_000);

  it('built page, in the page: falls back to the CPU with a note when the browser has no WebGPU', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const r = await generate(await built(), { engine: 'page', noWebGpu: true, screenshot: join(root, 'test-results', 'web-cpu-fallback.png') });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.backend).toBe('cpu');
    expect(r.note).toMatch(/^WebGPU is not available: this browser has no WebGPU .*Running on the CPU/);
    expect(r.tps).toBeGreaterThan(0);
  }, 180_000);

  it(`dev server (vite): ${GOLDEN} exactly, on WebGPU`, async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    dev = await createViteServer({
      root,
      configFile: join(root, 'vite.config.ts'),
      logLevel: 'warn',
      server: { host: '127.0.0.1', port: 0, strictPort: false, hmr: false },
      plugins: [modelFiles(files)],
    });
    await dev.listen();
    const r = await generate(dev.resolvedUrls!.local[0].replace(/\/$/, ''));
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.backend).toBe('webgpu');
  }, 180_000);
});
