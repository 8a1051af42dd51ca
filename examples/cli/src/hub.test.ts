/**
 * `rama -m hf:...`, `rama pull`, `rama ls`, `rama rm` against a local
 * imitation of the Hub (@rama/testkit's startFakeHub on 127.0.0.1) serving
 * the shared fixtures, with HF_ENDPOINT pointing there and RAMA_CACHE in a
 * temporary folder. Runs the built dist/rama.js; nothing reaches the network.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { generateGoldens, goldenExpectation, sharedFile, startFakeHub, type FakeHub } from '@rama/testkit';
import { jsonLines, runCli } from './run-cli.js';

const ggufPath = sharedFile('gguf/aidreams260K-q8_0.gguf');
const modelPath = sharedFile('models/aidreams260K.bin');
const tokPath = sharedFile('models/tok512-aidreams.bin');
const have = () => !!(ggufPath && modelPath && tokPath);
const SKIP = 'skipped: shared gguf/aidreams260K-q8_0.gguf, models/aidreams260K.bin or models/tok512-aidreams.bin not found (set RAMA_SHARED)';
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

let hub: FakeHub;
let cache: string;
let env: Record<string, string>;

beforeAll(async () => {
  const files: Record<string, Uint8Array> = {};
  if (have()) {
    files['aidreams260K-q8_0.gguf'] = readFileSync(ggufPath!);
    files['aidreams260K.bin'] = readFileSync(modelPath!);
    files['tok512-aidreams.bin'] = readFileSync(tokPath!);
  }
  hub = await startFakeHub({ 'test/tiny': { files }, 'test/gated': { files, gated: true } }, { token: 'hf_secret' });
});
afterAll(() => hub.close());
beforeEach(() => {
  hub.cdn = 'ok';
  hub.requests.length = 0;
  cache = mkdtempSync(join(tmpdir(), 'rama-cli-hub-'));
  env = { HF_ENDPOINT: hub.endpoint, RAMA_CACHE: cache };
  return () => rmSync(cache, { recursive: true, force: true });
});

const errorLine = (stderr: string) => {
  expect(stderr).not.toContain('    at ');
  return stderr.trimEnd().split('\n').pop() ?? '';
};

describe('rama -m hf:...', () => {
  it('downloads a GGUF file from the Hub once, generates as the local file does, then runs from the cache', async (ctx) => {
    if (!have()) return ctx.skip(SKIP);
    const args = ['--json', '-p', 'Once upon a time', '-s', '40', '-r', '0'];
    const name = 'hf:test/tiny/aidreams260K-q8_0.gguf';
    const first = await runCli(['-m', name, ...args], { env });
    expect(first.stderr).toBe(`rama: downloading aidreams260K-q8_0.gguf (${(readFileSync(ggufPath!).length / 1024).toFixed(1)} KiB) from ${hub.endpoint}/test/tiny/resolve/main/aidreams260K-q8_0.gguf\n`);
    expect(first.code).toBe(0);
    const local = await runCli(['-m', ggufPath!, ...args], { env });
    const [a, b] = [first, local].map((r) => jsonLines(r.stdout).pop() as { tokens: number[]; text: string });
    expect(a.tokens).toEqual(b.tokens);
    expect(a.text).toBe(b.text);
    expect(a.tokens.length).toBeGreaterThan(10);

    hub.requests.length = 0;
    const again = await runCli(['-m', name, ...args], { env: { ...env, HF_HUB_OFFLINE: '1' } });
    expect(again.code).toBe(0);
    expect(again.stderr).toBe('');
    expect((jsonLines(again.stdout).pop() as { tokens: number[] }).tokens).toEqual(a.tokens);
    expect(hub.requests).toEqual([]);
  });

  it('-m https://...: a plain URL is fetched into the cache the same way, and rama ls names it by its URL', async (ctx) => {
    if (!have()) return ctx.skip(SKIP);
    const url = `${hub.endpoint}/test/tiny/resolve/main/aidreams260K-q8_0.gguf`;
    const r = await runCli(['-m', url, '-p', 'Hi', '-s', '5', '-r', '0', '--json'], { env });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^rama: downloading aidreams260K-q8_0.gguf \(.* KiB\) from http:/);
    const ls = await runCli(['ls'], { env });
    expect(ls.stdout.split(/\s{2,}/)[0]).toBe(url);
    expect(sha(readFileSync(ls.stdout.trim().split(/\s{2,}/)[2]))).toBe(sha(readFileSync(ggufPath!)));
  });

  it('a llama2.c checkpoint and its tokenizer by hf: name give the golden tokens', async (ctx) => {
    if (!have()) return ctx.skip(SKIP);
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt');
    if (!g) return ctx.skip('skipped: goldens/generate.jsonl not found');
    const r = await runCli(['--json', '-m', 'hf:test/tiny/aidreams260K.bin', '-t', 'hf:test/tiny/tok512-aidreams.bin', '-p', g.prompt, '-s', String(g.steps), '-r', '0'], { env });
    expect(r.code).toBe(0);
    const want = goldenExpectation(g);
    const got = jsonLines(r.stdout).pop() as { tokens: number[]; text: string };
    expect(got.tokens).toEqual(want.tokens);
    if (want.text !== undefined) expect(got.text).toBe(want.text);
  });

  it('a dropped connection is resumed within the run; the file matches the Hub SHA-256', async (ctx) => {
    if (!have()) return ctx.skip(SKIP);
    const own = await startFakeHub({ 'test/tiny': hub.repos['test/tiny'] });
    try {
      own.cdn = 'drop-once';
      const r = await runCli(['-m', 'hf:test/tiny/aidreams260K-q8_0.gguf', '-p', 'Hi', '-s', '5', '-r', '0'], { env: { ...env, HF_ENDPOINT: own.endpoint } });
      expect(r.code).toBe(0);
      const cdn = own.requests.filter((q) => q.url.startsWith('/cdn/'));
      expect(cdn.map((q) => q.range === undefined)).toEqual([true, false]);
      const cached = join(cache, 'hf', 'test', 'tiny', 'main', 'aidreams260K-q8_0.gguf');
      expect(sha(readFileSync(cached))).toBe(sha(readFileSync(ggufPath!)));
    } finally {
      await own.close();
    }
  });

  const failures: [string, Record<string, string>, RegExp][] = [
    ['hf:test/tiny/missing.gguf', {}, /^rama: error: could not download hf:test\/tiny\/missing.gguf from http:\/\/127.0.0.1:\d+\/test\/tiny\/resolve\/main\/missing.gguf: HTTP 404 Not Found: the repository test\/tiny has no file missing.gguf at revision main$/],
    ['hf:nobody/none/x.gguf', {}, /^rama: error: could not download hf:nobody\/none\/x.gguf from .*: HTTP 404 Not Found: the repository nobody\/none does not exist or is not visible \(if it is private or gated, set HF_TOKEN to a token with access\)$/],
    ['hf:test/gated/aidreams260K-q8_0.gguf', {}, /^rama: error: could not download hf:test\/gated\/aidreams260K-q8_0.gguf from .*: HTTP 401 Unauthorized: the repository test\/gated is gated or private: set HF_TOKEN to a token with access/],
    ['hf:test/tiny/aidreams260K-q8_0.gguf', { HF_HUB_OFFLINE: '1' }, /^rama: error: hf:test\/tiny\/aidreams260K-q8_0.gguf is not in the cache \(.*\) and offline mode is on \(HF_HUB_OFFLINE\); run once online to download it$/],
    ['hf:test', {}, /^rama: error: model name "hf:test": the repository "" is not valid/],
  ];
  for (const [name, extra, message] of failures) {
    it(`${name}${Object.keys(extra).length ? ` with ${JSON.stringify(extra)}` : ''}: one error line, exit 1, nothing cached`, async () => {
      const r = await runCli(['-m', name, '-p', 'Hi'], { env: { ...env, ...extra } });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(errorLine(r.stderr)).toMatch(message);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      const ls = await runCli(['ls'], { env });
      expect(ls.stdout).toBe('');
    });
  }

  it('wrong bytes from the CDN: a checksum error, and the file is not kept', async (ctx) => {
    if (!have()) return ctx.skip(SKIP);
    hub.cdn = 'wrong-bytes';
    const r = await runCli(['-m', 'hf:test/tiny/aidreams260K-q8_0.gguf', '-p', 'Hi'], { env });
    expect(r.code).toBe(1);
    expect(errorLine(r.stderr)).toMatch(/: what arrived is not a usable aidreams260K-q8_0.gguf: its SHA-256 is [0-9a-f]{64}, not [0-9a-f]{64}$/);
    expect((await runCli(['ls'], { env })).stdout).toBe('');
  });

  it('a gated repository with HF_TOKEN runs', async (ctx) => {
    if (!have()) return ctx.skip(SKIP);
    const r = await runCli(['-m', 'hf:test/gated/aidreams260K-q8_0.gguf', '-p', 'Hi', '-s', '5'], { env: { ...env, HF_TOKEN: 'hf_secret' } });
    expect(r.code).toBe(0);
    expect(hub.requests[0].authorization).toBe('Bearer hf_secret');
  });
});

describe('rama pull, ls, rm', () => {
  it('pull prints the cached path; ls lists it; rm removes it; rm again is an error', async (ctx) => {
    if (!have()) return ctx.skip(SKIP);
    const name = 'hf:test/tiny/aidreams260K-q8_0.gguf';
    const path = join(cache, 'hf', 'test', 'tiny', 'main', 'aidreams260K-q8_0.gguf');
    const pull = await runCli(['pull', name, 'hf:test/tiny/tok512-aidreams.bin'], { env });
    expect(pull.code).toBe(0);
    expect(pull.stdout).toBe(`${path}\n${join(cache, 'hf', 'test', 'tiny', 'main', 'tok512-aidreams.bin')}\n`);
    expect(sha(readFileSync(path))).toBe(sha(readFileSync(ggufPath!)));

    const ls = await runCli(['ls'], { env });
    expect(ls.code).toBe(0);
    const rows = ls.stdout.trimEnd().split('\n').map((l) => l.split(/\s{2,}/));
    expect(rows.map((r) => [r[0], r[2]])).toEqual([
      [name, path],
      ['hf:test/tiny/tok512-aidreams.bin', join(cache, 'hf', 'test', 'tiny', 'main', 'tok512-aidreams.bin')],
    ]);

    const rm = await runCli(['rm', name], { env });
    expect(rm.code).toBe(0);
    expect(rm.stdout).toBe(`removed ${path}\n`);
    expect((await runCli(['ls'], { env })).stdout.split('\n')[0]).toMatch(/^hf:test\/tiny\/tok512-aidreams.bin /);

    const again = await runCli(['rm', name], { env });
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`rama: error: ${name} is not in the cache (${cache}); rama ls lists what is\n`);
  });

  it('an empty cache: ls says so on stderr, exit 0', async () => {
    const r = await runCli(['ls'], { env });
    expect(r).toEqual({ code: 0, stdout: '', stderr: `rama: the cache (${cache}) is empty\n` });
  });

  it('usage errors: exit 2', async () => {
    for (const [args, message] of [
      [['pull'], 'rama: error: rama pull needs a model name (see rama pull --help)\n'],
      [['pull', 'model.gguf'], 'rama: error: rama pull: "model.gguf" is not a model name (hf:owner/repo/file, an http(s) URL, or stories15M)\n'],
      [['ls', 'x'], 'rama: error: rama ls takes no arguments, got "x"\n'],
      [['rm', '--all'], 'rama: error: unknown flag --all for rama rm (see rama rm --help)\n'],
    ] as [string[], string][]) {
      const r = await runCli(args, { env });
      expect([r.code, r.stderr]).toEqual([2, message]);
    }
    const help = await runCli(['pull', '--help'], { env });
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: rama pull NAME\.\.\./);
  });
});
