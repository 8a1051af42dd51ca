// pnpm bench --gguf <dir or .gguf files...>: Rama's CPU backend against
// llama.cpp's llama-bench on the same GGUF files, on the same machine, with
// the same thread count (--threads, default 2).
//
// For each file, --runs times (default 3), interleaved run by run:
// - Rama, one child process: load, a warm-up (a 32-token prompt and one
//   decoded token), then pp128 (a 128-token prompt read, tokens/s up to the
//   first sampled token) and tg128 (BOS, then 128 greedy decode steps, tokens/s
//   of those steps), with a KV cache of 256 positions (llama-bench's n_ctx for
//   -p 128 -n 128).
// - llama.cpp: `llama-bench -m F -p 128 -n 128 -t T -r 1 -o json` (its own
//   warm-up, then pp128 and tg128 as two tests), one child process.
// Peak RSS is each child's VmHWM. The table gives medians and min-max, each
// ratio to llama.cpp, and Rama's peak RSS next to the file size plus Rama's
// KV cache (256 positions; f32, or f16 with --kv-cache f16, llama.cpp's
// default): the target is RSS <= (file + KV) x 1.1.
//
// The prompt is 128 fixed token ids (BOS, then ids spread over the
// vocabulary), as llama-bench reads random ids; decoding never stops at EOS
// (Rama's generate goes on past EOS unless told otherwise), but a sampled BOS
// ends a sequence (llama2.c's rule): a tg run that decoded fewer than 128
// tokens is marked in the table.
//
// --llama-bench PATH: llama-bench's binary (default
// /tmp/llama.cpp/build/bin/llama-bench when it exists; without one, or with
// `--llama-bench none`, Rama runs alone). A file whose context (llama.context_length) is under 256 cannot
// hold the KV cache: llama.cpp's llama2.c converter writes 128; quantize with
// `llama-quantize --override-kv llama.context_length=int:1024 ...`.
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { nodeLlamaCppChild, nodeLlamaCppEntry } from './node-llama-cpp.mjs';

const DEFAULT_LLAMA_BENCH = '/tmp/llama.cpp/build/bin/llama-bench';
const PROMPT_TOKENS = 128;
const GEN_TOKENS = 128;
/** llama-bench's n_ctx for -p 128 -n 128: n_prompt + n_gen. */
const CONTEXT = PROMPT_TOKENS + GEN_TOKENS;
/** Quantization types in the order the table lists them (others after, by name). */
const TYPE_ORDER = ['F32', 'BF16', 'F16', 'Q8_0', 'Q6_K', 'Q5_K_M', 'Q5_0', 'Q4_K_M', 'Q4_K_S', 'Q4_0'];

/** The benchmark's prompt: BOS, then PROMPT_TOKENS - 1 ids spread over the vocabulary past the special ids 0-2. */
function promptIds(bosId, vocabSize) {
  const ids = [bosId];
  let x = 12345;
  while (ids.length < PROMPT_TOKENS) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0; // an LCG: the same prompt every run
    ids.push(3 + ((x >>> 8) % (vocabSize - 3)));
  }
  return ids;
}

/**
 * Child: one Rama measurement of `a.model` (warm-up, pp128, tg128), printed as one JSON line.
 * Called by bench.mjs for `--child rama-gguf`.
 */
export async function ggufChild(a) {
  const { Llama } = await import('@rama/llama');
  const t0 = performance.now();
  // yieldEveryMs: Infinity: nothing else runs in this process, so the loop never hands the event loop a turn.
  const opts = { model: a.model, backend: 'cpu', threads: a.threads, contextLength: a.context, yieldEveryMs: Infinity, ...(a.kvCache && { kvCacheType: a.kvCache }) };
  const llama = await Llama.load(opts).catch((e) => {
    if (/contextLength/.test(e.message)) {
      e.message += ` (the bench needs ${a.context} positions: quantize with llama-quantize --override-kv llama.context_length=int:N)`;
    }
    throw e;
  });
  const loadMs = performance.now() - t0;
  const spec = llama.spec;
  const prompt = promptIds(spec.bosId, spec.vocabSize);
  const run = async (ids, maxTokens) => {
    const gen = llama.generate(ids, { maxTokens, temperature: 0, echo: false });
    for await (const _ of gen) { /* drain */ }
    return gen.result();
  };
  // Warm-up: first-use costs (workers, buffers, compilation) out of the measurement; 32 prompt tokens (one full
  // batch of the default batchSize) and one decode step run every path pp and tg take.
  await run(prompt.slice(0, 32), 2);
  const pp = await run(prompt, 1);
  // BOS, then GEN_TOKENS + 1 samples: the first comes from the prompt's position, the next GEN_TOKENS each from one decode step.
  const tg = await run([spec.bosId], GEN_TOKENS + 1);
  const out = {
    ppTokPerSec: pp.timing.promptTokensPerSecond,
    ppTokens: pp.promptTokens,
    tgTokPerSec: tg.timing.tokensPerSecond,
    tgTokens: tg.generatedTokens - 1,
    tgReason: tg.reason,
    loadMs,
    selfMaxRssMB: process.resourceUsage().maxRSS / 1024,
    // Rama's KV cache: keys and values, every layer, `context` positions, f32 unless told f16.
    kvMB: (2 * spec.nLayers * llama.contextLength * spec.kvDim * (llama.kvCacheType === 'f16' ? 2 : 4)) / 1e6,
    kvType: llama.kvCacheType ?? 'f32',
    shape: { dim: spec.dim, layers: spec.nLayers, heads: spec.nHeads, kvHeads: spec.nKvHeads, vocab: spec.vocabSize },
    backend: llama.backend.description,
  };
  llama.dispose();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** Child: one node-llama-cpp measurement (src/node-llama-cpp.mjs) with the prompt Rama reads. Called for `--child node-llama-cpp`. */
export async function nodeLlamaCppGgufChild(a) {
  await nodeLlamaCppChild(a, promptIds, GEN_TOKENS, CONTEXT);
}

/** A path given on the command line: `pnpm bench` runs in examples/bench, pnpm's INIT_CWD is where it was typed. */
const fromCwd = (p) => resolve(process.env.INIT_CWD ?? '.', p);

/** The .gguf files named by `--gguf` (files, or folders whose *.gguf files are all taken). */
function ggufFiles(paths, die) {
  const files = [];
  for (const p of paths.map(fromCwd)) {
    if (!existsSync(p)) die(`--gguf: ${p} not found`);
    if (statSync(p).isDirectory()) {
      const inDir = readdirSync(p).filter((f) => f.endsWith('.gguf')).map((f) => join(p, f));
      if (inDir.length === 0) die(`--gguf: no .gguf file in ${p}`);
      files.push(...inDir);
    } else files.push(p);
  }
  return [...new Set(files.map((f) => resolve(f)))].sort(byModelThenType);
}

/** The quantization type in a file name (`stories110M-Q4_K_M.gguf` -> Q4_K_M), or undefined. */
function typeOf(file) {
  const m = /(?:^|[-._])((?:[IT]Q\d|Q\d|BF|F)\w*?)(?:\.gguf)$/i.exec(basename(file));
  return m ? m[1].toUpperCase() : undefined;
}
function byModelThenType(x, y) {
  const model = (f) => basename(f).slice(0, basename(f).length - (typeOf(f)?.length ?? 0) - 5);
  if (model(x) !== model(y)) return model(x) < model(y) ? -1 : 1;
  const rank = (f) => {
    const i = TYPE_ORDER.indexOf(typeOf(f) ?? '');
    return i < 0 ? TYPE_ORDER.length : i;
  };
  return rank(x) - rank(y) || (x < y ? -1 : x > y ? 1 : 0);
}

/** llama-bench's pp and tg tokens/s for one file (one repetition each) and its peak RSS. */
async function runLlamaBench(measure, bin, file, threads) {
  const r = await measure(bin, ['-m', file, '-p', String(PROMPT_TOKENS), '-n', String(GEN_TOKENS), '-t', String(threads), '-r', '1', '-o', 'json'], {});
  let tests;
  try {
    tests = JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(`${bin}: its output is not JSON (${e.message}): ${r.stdout.slice(0, 500)}`);
  }
  const pp = tests.find((t) => t.n_prompt === PROMPT_TOKENS && t.n_gen === 0);
  const tg = tests.find((t) => t.n_prompt === 0 && t.n_gen === GEN_TOKENS);
  if (!pp || !tg) throw new Error(`${bin}: no pp${PROMPT_TOKENS} / tg${GEN_TOKENS} test in its output`);
  return { ppTokPerSec: pp.avg_ts, tgTokPerSec: tg.avg_ts, peakRssMB: r.peakRssMB, commit: pp.build_commit, kvType: pp.type_k, loadMode: pp.load_mode };
}

/**
 * pnpm bench --gguf: the parent. `h` holds bench.mjs's helpers: measure (a child
 * process and its peak RSS), median, fmt, die, the CPU's name and bench.mjs's path
 * (run with `--child rama-gguf`).
 */
export async function ggufBench(a, h) {
  const { measure, median, fmt, die, cpu, script } = h;
  const threads = a.threads ?? 2;
  const runs = a.runs;
  const files = ggufFiles(a.gguf, die);
  const none = a.llamaBench === 'none';
  const llamaBench = none ? undefined : a.llamaBench ? fromCwd(a.llamaBench) : existsSync(DEFAULT_LLAMA_BENCH) ? DEFAULT_LLAMA_BENCH : undefined;
  if (a.llamaBench && !none && !existsSync(llamaBench)) die(`--llama-bench: ${llamaBench} not found`);
  const nlcDir = a.nodeLlamaCpp ? fromCwd(a.nodeLlamaCpp) : undefined;
  if (nlcDir) {
    try {
      nodeLlamaCppEntry(nlcDir);
    } catch (e) {
      die(e.message);
    }
  }
  if (!llamaBench && !none) console.log(`bench --gguf: no llama-bench (${DEFAULT_LLAMA_BENCH} not found, no --llama-bench): Rama runs alone`);
  console.log(`bench --gguf: ${cpu}, ${availableParallelism()} cores, Node ${process.version}, ${threads} threads, ` +
    `pp${PROMPT_TOKENS} + tg${GEN_TOKENS}, ${runs} runs each, interleaved${llamaBench ? `, llama-bench ${llamaBench}` : ''}`);

  const cell = (xs) => (xs.length ? `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` : '-');
  const ratio = (ours, theirs) => (ours.length && theirs.length ? `${fmt(median(ours) / median(theirs), 2)}x` : '-');
  const HEADER = [
    '| file | engine | pp128 tok/s median (min-max) | tg128 tok/s median (min-max) | pp vs llama.cpp | tg vs llama.cpp | peak RSS MB | file + KV MB | RSS / (file + KV) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  /** One file's table lines (Rama, llama.cpp, node-llama-cpp) and its notes. */
  const rowLines = (r) => {
    const lines = [];
    const notes = [];
    const ours = r.results.rama;
    const theirs = r.results.llama;
    const pp = (xs) => xs.map((x) => x.ppTokPerSec);
    const tg = (xs) => xs.map((x) => x.tgTokPerSec);
    const short = ours.filter((x) => x.tgTokens < GEN_TOKENS);
    if (short.length) notes.push(`${r.file}: ${short.length} Rama tg run(s) stopped early (${short.map((x) => `${x.tgTokens} tokens, ${x.tgReason}`).join('; ')})`);
    if (ours.length) {
      const kvMB = ours[0].kvMB;
      const rss = median(ours.map((x) => x.peakRssMB));
      lines.push(`| ${r.file} | rama (${threads} thr) | ${cell(pp(ours))} | ${cell(tg(ours))}${short.length ? ' *' : ''} | ${ratio(pp(ours), pp(theirs))} | ` +
        `${ratio(tg(ours), tg(theirs))} | ${fmt(rss, 0)} | ${fmt(r.fileMB, 0)} + ${fmt(kvMB, 0)} | ${fmt(rss / (r.fileMB + kvMB), 2)}${rss <= 1.1 * (r.fileMB + kvMB) ? '' : ' (over 1.1)'} |`);
    } else lines.push(`| ${r.file} | rama (${threads} thr) | failed | | | | | | |`);
    if (theirs.length) {
      lines.push(`| ${r.file} | llama.cpp (${threads} thr) | ${cell(pp(theirs))} | ${cell(tg(theirs))} | 1.00x | 1.00x | ${fmt(median(theirs.map((x) => x.peakRssMB)), 0)} | | |`);
    } else if (r.errors.llama) lines.push(`| ${r.file} | llama.cpp (${threads} thr) | failed | | | | | | |`);
    const nlc = r.results.nlc;
    if (nlc.length) {
      lines.push(`| ${r.file} | node-llama-cpp (${threads} thr) | ${cell(pp(nlc))} | ${cell(tg(nlc))} | ${ratio(pp(nlc), pp(theirs))} | ${ratio(tg(nlc), tg(theirs))} | ` +
        `${fmt(median(nlc.map((x) => x.peakRssMB)), 0)} | | |`);
    } else if (r.errors.nlc) lines.push(`| ${r.file} | node-llama-cpp (${threads} thr) | failed | | | | | | |`);
    return { lines, notes };
  };
  const writeJson = () => a.json && writeFileSync(a.json, JSON.stringify({ date: new Date().toISOString(), cpu, cores: availableParallelism(), node: process.version, threads, runs, llamaBench, rows }, null, 2));

  const rows = [];
  for (const file of files) {
    const fileMB = statSync(file).size / 1e6;
    const results = { rama: [], llama: [], nlc: [] };
    const errors = {};
    process.stdout.write(`  ${basename(file)} (${fmt(fileMB, 0)} MB): `);
    for (let i = 0; i < runs; i++) {
      if (!errors.rama) {
        try {
          const r = await measure(process.execPath, [script, '--child', 'rama-gguf', '--model', file, '--threads', String(threads), '--context', String(CONTEXT),
            ...(a.kvCache ? ['--kv-cache', a.kvCache] : [])], {});
          const j = JSON.parse(r.stdout.trim().split('\n').pop());
          results.rama.push({ ...j, peakRssMB: r.peakRssMB ?? j.selfMaxRssMB });
        } catch (e) {
          errors.rama = /^\w*Error: .*/m.exec(e.message)?.[0] ?? e.message.slice(0, 300);
        }
      }
      if (llamaBench && !errors.llama) {
        try {
          results.llama.push(await runLlamaBench(measure, llamaBench, file, threads));
        } catch (e) {
          errors.llama = e.message.slice(0, 300);
        }
      }
      if (nlcDir && !errors.nlc) {
        try {
          const r = await measure(process.execPath, [script, '--child', 'node-llama-cpp', '--model', file, '--threads', String(threads), '--node-llama-cpp', nlcDir],
            { UV_THREADPOOL_SIZE: '1' });
          const j = JSON.parse(r.stdout.trim().split('\n').pop());
          results.nlc.push({ ...j, peakRssMB: r.peakRssMB ?? j.selfMaxRssMB });
        } catch (e) {
          errors.nlc = e.message.slice(0, 300);
        }
      }
      process.stdout.write(`${i + 1} `);
    }
    process.stdout.write('\n');
    for (const [k, msg] of Object.entries(errors)) console.log(`    ${{ rama: 'Rama', llama: 'llama-bench', nlc: 'node-llama-cpp' }[k]} failed: ${msg.trim()}`);
    rows.push({ file: basename(file), type: typeOf(file) ?? '?', fileMB, results, errors });
    // Each file's rows as soon as they are measured, so a run cut short still leaves its numbers.
    for (const l of rowLines(rows[rows.length - 1]).lines) console.log(`    ${l}`);
    writeJson();
  }

  const lines = [...HEADER];
  const notes = [];
  for (const r of rows) {
    const x = rowLines(r);
    lines.push(...x.lines);
    notes.push(...x.notes);
  }
  console.log(`\n${lines.join('\n')}\n`);
  for (const n of notes) console.log(`* ${n}`);
  const first = rows.find((r) => r.results.rama.length)?.results.rama[0];
  if (first) console.log(`rama backend: ${first.backend}, KV cache ${first.kvType}, ${CONTEXT} positions`);
  const lc = rows.find((r) => r.results.llama.length)?.results.llama[0];
  if (lc) console.log(`llama.cpp: build ${lc.commit}, KV cache ${lc.kvType}, weights ${lc.loadMode}`);
  writeJson();
}
