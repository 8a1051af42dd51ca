/**
 * Scale-out behind a standard load balancer: two built `rama-serve`
 * processes behind Debian's nginx, run with the README's nginx.conf (its
 * ports replaced). Clients send requests continuously (streamed and not);
 * one replica is killed (SIGKILL) mid-load; every request sent after that
 * succeeds through the other one. Requests the killed replica was serving may
 * fail: they are counted, and no more than were in flight.
 *
 * Needs nginx (`apt-get install nginx-light`): skipped with a message when it
 * is missing, a failure under CI=true.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCI } from '@rama/testkit';
import { modelPaths, parseSse, send } from './testing.js';

const BIN = fileURLToPath(new URL('../dist/rama-serve.js', import.meta.url));
const README = fileURLToPath(new URL('../README.md', import.meta.url));
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx', '/usr/local/bin/nginx'].find((p) => existsSync(p));

if (!NGINX) {
  const why = 'scaleout.test.ts needs nginx (apt-get install -y --no-install-recommends nginx-light; scripts/setup.sh installs it as root)';
  if (isCI()) throw new Error(`nginx is missing under CI: ${why}`);
  console.warn(`skipped: ${why}`);
}
const built = existsSync(BIN);
if (!built && isCI()) throw new Error(`${BIN} is missing: build it first (pnpm --filter @rama/server build)`);

/** The README's nginx.conf, with its replicas' and its own ports replaced. */
function nginxConf(replicas: number[], port: number): string {
  const m = /```nginx\n([\s\S]*?)```/.exec(readFileSync(README, 'utf8'));
  if (!m) throw new Error('README.md has no ```nginx block');
  const conf = m[1];
  expect(conf).toContain('server 127.0.0.1:8081 ');
  expect(conf).toContain('server 127.0.0.1:8082 ');
  expect(conf).toContain('listen 127.0.0.1:8080;');
  return conf
    .replace('server 127.0.0.1:8081 ', `server 127.0.0.1:${replicas[0]} `)
    .replace('server 127.0.0.1:8082 ', `server 127.0.0.1:${replicas[1]} `)
    .replace('listen 127.0.0.1:8080;', `listen 127.0.0.1:${port};`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Child {
  proc: ChildProcess;
  output: () => string;
}

function start(cmd: string, args: string[]): Child {
  const proc = spawn(cmd, args, { env: { ...process.env, RAMA_DEBUG: '', RAMA_API_KEY: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d) => (out += d));
  return { proc, output: () => out };
}

async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, ms = 30_000): Promise<T> {
  for (const end = Date.now() + ms; ; ) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** A replica: rama-serve on a port it picks, once it listens. */
async function replica(): Promise<Child & { url: string; port: number }> {
  const p = modelPaths()!;
  const c = start(process.execPath, [BIN, '-m', p.model, '-t', p.tokenizer, '--port', '0', '--parallel', '2', '--threads', '1', '--drain-ms', '0']);
  const url = await until('rama-serve to listen', () => {
    if (c.proc.exitCode !== null) throw new Error(`rama-serve exited: ${c.output()}`);
    return /listening on (http:\S+)/.exec(c.output())?.[1];
  });
  return { ...c, url, port: Number(new URL(url).port) };
}

interface Outcome {
  start: number;
  end: number;
  ok: boolean;
  status: number;
  why?: string;
  replica?: string;
}

/** One chat completion through the balancer; ok when it is a 200 and complete (a stream ends with [DONE]). */
function ask(url: string, stream: boolean, n: number): Promise<Outcome> {
  const start = performance.now();
  const body = JSON.stringify({ messages: [{ role: 'user', content: `Tell me dream number ${n}.` }], max_tokens: 24, temperature: 0.8, seed: n, stream });
  return new Promise((resolve) => {
    const done = (o: Omit<Outcome, 'start' | 'end'>) => resolve({ start, end: performance.now(), ...o });
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('error', (e) => done({ ok: false, status: res.statusCode!, why: e.message }));
      res.on('aborted', () => done({ ok: false, status: res.statusCode!, why: 'aborted' }));
      res.on('end', () => {
        if (res.statusCode !== 200) return done({ ok: false, status: res.statusCode!, why: `HTTP ${res.statusCode}` });
        if (!stream) {
          try {
            return done({ ok: typeof JSON.parse(text).choices[0].message.content === 'string', status: 200 });
          } catch {
            return done({ ok: false, status: 200, why: `truncated JSON: ${text.slice(0, 100)}` });
          }
        }
        const events = parseSse(text);
        done({ ok: events.at(-1)?.data === '[DONE]', status: 200, why: events.at(-1)?.data === '[DONE]' ? undefined : 'stream cut short' });
      });
    });
    req.on('error', (e) => done({ ok: false, status: 0, why: e.message }));
    req.end(body);
  });
}

async function served(url: string): Promise<number> {
  const text = (await send(url, '/metrics')).text;
  let n = 0;
  for (const m of text.matchAll(/^rama_requests_total\{endpoint="\/v1\/chat\/completions",status="200"\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

describe.skipIf(!modelPaths() || !NGINX || !built)('scale-out behind nginx', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rama-nginx-'));
  let a: Awaited<ReturnType<typeof replica>>;
  let b: Awaited<ReturnType<typeof replica>>;
  let nginx: Child;
  let lb: string;

  beforeAll(async () => {
    [a, b] = await Promise.all([replica(), replica()]);
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, nginxConf([a.port, b.port], port));
    nginx = start(NGINX!, ['-p', dir, '-c', conf, '-e', 'stderr', '-g', 'daemon off;']);
    lb = `http://127.0.0.1:${port}`;
    await until('nginx to answer /health', async () => {
      if (nginx.proc.exitCode !== null) throw new Error(`nginx exited: ${nginx.output()}`);
      return (await send(lb, '/health').catch(() => undefined))?.status === 200 ? true : undefined;
    });
  });

  afterAll(async () => {
    const exits = [a, b, nginx].filter((c) => c && c.proc.exitCode === null && c.proc.signalCode === null).map((c) => new Promise((r) => c.proc.once('exit', r)));
    nginx?.proc.kill('SIGQUIT');
    a?.proc.kill('SIGKILL');
    b?.proc.kill('SIGKILL');
    await Promise.race([Promise.all(exits), sleep(5000)]);
    nginx?.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('spreads requests over both replicas, and keeps answering when one is killed mid-load', async () => {
    const outcomes: Outcome[] = [];
    let stop = false;
    let n = 0;
    // 4 clients, each sending one request after another, streamed and not in turn.
    const clients = Array.from({ length: 4 }, async (_, c) => {
      while (!stop) outcomes.push(await ask(lb, (n + c) % 2 === 0, n++));
    });
    // Until both replicas have served some requests.
    await until('both replicas to serve requests', async () => ((await served(a.url)) >= 3 && (await served(b.url)) >= 3 ? true : undefined));
    const beforeKill = outcomes.length;
    // The kill counts from when the replica is gone (its exit seen): a request sent a moment before may still have reached it.
    const exited = new Promise((r) => a.proc.once('exit', (_code, signal) => r(signal)));
    const killAt = performance.now();
    a.proc.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const killedAt = performance.now();
    // Load goes on: at least 30 requests after the kill, and 1.5 s.
    await until('requests after the kill', () => (outcomes.filter((o) => o.start > killedAt).length >= 30 && performance.now() - killedAt > 1500 ? true : undefined));
    stop = true;
    await Promise.all(clients);

    const after = outcomes.filter((o) => o.start > killedAt);
    const inFlight = outcomes.filter((o) => o.start <= killedAt && o.end > killAt);
    const failed = outcomes.filter((o) => !o.ok);
    console.log(
      `scale-out: ${outcomes.length} requests (${beforeKill} done before the kill), ${inFlight.length} in flight at the kill, ` +
        `${failed.length} failed (${failed.map((o) => o.why ?? o.status).join('; ') || 'none'}), ${after.length} sent after it, all through nginx`,
    );
    expect(after.filter((o) => !o.ok)).toEqual([]);
    expect(after.length).toBeGreaterThanOrEqual(30);
    // Only requests the killed replica was serving may fail (at most its 2 sessions' worth, and their clients').
    for (const f of failed) expect(f.start).toBeLessThanOrEqual(killedAt);
    expect(failed.length).toBeLessThanOrEqual(inFlight.length);
    // The survivor served everything sent after the kill (its counter moves once a response has closed).
    await until('the survivor to count its requests', async () => ((await served(b.url)) >= after.length ? true : undefined), 5000);
    expect((await send(lb, '/health')).status).toBe(200);
    expect(nginx.proc.exitCode).toBeNull();
  });
});
