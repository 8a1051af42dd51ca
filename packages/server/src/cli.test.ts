/** rama-serve: its flags (parseArgs), and the built command: --help, clean errors, serving, draining on SIGTERM. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isCI } from '@rama/testkit';
import { main, parseArgs } from './cli.js';
import { modelPaths, post, send } from './testing.js';

const BIN = fileURLToPath(new URL('../dist/rama-serve.js', import.meta.url));
// turbo builds before testing; a local `vitest run` without a build skips the command's tests (CI fails instead).
const built = existsSync(BIN);
if (!built && isCI()) throw new Error(`${BIN} is missing: build it first (pnpm --filter @rama/server build)`);

describe('parseArgs', () => {
  it('reads every flag, with defaults', () => {
    expect(parseArgs(['-m', 'models/m.bin', '-t', 'tok.bin'], {})).toEqual({
      model: 'models/m.bin', tokenizer: 'tok.bin', host: '127.0.0.1', port: 8080, parallel: 4, queue: 64, apiKey: undefined,
      modelName: 'm', backend: 'cpu', threads: undefined, q80: false, kvCache: 'f32', bodyLimit: 1048576, drainMs: 10000,
    });
    const a = parseArgs(
      ['--model=m.bin', '--tokenizer', 't.bin', '--host', '0.0.0.0', '--port', '0', '--parallel', '8', '--queue', '0', '--api-key', 'k',
        '--model-name', 'dreams', '--backend', 'auto', '--threads', '2', '--q80', '--kv-cache', 'f16', '--body-limit', '100', '--drain-ms', '0'],
      {},
    );
    expect(a).toMatchObject({ host: '0.0.0.0', port: 0, parallel: 8, queue: 0, apiKey: 'k', modelName: 'dreams', backend: 'auto', threads: 2, q80: true, kvCache: 'f16', bodyLimit: 100, drainMs: 0 });
    expect(parseArgs(['-m', 'm', '-t', 't'], { RAMA_API_KEY: 'env-key' })).toMatchObject({ apiKey: 'env-key' });
    expect(parseArgs(['--help'], {})).toBe('help');
    expect(parseArgs(['-h', '--port', 'x'], {})).toBe('help');
    expect(parseArgs(['--version'], {})).toBe('version');
  });

  it('bad flags are errors that say what to fix', () => {
    const bad: [string[], RegExp][] = [
      [[], /-m\/--model is required/],
      [['-m', 'm'], /-t\/--tokenizer is required/],
      [['-m', 'm', '-t', 't', '--port', '70000'], /--port must be an integer in 0\.\.65535, got "70000"/],
      [['-m', 'm', '-t', 't', '--parallel', '0'], /--parallel must be an integer in 1\.\./],
      [['-m', 'm', '-t', 't', '--parallel', 'two'], /--parallel must be an integer/],
      [['-m', 'm', '-t', 't', '--queue', '-1'], /Option '--queue' argument is ambiguous\. Did you forget to specify the option argument for '--queue'\? \(see --help\)$/],
      [['-m', 'm', '-t', 't', '--queue=-1'], /--queue must be an integer/],
      [['-m', 'm', '-t', 't', '--backend', 'tpu'], /--backend must be cpu, webgpu or auto, got "tpu"/],
      [['-m', 'm', '-t', 't', '--kv-cache', 'q8_0'], /--kv-cache must be f32 or f16, got "q8_0"/],
      [['-m', 'm', '-t', 't', '--prot', '1'], /Unknown option '--prot'/],
      [['-m', 'm', '-t', 't', 'extra'], /extra/],
      [['-m', 'm', '-t', 't', '--port'], /--port/],
    ];
    for (const [argv, message] of bad) expect(() => parseArgs(argv, {}), argv.join(' ')).toThrow(message);
  });
});

describe('main (what `rama serve` calls)', () => {
  it('--help, --version and a bad flag, written through the given io', async () => {
    let out = '';
    let err = '';
    const io = { stdout: (t: string) => void (out += t), stderr: (t: string) => void (err += t), env: {} };
    expect(await main(['--help'], io)).toBe(0);
    expect(out).toMatch(/^Usage: rama-serve/);
    out = '';
    expect(await main(['--version'], io)).toBe(0);
    expect(out).toMatch(/^rama-serve \d+\.\d+\.\d+\n$/);
    expect(await main(['-m', 'm'], io)).toBe(2);
    expect(err).toBe('rama-serve: error: -t/--tokenizer is required: the tokenizer.bin for the model (see --help)\n');
  });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], during?: (stderrSoFar: () => string, kill: (sig: NodeJS.Signals) => void) => Promise<void>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, RAMA_DEBUG: '', RAMA_API_KEY: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    during?.(() => stderr, (sig) => child.kill(sig)).catch((e) => {
      child.kill('SIGKILL');
      reject(e);
    });
  });
}

const until = async (cond: () => boolean, ms = 30_000) => {
  for (const end = Date.now() + ms; !cond(); ) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe.skipIf(!built)('rama-serve (built)', () => {
  it('--help prints the usage; a bad flag is one line on stderr, exit 2, no stack', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: rama-serve -m MODEL -t TOKENIZER/);
    const bad = await run(['-m', 'x', '-t', 'y', '--parallel', 'lots']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('rama-serve: error: --parallel must be an integer in 1..1024, got "lots"\n');
    const unknown = await run(['--frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toBe("rama-serve: error: Unknown option '--frobnicate' (see --help)\n");
  });

  it('a missing model file is a clean error, exit 1', async () => {
    const r = await run(['-m', '/nonexistent/model.bin', '-t', '/nonexistent/tok.bin']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^rama-serve: error: .*\/nonexistent\/model\.bin/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it.skipIf(!modelPaths())('serves, and drains on SIGTERM', async () => {
    const p = modelPaths()!;
    let url = '';
    const r = await run(['-m', p.model, '-t', p.tokenizer, '--port', '0', '--parallel', '2', '--api-key', 'k'], async (stderr, kill) => {
      await until(() => /listening on (http:\S+)/.test(stderr()));
      url = /listening on (http:\S+)/.exec(stderr())![1];
      expect((await send(url, '/health')).status).toBe(200);
      expect((await post(url, '/v1/completions', { prompt: 'I dreamed', max_tokens: 3 })).status).toBe(401);
      const ok = await post(url, '/v1/completions', { prompt: 'I dreamed', max_tokens: 3, temperature: 0 }, { authorization: 'Bearer k' });
      expect(ok.status).toBe(200);
      expect(ok.json().model).toBe('aidreams260K');
      kill('SIGTERM');
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+ \(model aidreams260K, 128 positions, parallel 2, queue 64, API key required\)/);
    expect(r.stderr).toMatch(/SIGTERM: draining/);
    expect(r.stderr).toMatch(/stopped\n$/);
  });
});
