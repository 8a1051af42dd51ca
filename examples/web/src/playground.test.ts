/**
 * The playground page end to end: builds it with Vite, serves it (COOP/COEP)
 * with the shared aidreams260K model from a local HTTP server, runs it in
 * headless Chromium on WebGPU (SwiftShader) and on the CPU, and checks that
 * what it shows (exposed as data attributes) is what @rama/llama's `inspect`
 * gives for the same generation in Node: the prompt's token ids, the
 * generated ids, the candidates and their probabilities (also after moving
 * the sliders), the attention weights of the chosen head and the residual
 * norms. Screenshots of the page and of the heatmap are saved under
 * test-results/ and must hold more than background pixels.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from 'vite';
import { type Browser, type Page } from 'playwright-core';
import { isCI, missingMessage, sharedFile } from '@rama/testkit';
import { Llama, samplingDistribution, type GeneratedToken } from '@rama/llama';
import { CHROMIUM, launchChromium, servePage } from './test-support.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = 'models/aidreams260K.bin';
const TOKENIZER = 'models/tok512-aidreams.bin';
const modelPath = sharedFile(MODEL);
const tokenizerPath = sharedFile(TOKENIZER);
if (!existsSync(CHROMIUM) && isCI()) throw new Error(`no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)`);
const skipReason = !modelPath ? missingMessage(MODEL) : !tokenizerPath ? missingMessage(TOKENIZER) : !existsSync(CHROMIUM) ? `skipped: no Chromium at ${CHROMIUM} (set CHROMIUM_PATH)` : undefined;
const results = join(root, 'test-results');

// Greedy, so the page on WebGPU and Node on the CPU generate the same tokens.
const RUN = { prompt: 'I dreamed of', steps: 32, temperature: 0, layer: 3, head: 2, topk: 10 };


/** The built site and the model files, with the headers that make the page cross-origin isolated. */
/** What the page shows, read from its data attributes. */
async function shown(page: Page) {
  return page.evaluate(() => {
    const nums = (s: string | undefined) => JSON.parse(s ?? '[]') as number[];
    const heat = document.getElementById('heatmap')!.dataset;
    return {
      backend: document.getElementById('status')!.dataset.backend,
      promptIds: Array.from(document.querySelectorAll<HTMLElement>('#prompt-tokens .tok')).map((e) => Number(e.dataset.id)),
      outputIds: Array.from(document.querySelectorAll<HTMLElement>('#output .tok[data-index]')).map((e) => Number(e.dataset.id)),
      position: Number(document.getElementById('candidates')!.dataset.position),
      candidates: Array.from(document.querySelectorAll<HTMLElement>('#candidates tbody tr')).map((e) => ({
        id: Number(e.dataset.id), logit: Number(e.dataset.logit), prob: Number(e.dataset.prob), sampled: Number(e.dataset.sampled),
      })),
      heat: { rows: Number(heat.rows), cols: Number(heat.cols), selected: Number(heat.selected), weights: nums(heat.weights) },
      norms: nums(document.getElementById('norms')!.dataset.norms),
      bars: document.querySelectorAll('#norms rect').length,
    };
  });
}

/** Pixels of a PNG (decoded by the browser) that differ from white, and its size. */
async function inkedPixels(page: Page, file: string): Promise<{ width: number; height: number; inked: number }> {
  const b64 = readFileSync(file).toString('base64');
  return page.evaluate(async (data) => {
    const img = new Image();
    img.src = `data:image/png;base64,${data}`;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d')!;
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    let inked = 0;
    for (let i = 0; i < px.length; i += 4) if (Math.abs(px[i] - 255) + Math.abs(px[i + 1] - 255) + Math.abs(px[i + 2] - 255) > 60) inked++;
    return { width: c.width, height: c.height, inked };
  }, b64);
}

const maxAbs = (a: readonly number[], b: readonly number[]) => {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
};

describe('playground page in headless Chromium', () => {
  let browser: Browser | undefined;
  let server: Server | undefined;
  let dist = '';
  let origin = '';
  let llama: Llama | undefined;
  /** The same generation in Node: each sampled token with its logits and inspection. */
  let expected: GeneratedToken[] = [];
  let promptIds: number[] = [];

  beforeAll(async () => {
    if (skipReason) return;
    llama = await Llama.load({ model: modelPath!, tokenizer: tokenizerPath!, backend: 'cpu', threads: 1 });
    promptIds = llama.tokenize(RUN.prompt);
    const gen = llama.generate(RUN.prompt, {
      steps: RUN.steps, temperature: RUN.temperature, seed: 1, logits: true,
      inspect: { attention: [RUN.layer, RUN.head], topK: RUN.topk, residualNorms: true },
    });
    for await (const t of gen) if (t.inspect) expected.push(t);
    dist = mkdtempSync(join(tmpdir(), 'rama-playground-'));
    await build({ root, configFile: join(root, 'vite.config.ts'), logLevel: 'warn', build: { outDir: dist, emptyOutDir: true } });
    server = await servePage(dist, { [`/${MODEL}`]: modelPath!, [`/${TOKENIZER}`]: tokenizerPath! });
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    if (dist) rmSync(dist, { recursive: true, force: true });
    llama?.dispose();
  });

  it('the main page links to it', async (ctx) => {
    if (skipReason) return ctx.skip(skipReason);
    const page = await browser!.newPage();
    try {
      await page.goto(`${origin}/`);
      await page.click('#playground-link');
      await page.waitForSelector('#heatmap');
      expect(new URL(page.url()).pathname).toBe('/playground.html');
    } finally {
      await page.close();
    }
  });

  for (const [backend, tol] of [['webgpu', 1e-4], ['cpu', 1e-9]] as const) {
    it(`${backend}: the candidates, sliders, heatmap and norms shown are the library's`, async (ctx) => {
      if (skipReason) return ctx.skip(skipReason);
      const page = await browser!.newPage({ viewport: { width: 1100, height: 1400 } });
      const logs: string[] = [];
      page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
      try {
        const q = new URLSearchParams({
          model: `/${MODEL}`, tokenizer: `/${TOKENIZER}`, backend, prompt: RUN.prompt, steps: String(RUN.steps), temperature: String(RUN.temperature),
          seed: '1', layer: String(RUN.layer), head: String(RUN.head), topk: String(RUN.topk), autorun: '1',
        });
        await page.goto(`${origin}/playground.html?${q}`);
        await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 150_000 });
        expect(await page.getAttribute('#status', 'data-state'), `${await page.textContent('#status')}\n${logs.join('\n')}`).toBe('done');

        let s = await shown(page);
        expect(s.backend).toBe(backend);
        expect(s.promptIds).toEqual(promptIds);
        expect(s.outputIds).toEqual(expected.map((t) => t.id));
        // the last token is selected
        const last = expected[expected.length - 1];
        const check = (want: GeneratedToken, sliders: { temperature: number; topp: number }) => {
          expect(s.position).toBe(want.inspect!.position);
          expect(s.candidates.map((c) => c.id)).toEqual(want.inspect!.topK!.map((c) => c.id));
          expect(maxAbs(s.candidates.map((c) => c.prob), want.inspect!.topK!.map((c) => c.prob))).toBeLessThan(tol);
          expect(maxAbs(s.candidates.map((c) => c.logit), want.inspect!.topK!.map((c) => c.logit))).toBeLessThan(backend === 'cpu' ? tol : 1e-2);
          const dist = samplingDistribution(want.logits!, sliders);
          expect(maxAbs(s.candidates.map((c) => c.sampled), s.candidates.map((c) => dist[c.id]))).toBeLessThan(backend === 'cpu' ? tol : 1e-3);
          expect(s.heat.weights.length).toBe(want.inspect!.position + 1);
          expect(maxAbs(s.heat.weights, want.inspect!.attention!)).toBeLessThan(tol);
          const rel = s.norms.map((n, l) => n / want.inspect!.residualNorms![l]);
          expect(maxAbs(rel, rel.map(() => 1))).toBeLessThan(tol);
          expect(s.bars).toBe(want.inspect!.residualNorms!.length);
        };
        check(last, { temperature: 0, topp: 0.9 });
        expect(s.heat).toMatchObject({ rows: expected.length, cols: last.inspect!.position + 1, selected: expected.length - 1 });

        // Sliders reshape the distribution from the stored logits.
        await page.evaluate(() => {
          const set = (id: string, v: string) => {
            const input = document.getElementById(id) as HTMLInputElement;
            input.value = v;
            input.dispatchEvent(new Event('input'));
          };
          set('temp-slider', '0.7');
          set('topp-slider', '0.8');
        });
        s = await shown(page);
        check(last, { temperature: 0.7, topp: 0.8 });
        expect(s.candidates.filter((c) => c.sampled > 0).length).toBeGreaterThan(1);

        // Another token, picked in the output.
        await page.click('#output .tok[data-index="2"]');
        s = await shown(page);
        check(expected[2], { temperature: 0.7, topp: 0.8 });
        expect(s.heat.selected).toBe(2);

        mkdirSync(results, { recursive: true });
        const full = join(results, `playground-${backend}.png`);
        const heat = join(results, `playground-heatmap-${backend}.png`);
        await page.screenshot({ path: full, fullPage: true });
        await page.locator('#heatmap').screenshot({ path: heat });
        for (const file of [full, heat]) {
          expect(statSync(file).size).toBeGreaterThan(0);
          const px = await inkedPixels(page, file);
          expect(px.width * px.height).toBeGreaterThan(0);
          // More than a frame: the heatmap's cells (and on the page, its text and charts).
          expect(px.inked, file).toBeGreaterThan(file === heat ? 0.02 * px.width * px.height : 2000);
        }
      } finally {
        await page.close();
      }
    }, 240_000);
  }
});
