#!/usr/bin/env node
// pnpm bench: Rama's CPU backend on synthetic stories15M / stories110M models
// (fp32 and Q8_0), optionally side by side with llama2.c's run / runq.
//
//   pnpm build && pnpm bench [--llama2c-dir DIR] [--runs N] [--steps N]
//        [--threads N] [--models s15,s42,s110,tl1b,l7b] [--formats fp32,q80] [--json FILE]
//        [--contention] [--sessions N] [--backend cpu|webgpu] [--matmul-rows]
//   pnpm build && pnpm bench --against DIR [--models ...] [--formats ...] [--threads N] [--runs N]
//   pnpm build && pnpm bench --server [--clients N] [--parallel N]
//        [--duration S] [--max-tokens N] [--server-models aidreams,s15]
//   pnpm build && pnpm bench --gguf <dir or .gguf files...> [--llama-bench PATH]
//        [--node-llama-cpp DIR] [--runs N] [--threads N] [--kv-cache f32|f16]
//
// Each measurement is one child process (one model load, one generation of
// --steps positions, greedy, prompt "Once upon a time"), so load time and peak
// RSS belong to one engine. Rama runs with its default thread count unless
// --threads pins one. With --llama2c-dir, DIR/run (fp32) and DIR/runq (q80),
// built with OpenMP, run interleaved with ours (OMP_NUM_THREADS = --threads,
// or every core), and the table shows the ratio measured in the same run.
// Big models (tl1b, l7b: past 4 GiB, over several WebAssembly memories): the
// table also gives load speed (file MB / load s) and the fraction of this
// machine's memory bandwidth a token uses (weight bytes read per token x
// tok/s, against read bandwidths measured at the start of the run: native
// memcmp, and WebAssembly's 16-byte loads; src/read-bandwidth.mjs).
// --contention: a busy process (a tight loop on one core) runs beside, and
// Rama runs with 1 thread, 2 threads and the default, interleaved.
// --sessions N: N sessions of one model generate at the same time (their
// decode steps batched), interleaved with one session alone; both measured the
// same way: generated tokens / wall time from the first prompt to the last
// token. --backend webgpu runs it on WebGPU (Rama only).
// --matmul-rows: the CPU backend's matmul alone (stories110M's w1, 2048x768,
// q80 and f32) on 1, 2, 4 and 8 rows: microseconds per row show whether a
// batched step gets its rows cheaper than one at a time.
// --against DIR: this checkout against another built one (e.g. a `git worktree`
// of an older commit), both in one process, generations alternating, --runs
// rounds (src/against.mjs): the paired ratio shows a change of a few percent.
// --server: a load test of the built rama-serve (src/server-bench.mjs): 32
// streaming clients for 30 s against --parallel 8, then one at a time; errors,
// aggregate tokens/s, time to first token p50/p99.
// --gguf: GGUF files against llama.cpp's llama-bench (src/gguf-bench.mjs):
// pp128 and tg128 tokens/s and peak RSS, 2 threads, 3 runs unless told;
// --node-llama-cpp DIR adds node-llama-cpp installed in DIR (src/node-llama-cpp.mjs).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeReadBandwidth, wasmReadBandwidth } from './read-bandwidth.mjs';

const PROMPT = 'Once upon a time';
const MODELS = {
  s15: { shape: 'stories15M', label: 'stories15M' },
  s42: { shape: 'stories42M', label: 'stories42M' },
  s110: { shape: 'stories110M', label: 'stories110M' },
  // Past one 4 GiB WebAssembly memory (fp32 4.4 GB; q80 1.2 GB).
  tl1b: { shape: 'tinyllama1B', label: 'TinyLlama-1.1B' },
  // Llama-2-7B (q80 ~7 GB, fp32 ~27 GB). The bench uses 2048 positions, as its BENCHMARKS rows were measured
  // (llama2.c gets the same -n, and allocates its cache for all 4096).
  l7b: { shape: 'llama2_7B', label: 'Llama-2-7B', context: 2048 },
};

function parseArgs(argv) {
  const a = { runs: 5, steps: 200, threads: undefined, models: ['s15', 's110'], formats: ['fp32', 'q80'], runBin: 'run', runqBin: 'runq' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) die(`${k} needs a value`);
      return x;
    };
    if (k === '--') continue;
    else if (k === '--llama2c-dir') a.llama2c = v();
    else if (k === '--run-bin') a.runBin = v();
    else if (k === '--runq-bin') a.runqBin = v();
    else if (k === '--runs') a.runs = a.runsGiven = int(v(), k);
    else if (k === '--steps') a.steps = int(v(), k);
    else if (k === '--threads') a.threads = int(v(), k);
    else if (k === '--models') a.models = v().split(',');
    else if (k === '--formats') a.formats = v().split(',');
    else if (k === '--json') a.json = v();
    else if (k === '--contention') a.contention = true;
    else if (k === '--sessions') a.sessions = int(v(), k);
    else if (k === '--backend') a.backend = v();
    else if (k === '--matmul-rows') a.matmulRows = true;
    else if (k === '--against') a.against = v();
    else if (k === '--server') a.server = true;
    else if (k === '--clients') a.clients = int(v(), k);
    else if (k === '--parallel') a.parallel = int(v(), k);
    else if (k === '--duration') a.duration = int(v(), k);
    else if (k === '--max-tokens') a.maxTokens = int(v(), k);
    else if (k === '--server-models') a.serverModels = v().split(',');
    else if (k === '--gguf') {
      a.gguf = [v()];
      while (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) a.gguf.push(argv[++i]);
    } else if (k === '--llama-bench') a.llamaBench = v();
    else if (k === '--node-llama-cpp') a.nodeLlamaCpp = v();
    else if (k === '--kv-cache') a.kvCache = v();
    else if (k === '--child') a.child = v();
    else if (k === '--model') a.model = v();
    else if (k === '--tokenizer') a.tokenizer = v();
    else if (k === '--context') a.context = int(v(), k);
    else if (k === '-h' || k === '--help') {
      const lines = readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1);
      console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith('//'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else die(`unknown argument ${k} (see --help)`);
  }
  for (const m of a.models) if (!MODELS[m]) die(`unknown model ${m}; one of ${Object.keys(MODELS)}`);
  for (const f of a.formats) if (!['fp32', 'q80'].includes(f)) die(`unknown format ${f}; fp32 or q80`);
  if (a.backend !== undefined && !['cpu', 'webgpu'].includes(a.backend)) die(`unknown backend ${a.backend}; cpu or webgpu`);
  if (a.gguf) a.runs = a.runsGiven ?? 3;
  if (a.backend === 'webgpu' && !a.sessions) die('--backend webgpu goes with --sessions (the llama2.c comparison is CPU only)');
  return a;
}
function int(s, k) {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) die(`${k} must be an integer >= 1, got ${s}`);
  return n;
}
function die(msg) {
  console.error(`bench: ${msg}`);
  process.exit(2);
}

// ---------------------------------------------------------------------------
// Child: one Rama measurement, printed as one JSON line.
async function child(a) {
  let Llama;
  try {
    ({ Llama } = await import('@rama/llama'));
  } catch (e) {
    die(`cannot import @rama/llama (run \`pnpm build\` first): ${e.message}`);
  }
  const t0 = performance.now();
  const llama = await Llama.load({
    model: a.model, tokenizer: a.tokenizer, backend: a.backend ?? 'cpu', threads: a.threads, sessions: a.sessions ?? 1, contextLength: a.context,
  });
  const loadMs = performance.now() - t0;
  if (a.sessions) return childSessions(a, llama);
  const gen = llama.generate(PROMPT, { steps: a.steps, temperature: 0 });
  for await (const _ of gen) { /* drain */ }
  const r = await gen.result();
  const out = {
    tokPerSec: r.timing.tokensPerSecond,
    promptTokPerSec: r.timing.promptTokensPerSecond,
    ttftMs: r.timing.timeToFirstTokenMs,
    loadMs,
    selfMaxRssMB: process.resourceUsage().maxRSS / 1024,
    backend: llama.backend.description,
    tokens: r.tokens.length,
  };
  llama.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Prompts for concurrent sessions: different lengths, so prefills and decodes share steps. */
const SESSION_PROMPTS = ['Once upon a time', 'The little dog', 'One day, Lily went to the park and', 'Tom had a red ball', 'It was a sunny day',
  'There was a big tree', 'Sam and Mia', 'The cat sat'];

/** --sessions: N sessions generate at once (prompts above), greedy, --steps positions each; one JSON line. */
async function childSessions(a, llama) {
  const sessions = Array.from({ length: a.sessions }, () => llama.session());
  const run = (steps) => Promise.all(sessions.map((s, i) => s.generate(SESSION_PROMPTS[i % SESSION_PROMPTS.length], { steps, temperature: 0 }).result()));
  await run(8); // warm-up: first-use costs (workers, pipelines) out of the measurement
  for (const s of sessions) s.reset();
  const t0 = performance.now();
  const results = await run(a.steps);
  const wallMs = performance.now() - t0;
  const generated = results.reduce((n, r) => n + r.generatedTokens, 0);
  const out = {
    aggregateTokPerSec: (generated / wallMs) * 1000,
    perSessionTokPerSec: median(results.map((r) => r.timing.tokensPerSecond)),
    generated,
    wallMs,
    selfMaxRssMB: process.resourceUsage().maxRSS / 1024,
    backend: llama.backend.description,
  };
  llama.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

// ---------------------------------------------------------------------------
// Parent.

/** Runs a command, polling its peak RSS (VmHWM) from /proc while it runs. */
function measure(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let hwmKB = 0;
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const poll = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'));
        if (m) hwmKB = Math.max(hwmKB, Number(m[1]));
      } catch { /* not Linux, or exited */ }
    }, 5);
    p.on('error', (e) => {
      clearInterval(poll);
      reject(e);
    });
    p.on('close', (code) => {
      clearInterval(poll);
      if (code !== 0) reject(new Error(`${cmd} exited with ${code}: ${stderr.slice(-2000)}`));
      else resolve({ stdout, stderr, wallMs: performance.now() - t0, peakRssMB: hwmKB ? hwmKB / 1024 : undefined });
    });
  });
}

/** One Rama generation in a child process; `threads` undefined: the default. */
async function runRama(a, model, tokenizer, threads = a.threads, sessions = undefined) {
  const r = await measure(process.execPath, [fileURLToPath(import.meta.url), '--child', 'rama', '--model', model, '--tokenizer', tokenizer,
    ...(threads === undefined ? [] : ['--threads', String(threads)]), '--steps', String(a.steps),
    ...(sessions === undefined ? [] : ['--sessions', String(sessions)]), ...(a.backend ? ['--backend', a.backend] : []),
    ...(a.context ? ['--context', String(a.context)] : [])], {});
  const j = JSON.parse(r.stdout.trim().split('\n').pop());
  return { ...j, peakRssMB: r.peakRssMB ?? j.selfMaxRssMB };
}

async function runLlama2c(a, bin, model, tokenizer) {
  const r = await measure(bin, [model, '-z', tokenizer, '-n', String(a.steps), '-t', '0', '-i', PROMPT], { OMP_NUM_THREADS: String(a.threads ?? availableParallelism()) });
  const m = /achieved tok\/s: ([\d.]+)/.exec(r.stderr + r.stdout);
  if (!m) throw new Error(`${bin}: no "achieved tok/s" in its output`);
  return { tokPerSec: Number(m[1]), peakRssMB: r.peakRssMB, wallMs: r.wallMs };
}

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const fmt = (x, d = 1) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));

async function parent(a) {
  const testkit = await import('@rama/testkit').catch((e) => die(`cannot import @rama/testkit (run \`pnpm build\` first): ${e.message}`));
  if (a.gguf) {
    const { ggufBench } = await import('./gguf-bench.mjs');
    return ggufBench(a, { measure, median, fmt, die, cpu: cpus()[0]?.model ?? 'unknown CPU', script: fileURLToPath(import.meta.url) });
  }
  if (a.server) {
    const { serverBench } = await import('./server-bench.mjs');
    return serverBench(a, testkit, cpus()[0]?.model ?? 'unknown CPU').catch((e) => die(e.message));
  }
  const tokenizer = testkit.sharedFile('models/tokenizer.bin');
  if (!tokenizer) die(`shared/models/tokenizer.bin not found (set RAMA_SHARED to the shared/ folder)`);
  const bins = {};
  if (a.llama2c) {
    bins.fp32 = join(a.llama2c, a.runBin);
    bins.q80 = join(a.llama2c, a.runqBin);
    for (const [f, b] of Object.entries(bins)) if (a.formats.includes(f) && !existsSync(b)) die(`${b} not found (build llama2.c's ${f === 'fp32' ? 'run.c' : 'runq.c'} there with -fopenmp)`);
  }
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const threadsLabel = a.threads === undefined ? 'default' : String(a.threads);
  if (a.contention) return contention(a, testkit, tokenizer, cpu);
  if (a.sessions) return sessionsBench(a, testkit, tokenizer, cpu);
  if (a.matmulRows) return matmulRows(a, cpu);
  if (a.against) return againstBench(a, testkit, tokenizer, cpu);
  console.log(`bench: ${cpu}, ${availableParallelism()} cores, Node ${process.version}, ${threadsLabel} threads, ${a.steps} positions, ${a.runs} runs each${a.llama2c ? `, llama2.c from ${a.llama2c}` : ''}`);

  const readGBs = await nativeReadBandwidth();
  const wasmGBs = await wasmReadBandwidth();
  console.log(`memory read bandwidth, every core at once, best of 5: ${fmt(readGBs, 2)} GB/s native (memcmp, 2 x 128 MiB each), ` +
    `${fmt(wasmGBs, 2)} GB/s WebAssembly (16-byte v128.load, 256 MiB each; ${fmt((100 * wasmGBs) / readGBs, 0)}% of native)`);
  const rows = [];
  for (const m of a.models) {
    const am = { ...a, context: a.context ?? MODELS[m].context };
    for (const f of a.formats) {
      const model = synth(testkit, m, f);
      const fileMB = statSync(model).size / 1e6;
      const results = { rama: [], llama2c: [] };
      for (let i = 0; i < a.runs; i++) {
        results.rama.push(await runRama(am, model, tokenizer));
        if (bins[f]) results.llama2c.push(await runLlama2c(am, bins[f], model, tokenizer));
        process.stdout.write(`${i + 1} `);
      }
      process.stdout.write('\n');
      rows.push({ model: MODELS[m].label, format: f, fileMB, context: am.context, results });
    }
  }

  // Decoding reads every weight once per token: about the file's bytes (the embedding table doubles as the classifier).
  // mem BW: against native reads (memcmp); of wasm max: against WebAssembly's own 16-byte loads, the most Rama can read at.
  const bw = (r, tokPerSec, gbs = readGBs) => `${fmt((100 * r.fileMB * tokPerSec) / 1e3 / gbs, 0)}%`;
  const lines = [
    '| model | format | engine | tok/s median | min | max | prompt tok/s | TTFT ms | load ms | load MB/s | peak RSS MB | file MB | mem BW | of wasm max | vs llama2.c |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const ours = r.results.rama;
    const theirs = r.results.llama2c;
    const tok = ours.map((x) => x.tokPerSec);
    const ratio = theirs.length ? median(tok) / median(theirs.map((x) => x.tokPerSec)) : undefined;
    const loadMs = median(ours.map((x) => x.loadMs));
    lines.push(`| ${r.model} | ${r.format} | rama (${threadsLabel} thr) | ${fmt(median(tok))} | ${fmt(Math.min(...tok))} | ${fmt(Math.max(...tok))} | ` +
      `${fmt(median(ours.map((x) => x.promptTokPerSec)))} | ${fmt(median(ours.map((x) => x.ttftMs)))} | ${fmt(loadMs, 0)} | ${fmt(r.fileMB / (loadMs / 1e3), 0)} | ` +
      `${fmt(median(ours.map((x) => x.peakRssMB)), 0)} | ${fmt(r.fileMB, 0)} | ${bw(r, median(tok))} | ${bw(r, median(tok), wasmGBs)} | ${ratio === undefined ? '-' : `${fmt(ratio, 2)}x`} |`);
    if (theirs.length) {
      const t = theirs.map((x) => x.tokPerSec);
      lines.push(`| ${r.model} | ${r.format} | llama2.c ${r.format === 'q80' ? 'runq' : 'run'} (OMP ${a.threads ?? availableParallelism()}) | ${fmt(median(t))} | ${fmt(Math.min(...t))} | ${fmt(Math.max(...t))} | - | - | - | - | ` +
        `${fmt(median(theirs.map((x) => x.peakRssMB)), 0)} | ${fmt(r.fileMB, 0)} | ${bw(r, median(t))} | ${bw(r, median(t), wasmGBs)} | 1.00x |`);
    }
  }
  if (rows.some((r) => r.context)) console.log(`context: ${rows.filter((r) => r.context).map((r) => `${r.model} ${r.context} positions`).join(', ')}`);
  console.log(`\n${lines.join('\n')}\n`);
  console.log(`rama backend: ${rows[0]?.results.rama[0]?.backend ?? '-'}`);
  if (a.json) writeFileSync(a.json, JSON.stringify({ date: new Date().toISOString(), cpu, cores: availableParallelism(), node: process.version, args: a, readGBs, wasmGBs, rows }, null, 2));
}

/** The synthetic model file for a model key and format (generated once into .cache/models). */
function synth(testkit, m, f) {
  const name = `${m}${f === 'q80' ? '_q80' : ''}.bin`;
  process.stdout.write(`  ${name}: generating if needed... `);
  return testkit.synthModel(name, `--shape ${MODELS[m].shape}${f === 'q80' ? ' --format q80' : ''}`);
}

/**
 * --contention: tokens/s for 1 thread, 2 threads and the default, interleaved
 * run by run, with a busy process (a tight loop, one core) running beside.
 */
async function contention(a, testkit, tokenizer, cpu) {
  if (availableParallelism() < 2) die('--contention compares 1 and 2 threads: it needs at least 2 cores');
  const configs = [1, 2, undefined];
  const label = (t) => (t === undefined ? 'default' : `${t} thr`);
  console.log(`bench --contention: ${cpu}, ${availableParallelism()} cores, Node ${process.version}, a busy process beside, ` +
    `${a.steps} positions, ${a.runs} runs each of ${configs.map(label).join(', ')}`);
  const busy = spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' });
  // never leave it running: also on Ctrl-C or a failed run
  const stop = () => busy.kill();
  process.once('exit', stop);
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
  const rows = [];
  try {
    for (const m of a.models) {
      for (const f of a.formats) {
        const model = synth(testkit, m, f);
        const results = configs.map(() => []);
        for (let i = 0; i < a.runs; i++) {
          for (const [j, t] of configs.entries()) results[j].push(await runRama(a, model, tokenizer, t));
          process.stdout.write(`${i + 1} `);
        }
        process.stdout.write('\n');
        rows.push({ model: MODELS[m].label, format: f, results });
      }
    }
  } finally {
    stop();
  }
  const cell = (rs) => {
    const tok = rs.map((x) => x.tokPerSec);
    return `${fmt(median(tok))} (${fmt(Math.min(...tok))}-${fmt(Math.max(...tok))})`;
  };
  const lines = [
    `| model | format | ${configs.map((t) => `${label(t)} tok/s median (min-max)`).join(' | ')} | default / best of 1, 2 |`,
    `|---|---|${configs.map(() => '---:|').join('')}---:|`,
  ];
  for (const r of rows) {
    const [one, two, def] = r.results.map((rs) => median(rs.map((x) => x.tokPerSec)));
    lines.push(`| ${r.model} | ${r.format} | ${r.results.map(cell).join(' | ')} | ${fmt(def / Math.max(one, two), 2)}x |`);
  }
  console.log(`\n${lines.join('\n')}\n`);
  console.log(`rama backend (default): ${rows[0]?.results[2][0]?.backend ?? '-'}`);
  if (a.json) writeFileSync(a.json, JSON.stringify({ date: new Date().toISOString(), cpu, cores: availableParallelism(), node: process.version, contention: true, args: a, rows }, null, 2));
}

/** --sessions N: N concurrent sessions against one alone, interleaved run by run. */
async function sessionsBench(a, testkit, tokenizer, cpu) {
  const counts = [1, a.sessions];
  console.log(`bench --sessions ${a.sessions}: ${cpu}, ${availableParallelism()} cores, Node ${process.version}, backend ${a.backend ?? 'cpu'}, ` +
    `${a.threads ?? 'default'} threads, ${a.steps} positions per session, ${a.runs} runs each`);
  const rows = [];
  for (const m of a.models) {
    for (const f of a.formats) {
      const model = synth(testkit, m, f);
      const results = counts.map(() => []);
      for (let i = 0; i < a.runs; i++) {
        for (const [j, n] of counts.entries()) results[j].push(await runRama(a, model, tokenizer, a.threads, n));
        process.stdout.write(`${i + 1} `);
      }
      process.stdout.write('\n');
      rows.push({ model: MODELS[m].label, format: f, results });
    }
  }
  const cell = (xs) => `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})`;
  const lines = [
    '| model | format | sessions | aggregate tok/s median (min-max) | per-session tok/s median | peak RSS MB | aggregate vs 1 session |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const base = median(r.results[0].map((x) => x.aggregateTokPerSec));
    for (const [j, n] of counts.entries()) {
      const rs = r.results[j];
      const agg = rs.map((x) => x.aggregateTokPerSec);
      lines.push(`| ${r.model} | ${r.format} | ${n} | ${cell(agg)} | ${fmt(median(rs.map((x) => x.perSessionTokPerSec)))} | ` +
        `${fmt(median(rs.map((x) => x.peakRssMB)), 0)} | ${fmt(median(agg) / base, 2)}x |`);
    }
  }
  console.log(`\n${lines.join('\n')}\n`);
  console.log(`rama backend: ${rows[0]?.results[0][0]?.backend ?? '-'}`);
  if (a.json) writeFileSync(a.json, JSON.stringify({ date: new Date().toISOString(), cpu, cores: availableParallelism(), node: process.version, sessions: a.sessions, args: a, rows }, null, 2));
}

/** --against DIR: see src/against.mjs. */
async function againstBench(a, testkit, tokenizer, cpu) {
  const { against, againstTable } = await import('./against.mjs');
  const here = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
  console.log(`bench --against ${a.against}: ${cpu}, ${availableParallelism()} cores, Node ${process.version}, ${a.threads ?? 'default'} threads, ` +
    `${a.steps} positions, ${a.runs} rounds`);
  const models = [];
  for (const m of a.models) for (const f of a.formats) models.push({ label: MODELS[m].label, format: f, file: synth(testkit, m, f) });
  try {
    const rows = await against({ other: a.against, here, models, tokenizer, threads: a.threads, steps: a.steps, rounds: a.runs });
    console.log(`\n${againstTable(rows)}\n`);
    if (a.json) writeFileSync(a.json, JSON.stringify({ date: new Date().toISOString(), cpu, node: process.version, args: a, rows }, null, 2));
  } catch (e) {
    die(e.message);
  }
}

/** --matmul-rows: one matmul's time per row for 1, 2, 4 and 8 rows (each best of 3 batches of 20 steps x 20 matmuls). */
async function matmulRows(a, cpu) {
  const [{ WasmCpuBackend }, { contiguousRows }] = await Promise.all([import('@rama/tensor-cpu'), import('@rama/backend')]);
  const [d, n, gs] = [2048, 768, 64];
  console.log(`bench --matmul-rows: ${cpu}, ${availableParallelism()} cores, Node ${process.version}, a ${d}x${n} matrix (stories110M's w1)`);
  const lines = ['| dtype | threads | rows | µs per matmul | µs per row | per row vs 1 row |', '|---|---:|---:|---:|---:|---:|'];
  for (const threads of a.threads ? [a.threads] : [1, 2]) {
    const be = await WasmCpuBackend.create({ threads });
    try {
      const w8 = new Uint8Array(d * n + (d * n / gs) * 4);
      for (let i = 0; i < d * n; i++) w8[i] = (Math.imul(i, 7919) >>> 3) % 255 - 127 + 256; // int8 values in [-127, 127]
      new Float32Array(w8.buffer, d * n).fill(0.01);
      const weights = {
        q80: await be.upload({ shape: [d, n], dtype: 'q8_0', label: 'w1', groupSize: gs }, w8),
        f32: await be.upload({ shape: [d, n], dtype: 'f32', label: 'w1' }, Float32Array.from({ length: d * n }, (_, i) => Math.sin(i) * 0.02)),
      };
      for (const [dtype, w] of Object.entries(weights)) {
        let one;
        for (const rows of [1, 2, 4, 8]) {
          const x = be.alloc({ shape: [rows, n], dtype: 'f32', label: 'x' });
          be.write(x, Float32Array.from({ length: rows * n }, (_, i) => Math.sin(i)));
          const out = be.alloc({ shape: [rows, d], dtype: 'f32', label: 'out' });
          const batch = async () => {
            const t0 = performance.now();
            for (let k = 0; k < 20; k++) {
              const step = be.begin(contiguousRows(0, rows));
              for (let j = 0; j < 20; j++) step.matmul(out, x, w);
              const done = step.read(out, 1);
              step.submit();
              await done;
            }
            return ((performance.now() - t0) / 400) * 1000;
          };
          await batch();
          const us = Math.min(await batch(), await batch(), await batch());
          one ??= us;
          lines.push(`| ${dtype} | ${threads} | ${rows} | ${fmt(us, 0)} | ${fmt(us / rows, 0)} | ${fmt(us / rows / one, 2)}x |`);
          be.free(x);
          be.free(out);
        }
      }
    } finally {
      be.dispose();
    }
  }
  console.log(`\n${lines.join('\n')}\n`);
}

const args = parseArgs(process.argv.slice(2));
if (args.child === 'rama') await child(args);
else if (args.child === 'rama-gguf') await (await import('./gguf-bench.mjs')).ggufChild(args);
else if (args.child === 'node-llama-cpp') await (await import('./gguf-bench.mjs')).nodeLlamaCppGgufChild(args);
else if (args.child) die(`unknown child ${args.child}`);
else await parent(args);
