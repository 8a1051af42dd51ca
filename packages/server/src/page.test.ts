/**
 * The page at / in headless Chromium (Debian's, when installed): typing a
 * prompt streams /gen into the page, with and without an API key.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Llama } from '@rama/llama';
import { serve, type ServerHandle } from './index.js';
import { loadModel, modelPaths } from './testing.js';

const CHROMIUM = '/usr/bin/chromium';
/** Where the screenshot goes (test-results/ is ignored by git). */
const SHOT = fileURLToPath(new URL('../test-results/page.png', import.meta.url));

describe.skipIf(!modelPaths() || !existsSync(CHROMIUM))('the page', () => {
  let llama: Llama;
  let server: ServerHandle;
  beforeAll(async () => {
    llama = await loadModel(2);
    server = await serve(llama, { parallel: 1, apiKey: 'k' });
  });
  afterAll(async () => {
    await server?.close();
    llama?.dispose();
  });

  it('streams a greedy completion into the page', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${server.url}/`);
      await page.fill('#prompt', 'I dreamed of');
      await page.fill('#temperature', '0');
      await page.fill('#steps', '40');
      await page.click('#go');
      await page.waitForFunction(() => document.getElementById('stats')!.textContent!.startsWith('Error'));
      expect(await page.textContent('#stats')).toMatch(/API key/);
      await page.fill('#key', 'k');
      await page.click('#go');
      await page.waitForFunction(() => document.getElementById('stats')!.textContent!.includes('tokens/s'));
      const want = await llama.generate('I dreamed of', { temperature: 0, steps: 40, echo: false }).text();
      expect(await page.textContent('#out')).toBe(`I dreamed of${want}`);
      expect(await page.textContent('#stats')).toMatch(/^\d+ tokens, [\d.]+ tokens\/s \(steps\)$/);
      expect(errors).toEqual([]);
      // A screenshot of the page with its streamed answer, to look at.
      mkdirSync(fileURLToPath(new URL('../test-results/', import.meta.url)), { recursive: true });
      await page.setViewportSize({ width: 900, height: 600 });
      await page.screenshot({ path: SHOT, fullPage: true });
      const png = readFileSync(SHOT);
      expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      expect(png.length).toBeGreaterThan(2000);
      console.log(`page.test.ts: screenshot at ${SHOT} (${png.length} bytes)`);
    } finally {
      await browser.close();
    }
  });
});
