// pnpm bench --server: a load test of rama-serve (@rama/server's built
// command, started as a child process) over loopback, with its own HTTP
// client (node:http, keep-alive): `--clients` (default 32) streaming chat
// completions at a time for `--duration` seconds (default 30), the server
// started with `--parallel` sessions (default 8); then the same one request
// at a time. Each request asks for `--max-tokens` (default 64) tokens at
// temperature 0.8 with its own seed and message, so no two are alike. Reports
// errors, requests, aggregate generated tokens/s (all completion tokens over
// the wall time from the first request to the last answer), per-request
// tokens/s, and time to first token (from sending the request to the first
// streamed text, queueing included), p50 and p99.
//
// Models (--server-models): aidreams260K (shared/models, the default) and
// s15, a synthetic model of stories15M's shape with the Llama 2 tokenizer.
// The load generator runs on the same machine as the server: on a small one
// it takes CPU from it.
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../../../packages/server/dist/rama-serve.js', import.meta.url));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function quantile(xs, q) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** rama-serve on a free port; resolves once it listens. */
async function startServer(model, tokenizer, parallel, queue, threads) {
  const args = [BIN, '-m', model, '-t', tokenizer, '--port', '0', '--parallel', String(parallel), '--queue', String(queue), '--model-name', 'bench'];
  if (threads !== undefined) args.push('--threads', String(threads));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  for (const end = Date.now() + 60_000; ; ) {
    const m = /listening on (http:\S+)/.exec(err);
    if (m) return { child, url: m[1], stderr: () => err };
    if (child.exitCode !== null) throw new Error(`rama-serve exited: ${err}`);
    if (Date.now() > end) throw new Error(`rama-serve did not start: ${err}`);
    await sleep(20);
  }
}

async function stopServer(s) {
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (s.child.exitCode === null) s.child.kill('SIGKILL');
}

/** One streamed chat completion: time to first text, completion tokens (from usage), or an error. */
function one(url, agent, n, maxTokens) {
  const body = JSON.stringify({
    messages: [{ role: 'user', content: `Tell me dream number ${n}.` }],
    max_tokens: maxTokens,
    temperature: 0.8,
    seed: n + 1,
    stream: true,
    stream_options: { include_usage: true },
  });
  const t0 = performance.now();
  return new Promise((resolve) => {
    let ttft;
    let buf = '';
    let usage;
    let done = false;
    const fail = (why) => resolve({ ok: false, why, t0, t1: performance.now() });
    const req = request(`${url}/v1/chat/completions`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return fail(`HTTP ${res.statusCode}`);
      }
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          if (!ev.startsWith('data: ')) continue;
          const data = ev.slice(6);
          if (data === '[DONE]') {
            done = true;
            continue;
          }
          const c = JSON.parse(data);
          if (c.usage) usage = c.usage;
          if (ttft === undefined && c.choices?.[0]?.delta?.content) ttft = performance.now() - t0;
        }
      });
      res.on('end', () => {
        const t1 = performance.now();
        if (!done || !usage) return fail('stream cut short');
        resolve({ ok: true, t0, t1, ttft: ttft ?? t1 - t0, tokens: usage.completion_tokens });
      });
      res.on('error', (e) => fail(e.message));
    });
    req.on('error', (e) => fail(e.message));
    req.end(body);
  });
}

/** `clients` loops sending one request after another for `seconds`; in-flight ones finish. */
async function load(url, clients, seconds, maxTokens) {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  let n = 0;
  const results = [];
  const start = performance.now();
  const stopAt = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < stopAt) results.push(await one(url, agent, n++, maxTokens));
    }),
  );
  const wall = (performance.now() - start) / 1000;
  agent.destroy();
  const ok = results.filter((r) => r.ok);
  const tokens = ok.reduce((s, r) => s + r.tokens, 0);
  const ttfts = ok.map((r) => r.ttft);
  const perRequest = ok.filter((r) => r.tokens >= 2).map((r) => (r.tokens - 1) / ((r.t1 - r.t0 - r.ttft) / 1000));
  const errors = results.filter((r) => !r.ok);
  return {
    clients,
    requests: results.length,
    errors: errors.length,
    errorKinds: [...new Set(errors.map((e) => e.why))],
    tokens,
    wall,
    tokensPerSecond: tokens / wall,
    requestTokensPerSecondP50: quantile(perRequest, 0.5),
    ttftP50: quantile(ttfts, 0.5),
    ttftP99: quantile(ttfts, 0.99),
  };
}

const fmt = (x, d = 1) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));

export async function serverBench(a, testkit, cpu) {
  if (!existsSync(BIN)) throw new Error(`${BIN} not found: build first (pnpm build)`);
  const clients = a.clients ?? 32;
  const parallel = a.parallel ?? 8;
  const seconds = a.duration ?? 30;
  const maxTokens = a.maxTokens ?? 64;
  const models = a.serverModels ?? ['aidreams'];
  console.log(
    `bench --server: ${cpu}, ${availableParallelism()} cores, Node ${process.version}, rama-serve --parallel ${parallel} ` +
      `(threads ${a.threads ?? 'default'}), ${seconds} s per run, streamed chat completions of up to ${maxTokens} tokens, ` +
      `${clients} clients then 1, client and server on this machine`,
  );
  const rows = [];
  for (const m of models) {
    let model;
    let tokenizer;
    let label;
    if (m === 'aidreams') {
      model = testkit.sharedFile('models/aidreams260K.bin');
      tokenizer = testkit.sharedFile('models/tok512-aidreams.bin');
      label = 'aidreams260K';
    } else if (m === 's15') {
      process.stdout.write('  stories15M.bin (synthetic): generating if needed... ');
      model = testkit.synthModel('s15.bin', '--shape stories15M');
      console.log('done');
      tokenizer = testkit.sharedFile('models/tokenizer.bin');
      label = 'stories15M shape (synthetic)';
    } else throw new Error(`unknown server model ${m}: aidreams or s15`);
    if (!model || !tokenizer) throw new Error(`${label}: model or tokenizer not found under shared/ (set RAMA_SHARED)`);
    for (const c of [clients, 1]) {
      const server = await startServer(model, tokenizer, parallel, Math.max(64, clients), a.threads);
      try {
        await one(server.url, undefined, -1, 8); // warm-up
        process.stdout.write(`  ${label}, ${c} client${c === 1 ? '' : 's'}: ${seconds} s... `);
        const r = await load(server.url, c, seconds, maxTokens);
        console.log(`${r.requests} requests, ${r.errors} errors, ${fmt(r.tokensPerSecond)} tokens/s`);
        rows.push({ model: label, parallel, ...r });
      } finally {
        await stopServer(server);
      }
    }
  }
  const lines = [
    '| model | clients | requests | errors | tokens | aggregate tok/s | per-request tok/s (p50) | TTFT p50 (ms) | TTFT p99 (ms) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${r.clients} | ${r.requests} | ${r.errors}${r.errors ? ` (${r.errorKinds.join(', ')})` : ''} | ${r.tokens} | ${fmt(r.tokensPerSecond)} | ` +
        `${fmt(r.requestTokensPerSecondP50)} | ${fmt(r.ttftP50)} | ${fmt(r.ttftP99)} |`,
    ),
  ];
  console.log(`\n${lines.join('\n')}\n`);
  if (a.json) writeFileSync(a.json, JSON.stringify({ date: new Date().toISOString(), cpu, cores: availableParallelism(), node: process.version, parallel, seconds, maxTokens, rows }, null, 2));
  if (rows.some((r) => r.errors > 0)) process.exitCode = 1;
}
