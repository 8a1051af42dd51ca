/**
 * End to end: builds the page with Vite, serves it (with COOP/COEP) and the
 * shared aidreams260K model from a local HTTP server, runs it in headless
 * Chromium (WebGPU on SwiftShader), and checks the greedy output against
 * llama2.c's golden.
 */
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build, createServer as createViteServer, type Plugin, type ViteDevServer } from 'vite';
import { chromium, type Browser } from 'playwright-core';
import { generateGoldens, isCI, missingMessage, sharedFile } from '@rama/testkit';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const MODEL = 'models/aidreams260K.bin';
const TOKENIZER = 'models/tok512-aidreams.bin';
const GOLDEN = 'aidreams-greedy-bos';

const modelPath = sharedFile(MODEL);
const tokenizerPath = sharedFile(TOKENIZER);
const golden = generateGoldens().find((g) => g.id === GOLDEN);
const missing = !modelPath ? MODEL : !tokenizerPath ? TOKENIZER : !golden ? 'goldens/generate.jsonl' : undefined;
if (!existsSync(CHROMIUM) && isCI()) throw new Error(`no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`);
const skipReason = missing ? missingMessage(missing) : !existsSync(CHROMIUM) ? `skipped: no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)` : undefined;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
};

/** A static server for the built page (COOP/COEP, like vite's) and the two model files. */
function serve(dist: string, files: Record<string, string>): Promise<Server> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    let file: string | undefined = files[path];
    if (!file) {
      const p = normalize(join(dist, path === '/' ? 'index.html' : path));
      if (p.startsWith(dist + sep) && existsSync(p) && statSync(p).isFile()) file = p;
    }
    if (!file) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, {
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': statSync(file).size,
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok(server));
  });
}

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
  note: string | null;
  tps: number;
  logs: string[];
}

describe('web example in headless Chromium', () => {
  let dist = '';
  let server: Server | undefined;
  let dev: ViteDevServer | undefined;
  let browser: Browser | undefined;
  let files: Record<string, string> = {};

  beforeAll(async () => {
    if (skipReason) return;
    files = { [`/${MODEL}`]: modelPath!, [`/${TOKENIZER}`]: tokenizerPath! };
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // WebGPU on SwiftShader (NOTES.md): no Vulkan/ANGLE flags, they hang the GPU process here.
      args: ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await dev?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (dist) rmSync(dist, { recursive: true, force: true });
  });

  /** The production build (vite build), served by a plain static server. */
  async function built(): Promise<string> {
    if (!server) {
      dist = mkdtempSync(join(tmpdir(), 'rama-web-'));
      await build({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'warn', build: { outDir: dist, emptyOutDir: true } });
      server = await serve(dist, files);
    }
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Opens the page with the golden's settings, presses Generate and waits for the end. */
  async function generate(origin: string, opts: { screenshot?: string; noWebGpu?: boolean; backend?: string } = {}): Promise<Opened> {
    const page = await browser!.newPage({ viewport: { width: 1100, height: 900 } });
    const logs: string[] = [];
    page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
    try {
      if (opts.noWebGpu) {
        // A browser without WebGPU: navigator.gpu is undefined.
        await page.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
      }
      const g = golden!;
      const q = new URLSearchParams({ model: `/${MODEL}`, tokenizer: `/${TOKENIZER}`, prompt: g.prompt, steps: String(g.steps), temperature: String(g.temperature) });
      if (opts.backend) q.set('backend', opts.backend);
      await page.goto(`${origin}/?${q}`);
      expect(await page.evaluate(() => crossOriginIsolated), 'COOP/COEP make the page cross-origin isolated').toBe(true);
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
        note: (await page.isVisible('#note')) ? await page.textContent('#note') : null,
        tps: Number(await page.textContent('#tps')),
        logs,
      };
    } finally {
      await page.close();
    }
  }

  const expectDone = (r: Opened) => expect(r.state, `${r.status}\n${r.logs.join('\n')}`).toBe('done');

  it(`built page: ${GOLDEN} exactly, on WebGPU`, async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const r = await generate(await built(), { screenshot: join(root, 'test-results', 'web.png') });
    expectDone(r);
    expect(r.output).toBe(golden!.text);
    expect(r.backend, r.note ?? '').toBe('webgpu');
    expect(r.note).toBeNull();
    expect(r.tps).toBeGreaterThan(0);
  }, 180_000);

  it('built page: falls back to the CPU with a note when the browser has no WebGPU', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const r = await generate(await built(), { noWebGpu: true, screenshot: join(root, 'test-results', 'web-cpu-fallback.png') });
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
