/**
 * The WebGPU check: what the adapter is, whether every generate golden
 * (shared/goldens/generate.jsonl) comes out exactly on it, and how fast the
 * engine decodes and reads prompts at real model shapes (synthetic weights),
 * with the GPU time of each kernel from timestamp queries.
 *
 * Bundled into one file by scripts/pack-gpu-check.sh and run by
 * scripts/gpu-check.sh on a machine with no Node install (see BENCHMARKS.md,
 * "GPU (WebGPU)"). Prints one JSON document on stdout (also written to
 * RAMA_GPU_OUT) and a human summary on stderr.
 *
 * Environment (all optional):
 *   RAMA_SHARED                 shared/ folder with goldens/, models/, tools/synth-model.mjs
 *   RAMA_GPU_MODELS             models to measure, comma-separated (see MODELS; "" for none)
 *   RAMA_GPU_MODEL_DIR          where scripts/gpu-check.sh writes them (NAME.bin; NAME.failed if synth failed)
 *   RAMA_GPU_GOLDENS            0 to skip the goldens
 *   RAMA_GPU_GOLDEN_KERNELS     matmul kernels to run the goldens with: "default", or a list of rows,workgroups
 *   RAMA_GPU_PROMPT, RAMA_GPU_DECODE   prompt / decoded tokens per model (default: per model, below)
 *   RAMA_GPU_PROFILE_TOKENS     decoded tokens in the profiled run (default 32; 0: no profiled run)
 *   RAMA_GPU_CPU_TOKENS         greedy tokens compared with the CPU backend (default 16; 0: none)
 *   RAMA_GPU_CPU_MAX_BYTES      largest model file the CPU comparison loads (default 2 GB)
 *   RAMA_GPU_BATCH              rows per step (prompt positions read together; default 32)
 *   RAMA_GPU_OUT                path of the JSON file to write besides stdout
 *   RAMA_GPU_DEADLINE_MS        epoch ms by which to have finished: a model that would not be measured by then
 *                               (its file not written yet, or too little time left) is skipped with a reason
 *
 * `--synth-plan NAMES` prints `name|synth-model arguments` per model and exits
 * (scripts/gpu-check.sh makes the models from it).
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Llama, type GenerationResult } from '@rama/llama';
import { WebGpuBackend, type KernelTime, type MatmulKernels } from '@rama/tensor-webgpu';
import { CpuBackend } from '@rama/tensor-cpu';
import { comparableOutput, generateGoldens, goldenExpectation, goldenModelPath, sharedDir, sharedFile } from '@rama/testkit';

/** Synthetic models at real shapes: synth-model.mjs arguments, prompt and decode lengths. */
const MODELS: Record<string, { label: string; synth: string; prompt: number; decode: number }> = {
  s15: { label: 'stories15M fp32', synth: '--shape stories15M', prompt: 128, decode: 112 },
  s15q: { label: 'stories15M q80', synth: '--shape stories15M --format q80', prompt: 128, decode: 112 },
  s110: { label: 'stories110M fp32', synth: '--shape stories110M', prompt: 256, decode: 128 },
  s110q: { label: 'stories110M q80', synth: '--shape stories110M --format q80', prompt: 256, decode: 128 },
  tl1bq: { label: 'TinyLlama-1.1B q80', synth: '--shape tinyllama1B --format q80', prompt: 256, decode: 128 },
  l7bq: { label: 'Llama-2-7B q80', synth: '--shape llama2_7B --format q80', prompt: 512, decode: 128 },
};
const DEFAULT_MODELS = 's15,s110,s110q,tl1bq,l7bq';

const env = process.env;
const num = (name: string, dflt: number): number => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${v}`);
  return n;
};
const log = (msg: string): void => void process.stderr.write(`[gpu-check] ${msg}\n`);
const round = (x: number, d = 2): number => Number(x.toFixed(d));

function modelNames(list: string | undefined): string[] {
  const names = (list ?? DEFAULT_MODELS).split(',').map((s) => s.trim()).filter(Boolean);
  for (const n of names) if (!MODELS[n]) throw new Error(`unknown model ${n}; one of ${Object.keys(MODELS).join(', ')}`);
  return names;
}

if (process.argv[2] === '--synth-plan') {
  for (const n of modelNames(process.argv[3])) process.stdout.write(`${n}|${MODELS[n].synth}\n`);
  process.exit(0);
}

// ---------------------------------------------------------------- adapter

interface WebGpuModule {
  create(flags: string[]): GPU;
  globals: object;
}
// Kept at module scope: Dawn crashes if the object create() returns is collected while in use.
let gpu: GPU | undefined;

async function adapterReport(): Promise<Record<string, unknown>> {
  const spec = 'webgpu';
  const mod = (await import(/* @vite-ignore */ spec)) as WebGpuModule;
  gpu = mod.create(['disable-dawn-features=timestamp_quantization']);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return { found: false };
  const i = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; isFallbackAdapter?: boolean };
  const limits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const features = [...adapter.features].sort();
  return {
    found: true,
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    subgroupMinSize: i.subgroupMinSize,
    subgroupMaxSize: i.subgroupMaxSize,
    isFallbackAdapter: i.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false,
    shaderF16: features.includes('shader-f16'),
    timestampQuery: features.includes('timestamp-query'),
    subgroups: features.includes('subgroups'),
    features,
    wgslLanguageFeatures: [...(gpu.wgslLanguageFeatures ?? [])].sort(),
    limits,
  };
}

// ---------------------------------------------------------------- goldens

interface GoldenOutcome {
  id: string;
  kernels: string;
  pass: boolean;
  tokens?: number;
  expectedTokens?: number;
  firstDiff?: number | null;
  expectedId?: number;
  gotId?: number;
  textMatches?: boolean;
  ms?: number;
  error?: string;
}

async function runGoldens(variants: (MatmulKernels | undefined)[]): Promise<GoldenOutcome[]> {
  const out: GoldenOutcome[] = [];
  const goldens = generateGoldens();
  if (!goldens.length) throw new Error(`no goldens under ${sharedDir()} (set RAMA_SHARED)`);
  for (const kernels of variants) {
    for (const g of goldens) {
      const o: GoldenOutcome = { id: g.id, kernels: kernels ?? 'default', pass: false };
      const t0 = performance.now();
      let backend: WebGpuBackend | undefined;
      try {
        const model = goldenModelPath(g);
        const tokenizer = sharedFile(`models/${g.tokenizer}`);
        if (!model || !tokenizer) throw new Error(`missing ${model ? g.tokenizer : g.model} under ${sharedDir()}`);
        backend = await WebGpuBackend.create({ maxRows: 32, matmulKernels: kernels });
        o.kernels = backend.matmulKernels + (kernels ? '' : ' (default)');
        const llama = await Llama.load({ model, tokenizer, backend });
        try {
          const r = await llama.generate(g.prompt, { steps: g.steps, temperature: g.temperature, topp: g.topp, seed: g.seed }).result();
          const got = comparableOutput(g, r, 'webgpu');
          const want = goldenExpectation(g, 'webgpu');
          let diff = -1;
          for (let k = 0; k < Math.max(got.tokens.length, want.tokens.length); k++) {
            if (got.tokens[k] !== want.tokens[k]) {
              diff = k;
              break;
            }
          }
          o.tokens = got.tokens.length;
          o.expectedTokens = want.tokens.length;
          o.firstDiff = diff < 0 ? null : diff;
          if (diff >= 0) {
            o.expectedId = want.tokens[diff];
            o.gotId = got.tokens[diff];
          }
          o.textMatches = want.text === undefined || got.text === want.text;
          o.pass = diff < 0 && o.textMatches;
        } finally {
          llama.dispose();
        }
      } catch (e) {
        o.error = String((e as Error)?.message ?? e).split('\n')[0];
      } finally {
        backend?.dispose();
      }
      o.ms = Math.round(performance.now() - t0);
      log(`golden ${o.id} [${o.kernels}]: ${o.pass ? 'pass' : `FAIL${o.error ? ` (${o.error})` : ` at token ${o.firstDiff}: expected ${o.expectedId}, got ${o.gotId}`}`} (${o.ms} ms)`);
      out.push(o);
    }
  }
  return out;
}

// ---------------------------------------------------------------- speed

/** A fixed prompt of `n` ids: BOS, then ids spread over the vocabulary (not 1 or 2: BOS and EOS). */
function promptIds(n: number, vocab = 32000): number[] {
  const ids = [1];
  let s = 12345;
  while (ids.length < n) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    ids.push(3 + (s % (vocab - 3)));
  }
  return ids;
}

/** Time a model's measurement needs once its file is there (loading it twice, the runs): more for the 7B. */
const reserveMs = (name: string): number => (name === 'l7bq' ? 90_000 : 30_000);
const deadline = (): number => (env.RAMA_GPU_DEADLINE_MS ? Number(env.RAMA_GPU_DEADLINE_MS) : Infinity);

async function waitForModel(dir: string, name: string): Promise<string> {
  const timeoutMs = Math.min(20 * 60_000, deadline() - Date.now() - reserveMs(name));
  const file = join(dir, `${name}.bin`);
  const failed = join(dir, `${name}.failed`);
  const t0 = Date.now();
  let said = false;
  while (!existsSync(file)) {
    if (existsSync(failed)) throw new Error(`synth-model failed for ${name} (see ${failed})`);
    if (Date.now() - t0 > timeoutMs) throw new Error(`skipped: ${file} not written in time for RAMA_GPU_DEADLINE_MS (waited ${Math.round((Date.now() - t0) / 1000)} s)`);
    if (!said) log(`waiting for ${file} (synth-model still writing it)`);
    said = true;
    await new Promise((r) => setTimeout(r, 500));
  }
  return file;
}

const kernelRows = (times: KernelTime[], perTokens: number) =>
  times.map((t) => ({ kernel: t.kernel, count: t.count, ms: round(t.ms, 3), msPerToken: round(t.ms / Math.max(1, perTokens), 4) }));

interface ModelOutcome {
  name: string;
  label: string;
  fileBytes?: number;
  /** How long synth-model.mjs took to write it (scripts/gpu-check.sh records it). */
  synthMs?: number;
  waitedMs?: number;
  loadMs?: number;
  description?: string;
  promptTokens?: number;
  promptTokensPerSecond?: number;
  decodeTokens?: number;
  decodeTokensPerSecond?: number;
  timeToFirstTokenMs?: number;
  stopReason?: string;
  profile?: {
    promptKernels: ReturnType<typeof kernelRows>;
    decodeKernels: ReturnType<typeof kernelRows>;
    decodeTokens: number;
    decodeGpuMsPerToken: number;
    decodeWallMsPerToken: number;
  };
  profileSkipped?: string;
  cpuCheck?: { tokens: number; matchingPrefix: number; gpu: number[]; cpu: number[]; cpuTokensPerSecond: number } | { skipped: string };
  error?: string;
}

async function loadOn(backend: WebGpuBackend | Awaited<ReturnType<typeof CpuBackend.create>>, model: string, tokenizer: string, batch: number, ctx: number) {
  return Llama.load({ model, tokenizer, backend, batchSize: batch, contextLength: ctx, yieldEveryMs: Infinity });
}

async function measureModel(name: string, dir: string, tokenizer: string): Promise<ModelOutcome> {
  const m = MODELS[name];
  const o: ModelOutcome = { name, label: m.label };
  const batch = num('RAMA_GPU_BATCH', 32);
  const decode = num('RAMA_GPU_DECODE', m.decode);
  const profileTokens = num('RAMA_GPU_PROFILE_TOKENS', 32);
  const cpuTokens = num('RAMA_GPU_CPU_TOKENS', 16);
  const t0 = performance.now();
  const file = await waitForModel(dir, name);
  o.waitedMs = Math.round(performance.now() - t0);
  const synthMs = join(dir, `${name}.ms`);
  if (existsSync(synthMs)) o.synthMs = Number(readFileSync(synthMs, 'utf8'));
  o.fileBytes = statSync(file).size;
  const ids = promptIds(Math.max(2, num('RAMA_GPU_PROMPT', m.prompt)));
  // KV cache positions: the longest of the runs below (the speed run, its warm-up, the profiled run, the CPU comparison).
  const ctx = Math.max(ids.length + Math.max(decode, profileTokens, 4), 8 + cpuTokens) + 2;

  // Speed: no profiling (timed passes would slow it down).
  let shortGpu: number[] = [];
  {
    const backend = await WebGpuBackend.create({ maxRows: batch });
    try {
      const tl = performance.now();
      const llama = await loadOn(backend, file, tokenizer, batch, ctx);
      o.loadMs = Math.round(performance.now() - tl);
      o.description = backend.description;
      log(`${name}: ${o.fileBytes} bytes loaded in ${o.loadMs} ms (${backend.description})`);
      try {
        // Warm-up: the first steps make bind groups and the RoPE table.
        await llama.generate(ids.slice(0, Math.min(ids.length, batch + 1)), { steps: Math.min(ids.length, batch + 1) + 4, temperature: 0 }).result();
        const r: GenerationResult = await llama.generate(ids, { steps: ids.length + decode, temperature: 0 }).result();
        o.promptTokens = r.promptTokens;
        o.promptTokensPerSecond = round(r.timing.promptTokensPerSecond);
        o.decodeTokens = r.generatedTokens;
        o.decodeTokensPerSecond = round(r.timing.tokensPerSecond);
        o.timeToFirstTokenMs = round(r.timing.timeToFirstTokenMs);
        o.stopReason = r.reason;
        log(`${name}: prompt ${o.promptTokens} tokens at ${o.promptTokensPerSecond} tok/s, decode ${o.decodeTokens} at ${o.decodeTokensPerSecond} tok/s (${r.reason})`);
        if (cpuTokens > 0) {
          const short = ids.slice(0, 8);
          shortGpu = (await llama.generate(short, { steps: short.length + cpuTokens, temperature: 0 }).result()).tokens;
        }
      } finally {
        llama.dispose();
      }
    } finally {
      backend.dispose();
    }
  }

  // Where the GPU time goes: the same prompt, then profileTokens decoded, every dispatch timed.
  if (profileTokens > 0 && Date.now() > deadline() - 20_000) o.profileSkipped = 'too close to RAMA_GPU_DEADLINE_MS';
  else if (profileTokens > 0) {
    const backend = await WebGpuBackend.create({ maxRows: batch, profile: true });
    try {
      const llama = await loadOn(backend, file, tokenizer, batch, ctx);
      try {
        await llama.generate(ids.slice(0, 2), { steps: 4, temperature: 0 }).result();
        backend.resetKernelTimes();
        let promptKernels: KernelTime[] = [];
        let sampled = 0;
        let tDecode = 0;
        const gen = llama.generate(ids, { steps: ids.length + profileTokens, temperature: 0 });
        for await (const t of gen) {
          if (t.prompt) continue;
          // The first sampled token ends the prompt: what ran so far was prompt work. Each later token is one decode step.
          if (sampled++ === 0) {
            promptKernels = await backend.kernelTimes();
            backend.resetKernelTimes();
            tDecode = performance.now();
          }
        }
        const wall = performance.now() - tDecode;
        const decodeKernels = await backend.kernelTimes();
        const decoded = Math.max(1, sampled - 1);
        log(`${name}: profiled ${decoded} decode steps`);
        o.profile = {
          promptKernels: kernelRows(promptKernels, ids.length),
          decodeKernels: kernelRows(decodeKernels, decoded),
          decodeTokens: decoded,
          decodeGpuMsPerToken: round(decodeKernels.reduce((s, t) => s + t.ms, 0) / decoded, 4),
          decodeWallMsPerToken: round(wall / decoded, 4),
        };
      } finally {
        llama.dispose();
      }
    } finally {
      backend.dispose();
    }
  }

  // The CPU backend on the same weights: the same greedy tokens (up to near-ties), and its speed here.
  if (cpuTokens > 0) {
    const max = num('RAMA_GPU_CPU_MAX_BYTES', 2e9);
    if (Date.now() > deadline() - 20_000) o.cpuCheck = { skipped: 'too close to RAMA_GPU_DEADLINE_MS' };
    else if (o.fileBytes > max) o.cpuCheck = { skipped: `file of ${o.fileBytes} bytes > RAMA_GPU_CPU_MAX_BYTES ${max}` };
    else {
      const backend = await CpuBackend.create({ maxRows: batch });
      try {
        const llama = await loadOn(backend, file, tokenizer, batch, ctx);
        try {
          const short = ids.slice(0, 8);
          const r = await llama.generate(short, { steps: short.length + cpuTokens, temperature: 0 }).result();
          let k = 0;
          while (k < r.tokens.length && r.tokens[k] === shortGpu[k]) k++;
          o.cpuCheck = { tokens: r.tokens.length, matchingPrefix: k, gpu: shortGpu, cpu: r.tokens, cpuTokensPerSecond: round(r.timing.tokensPerSecond) };
        } finally {
          llama.dispose();
        }
      } finally {
        backend.dispose();
      }
    }
  }
  return o;
}

// ---------------------------------------------------------------- main

function table(rows: (string | number)[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((v, c) => String(v).padEnd(w[c])).join('  ')).join('\n');
}

async function main(): Promise<void> {
  const report: Record<string, unknown> = { started: new Date().toISOString(), node: process.version, shared: sharedDir() };
  const outFile = env.RAMA_GPU_OUT;
  const save = () => outFile && writeFileSync(outFile, JSON.stringify(report, null, 2));

  report.adapter = await adapterReport();
  log(`adapter: ${JSON.stringify({ ...(report.adapter as object), features: undefined, limits: undefined, wgslLanguageFeatures: undefined })}`);
  save();

  if (env.RAMA_GPU_GOLDENS !== '0') {
    const spec = env.RAMA_GPU_GOLDEN_KERNELS ?? 'default';
    const variants = spec === 'default' ? [undefined] : (spec.split(',').map((s) => s.trim()) as MatmulKernels[]);
    const goldens = await runGoldens(variants);
    report.goldens = { passed: goldens.filter((g) => g.pass).length, total: goldens.length, cases: goldens };
    save();
  }

  const models: ModelOutcome[] = [];
  report.models = models;
  const dir = env.RAMA_GPU_MODEL_DIR ?? '.';
  const tokenizer = sharedFile('models/tokenizer.bin');
  for (const name of modelNames(env.RAMA_GPU_MODELS)) {
    try {
      if (!tokenizer) throw new Error(`models/tokenizer.bin missing under ${sharedDir()}`);
      models.push(await measureModel(name, dir, tokenizer));
    } catch (e) {
      models.push({ name, label: MODELS[name].label, error: String((e as Error)?.message ?? e).split('\n')[0] });
      log(`${name}: ${models[models.length - 1].error}`);
    }
    save();
  }
  report.finished = new Date().toISOString();
  save();
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);

  // The human summary.
  const a = report.adapter as Record<string, unknown>;
  const lines = [`adapter: ${a.vendor} / ${a.architecture} / ${a.device} / ${a.description} (shader-f16 ${a.shaderF16}, timestamp-query ${a.timestampQuery})`];
  const gs = report.goldens as { passed: number; total: number; cases: GoldenOutcome[] } | undefined;
  if (gs) {
    lines.push(`goldens: ${gs.passed}/${gs.total} exact`);
    for (const g of gs.cases.filter((c) => !c.pass)) lines.push(`  FAIL ${g.id} [${g.kernels}] ${g.error ?? `first diff at token ${g.firstDiff}: expected ${g.expectedId}, got ${g.gotId}; text ${g.textMatches ? 'same' : 'differs'}`}`);
  }
  if (models.length) {
    const rows: (string | number)[][] = [['model', 'prompt tok', 'prompt tok/s', 'decode tok', 'decode tok/s', 'GPU ms/tok', 'top kernels (decode, ms/tok)', 'CPU agrees']];
    for (const m of models) {
      if (m.error) {
        rows.push([m.label, 'error', m.error, '', '', '', '', '']);
        continue;
      }
      const top = m.profile?.decodeKernels.slice(0, 3).map((k) => `${k.kernel} ${k.msPerToken}`).join(', ') ?? '';
      const cpu = m.cpuCheck && 'matchingPrefix' in m.cpuCheck ? `${m.cpuCheck.matchingPrefix}/${m.cpuCheck.tokens}` : 'skipped';
      rows.push([m.label, m.promptTokens ?? '', m.promptTokensPerSecond ?? '', m.decodeTokens ?? '', m.decodeTokensPerSecond ?? '', m.profile?.decodeGpuMsPerToken ?? '', top, cpu]);
    }
    lines.push(table(rows));
  }
  process.stderr.write(`\n${lines.join('\n')}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`failed: ${(e as Error)?.stack ?? e}`);
    process.exit(1);
  },
);
