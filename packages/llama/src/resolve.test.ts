/**
 * Llama.load with model names: `hf:test/tiny/<fixture>.gguf` from a local
 * imitation of the Hub (@rama/testkit's startFakeHub on 127.0.0.1) loads and
 * generates exactly what the same file loaded from disk generates; a URL
 * works too; a local file whose name looks like a name stays a file.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HubError } from '@rama/hub';
import { missingMessage, sharedFile, startFakeHub, type FakeHub } from '@rama/testkit';
import { Llama } from './llama.js';
import { isModelName, resolveSource } from './resolve.js';
import { encodeGGUF, readGGUFContents, splitGGUF } from './test-gguf.js';

const FIXTURE = 'gguf/aidreams260K-q8_0.gguf';
const path = sharedFile(FIXTURE);
const TOKENIZER = 'models/tok512-aidreams.bin';
const CHECKPOINT = 'models/aidreams260K.bin';
const tokPath = sharedFile(TOKENIZER);
const ckptPath = sharedFile(CHECKPOINT);

let hub: FakeHub | undefined;
let cache: string;
beforeAll(async () => {
  cache = mkdtempSync(join(tmpdir(), 'rama-resolve-test-'));
  if (!path || !tokPath || !ckptPath) return;
  hub = await startFakeHub({
    'test/tiny': {
      files: {
        'aidreams260K-q8_0.gguf': readFileSync(path),
        'aidreams260K.bin': readFileSync(ckptPath),
        'tok512-aidreams.bin': readFileSync(tokPath),
      },
    },
  });
});
afterAll(async () => {
  await hub?.close();
  rmSync(cache, { recursive: true, force: true });
});

const greedy = async (llama: Llama) => {
  try {
    return (await llama.generate('Once upon a time', { steps: 24, temperature: 0 }).result()).tokens;
  } finally {
    llama.dispose();
  }
};

describe('Llama.load with a model name', () => {
  it('hf:test/tiny/aidreams260K-q8_0.gguf loads and generates as the file on disk does, reporting progress', async (ctx) => {
    if (!hub) return ctx.skip(missingMessage(FIXTURE));
    const events: { loaded: number; total?: number; done: boolean }[] = [];
    const fromHub = await Llama.load({
      model: 'hf:test/tiny/aidreams260K-q8_0.gguf',
      onProgress: (p) => events.push(p),
      hub: { endpoint: hub.endpoint, cacheDir: cache },
    });
    const expected = await greedy(await Llama.load({ model: path! }));
    expect(await greedy(fromHub)).toEqual(expected);
    expect(expected.length).toBeGreaterThan(5);
    expect(events.at(-1)).toMatchObject({ done: true, loaded: readFileSync(path!).length });

    // Cached: offline now, and no request.
    hub.requests.length = 0;
    await greedy(await Llama.load({ model: 'hf:test/tiny/aidreams260K-q8_0.gguf', hub: { endpoint: hub.endpoint, cacheDir: cache, offline: true } }));
    expect(hub.requests).toEqual([]);
  });

  it('a llama2.c checkpoint and its tokenizer both by name (hf: and a URL)', async (ctx) => {
    if (!hub) return ctx.skip(missingMessage(CHECKPOINT));
    const llama = await Llama.load({
      model: 'hf:test/tiny/aidreams260K.bin',
      tokenizer: `${hub.endpoint}/test/tiny/resolve/main/tok512-aidreams.bin`,
      hub: { endpoint: hub.endpoint, cacheDir: cache },
    });
    const expected = await greedy(await Llama.load({ model: ckptPath!, tokenizer: tokPath! }));
    expect(await greedy(llama)).toEqual(expected);
  });

  it('a name the Hub does not have: its HubError, naming it', async (ctx) => {
    if (!hub) return ctx.skip(missingMessage(FIXTURE));
    const error = (await Llama.load({ model: 'hf:test/tiny/nope.gguf', hub: { endpoint: hub.endpoint, cacheDir: cache } }).catch((e: unknown) => e)) as HubError;
    expect(error).toBeInstanceOf(HubError);
    expect(error.code).toBe('E_FILE_NOT_FOUND');
    expect(error.message).toContain('hf:test/tiny/nope.gguf');
  });

  it('a local file named like a URL or hf: name stays a local file; other sources pass through', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rama-resolve-local-'));
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      writeFileSync('hf:x', 'local');
      expect(isModelName('hf:x')).toBe(false);
      expect(await resolveSource('hf:x')).toBe('hf:x');
      expect(isModelName('hf:o/r/f.gguf')).toBe(true);
      expect(isModelName('https://h/x.gguf')).toBe(true);
      expect(isModelName('model.gguf')).toBe(false);
      const bytes = new Uint8Array([1, 2, 3]);
      expect(await resolveSource(bytes)).toBe(bytes);
      expect(await resolveSource(['a.gguf', 'b.gguf'])).toEqual(['a.gguf', 'b.gguf']);
    } finally {
      process.chdir(cwd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a split GGUF by name (any part): every part is fetched and the model generates as the whole file', async (ctx) => {
    if (!path) return ctx.skip(missingMessage(FIXTURE));
    const whole = await readGGUFContents(path);
    const n = whole.tensors.length;
    const parts = splitGGUF(whole, [1, Math.floor(n / 2), n - 1 - Math.floor(n / 2)]).map((p) => encodeGGUF(p));
    const own = await startFakeHub({ 'test/split': { files: Object.fromEntries(parts.map((b, i) => [`aidreams-0000${i + 1}-of-00003.gguf`, b])) } });
    try {
      const llama = await Llama.load({ model: 'hf:test/split/aidreams-00002-of-00003.gguf', hub: { endpoint: own.endpoint, cacheDir: cache } });
      expect(await greedy(llama)).toEqual(await greedy(await Llama.load({ model: path })));
      expect(own.requests.filter((r) => r.method === 'HEAD').map((r) => r.url)).toEqual([1, 2, 3].map((k) => `/test/split/resolve/main/aidreams-0000${k}-of-00003.gguf`));
    } finally {
      await own.close();
    }
  });

  it('a split GGUF name resolves to its parts in order', async () => {
    const parts = [new Uint8Array([1, 1, 1]), new Uint8Array([2, 2])];
    const own = await startFakeHub({ 'test/split': { files: { 'm-00001-of-00002.gguf': parts[0], 'm-00002-of-00002.gguf': parts[1] } } });
    try {
      const got = (await resolveSource('hf:test/split/m-00001-of-00002.gguf', { hub: { endpoint: own.endpoint, cacheDir: cache } })) as string[];
      expect(got.map((p) => createHash('sha256').update(readFileSync(p)).digest('hex'))).toEqual(parts.map((b) => createHash('sha256').update(b).digest('hex')));
    } finally {
      await own.close();
    }
  });
});
