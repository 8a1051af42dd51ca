/**
 * The browser example: load a llama2.c checkpoint and tokenizer (picked files
 * or URLs), generate on WebGPU (or the CPU when WebGPU is missing), stream the
 * text and show tokens/s. The model runs in a Web Worker (@rama/llama/worker)
 * so the page stays responsive; where a worker cannot start (a strict Content
 * Security Policy) or when asked, it runs in the page.
 *
 * Query parameters prefill the form: ?model=URL&tokenizer=URL&prompt=&steps=
 * &temperature=&topp=&seed=&backend=auto|webgpu|cpu&q80=1&engine=worker|page
 * &worker=URL (a prebuilt engine worker script) (and &autorun=1 to start at once). #status gets data-state="done" (or
 * "error") at the end.
 */
import { Llama, type BackendName, type ModelSource } from '@rama/llama';
import { createWorkerLlama, WorkerStartError, type LoadProgress, type WorkerLlama } from '@rama/llama/worker';

const el = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing #${id}`);
  return e as T;
};

const form = el<HTMLFormElement>('form');
const modelUrl = el<HTMLInputElement>('model-url');
const modelFile = el<HTMLInputElement>('model-file');
const tokenizerUrl = el<HTMLInputElement>('tokenizer-url');
const tokenizerFile = el<HTMLInputElement>('tokenizer-file');
const backendChoice = el<HTMLSelectElement>('backend-choice');
const q80 = el<HTMLInputElement>('q80');
const engineChoice = el<HTMLSelectElement>('engine');
const progressBar = el<HTMLProgressElement>('progress');
const prompt = el<HTMLTextAreaElement>('prompt');
const steps = el<HTMLInputElement>('steps');
const temperature = el<HTMLInputElement>('temperature');
const topp = el<HTMLInputElement>('topp');
const seed = el<HTMLInputElement>('seed');
const generateButton = el<HTMLButtonElement>('generate');
const stopButton = el<HTMLButtonElement>('stop');
const status = el('status');
const note = el('note');
const backendOut = el('backend');
const deviceOut = el('device');
const modelInfo = el('model-info');
const tokensOut = el('tokens');
const tpsOut = el('tps');
const output = el('output');

type State = 'idle' | 'loading' | 'generating' | 'done' | 'error';

function setStatus(state: State, text: string): void {
  status.dataset.state = state;
  status.textContent = text;
}

/** Notes about how the model runs (no WebGPU, one thread, no worker), one per line. */
function showNote(...lines: (string | undefined)[]): void {
  const text = lines.filter(Boolean).join('\n');
  note.hidden = !text;
  note.textContent = text;
}

// ---- Form prefill from the query string -------------------------------------

const params = new URLSearchParams(location.search);
const prefill: [string, HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement][] = [
  ['model', modelUrl], ['tokenizer', tokenizerUrl], ['prompt', prompt], ['steps', steps],
  ['temperature', temperature], ['topp', topp], ['seed', seed], ['backend', backendChoice], ['engine', engineChoice],
];
for (const [key, input] of prefill) {
  const v = params.get(key);
  if (v !== null) input.value = v;
}
if (params.has('q80')) q80.checked = params.get('q80') !== '0';

// ---- Loading ----------------------------------------------------------------

/** A model or tokenizer: the picked file if any, else the URL. */
function sourceOf(file: HTMLInputElement, url: HTMLInputElement, what: string): File | string {
  const picked = file.files?.[0];
  if (picked) return picked;
  const u = url.value.trim();
  if (!u) throw new Error(`choose a ${what} file or enter its URL`);
  return new URL(u, location.href).href;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(n < 2 ** 20 ? 2 : 1)} MiB`;

/** Downloads a URL into a Blob, reporting progress in #status. */
async function download(url: string, what: string): Promise<Blob> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${what}: ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  if (!res.body) return res.blob();
  const reader = res.body.getReader();
  const parts: Uint8Array[] = [];
  let got = 0;
  let shown = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    got += value.byteLength;
    if (performance.now() - shown > 100) {
      shown = performance.now();
      showProgress({ phase: 'download', file: what as 'model' | 'tokenizer', loaded: got, total });
    }
  }
  return new Blob(parts as BlobPart[]);
}

async function bytesOf(source: File | string, what: string): Promise<ModelSource> {
  return typeof source === 'string' ? download(source, what) : source;
}

/** Why WebGPU is unusable here, or undefined when an adapter exists. */
async function webGpuProblem(): Promise<string | undefined> {
  const gpu = (navigator as Navigator & { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) {
    return window.isSecureContext
      ? 'this browser has no WebGPU (navigator.gpu is missing)'
      : 'WebGPU needs a secure context (https or localhost)';
  }
  try {
    return (await gpu.requestAdapter()) ? undefined : 'the browser found no WebGPU adapter (GPU blocklisted or disabled?)';
  } catch (e) {
    return `requestAdapter failed: ${(e as Error).message}`;
  }
}

/** Download and load progress in #status and the progress bar. */
function showProgress(p: LoadProgress): void {
  progressBar.hidden = false;
  if (p.phase === 'load') {
    progressBar.removeAttribute('value'); // indeterminate
    setStatus('loading', 'Reading the model and uploading the weights…');
    return;
  }
  const got = p.loaded ?? 0;
  if (p.total) {
    progressBar.max = p.total;
    progressBar.value = got;
  } else progressBar.removeAttribute('value');
  setStatus('loading', `Downloading the ${p.file}: ${mib(got)}${p.total ? ` of ${mib(p.total)} (${Math.floor((got / p.total) * 100)}%)` : ''}`);
}

/** The model, in a worker or in the page: the same generate API either way. */
type Engine = Llama | WorkerLlama;

interface Loaded {
  llama: Engine;
  key: string;
  /** Why it runs in the page although a worker was asked for. */
  fallback?: string;
}
let loaded: Loaded | undefined;

const keyPart = (s: File | string) => (typeof s === 'string' ? `url:${s}` : `file:${s.name}:${s.size}:${s.lastModified}`);

/** Loads the model in the page (the engine's fallback, or when asked). */
async function loadInPage(model: File | string, tokenizer: File | string, backend: BackendName): Promise<Llama> {
  const [modelBytes, tokenizerBytes] = await Promise.all([bytesOf(model, 'model'), bytesOf(tokenizer, 'tokenizer')]);
  showProgress({ phase: 'load' });
  return Llama.load({ model: modelBytes, tokenizer: tokenizerBytes, backend, q80: q80.checked });
}

/** Loads the model, or reuses the one already loaded from the same sources and settings. */
async function ensureLoaded(): Promise<Engine> {
  const model = sourceOf(modelFile, modelUrl, 'model');
  const tokenizer = sourceOf(tokenizerFile, tokenizerUrl, 'tokenizer');
  const backend = backendChoice.value as BackendName;
  const engine = engineChoice.value === 'page' ? 'page' : 'worker';
  const key = [keyPart(model), keyPart(tokenizer), backend, q80.checked, engine].join('|');
  if (loaded?.key === key) return loaded.llama;
  loaded?.llama.dispose();
  loaded = undefined;
  backendOut.textContent = deviceOut.textContent = modelInfo.textContent = '–';
  showNote();

  setStatus('loading', 'Loading the model…');
  const t0 = performance.now();
  let llama: Engine;
  let fallback: string | undefined;
  try {
    if (engine === 'page') llama = await loadInPage(model, tokenizer, backend);
    else {
      // URLs are fetched by the worker itself; files go over as they are (a File is not copied).
      // ?worker=URL: a prebuilt engine worker script (e.g. @rama/llama's dist/worker/thread.standalone.js) instead of the bundled one.
      const worker = params.get('worker') ?? undefined;
      llama = await createWorkerLlama({ model, tokenizer, backend, q80: q80.checked, onProgress: showProgress, worker });
    }
  } catch (e) {
    if (!(e instanceof WorkerStartError)) throw e;
    fallback = `${e.message}. Running the model in this page instead (the page may be less responsive while it generates).`;
    showNote(fallback);
    llama = await loadInPage(model, tokenizer, backend);
  } finally {
    progressBar.hidden = true;
  }
  const loadMs = performance.now() - t0;

  const noGpu = backend === 'auto' && llama.backend.name !== 'webgpu'
    ? `WebGPU is not available: ${(await webGpuProblem()) ?? 'the WebGPU backend failed to start'}. Running on the CPU instead (slower).`
    : undefined;
  showNote(noGpu, llama.backend.notice, fallback);
  backendOut.textContent = llama.backend.name;
  deviceOut.textContent = `${llama.backend.description}${llama instanceof Llama ? ' · in the page' : ' · in a Web Worker'}`;
  const c = llama.config;
  const size = typeof model === 'object' ? ` · ${mib(model.size)}` : '';
  modelInfo.textContent =
    `dim ${c.dim} · ${c.nLayers} layers · ${c.nHeads} heads · vocab ${c.vocabSize} · ctx ${llama.contextLength}` +
    `${llama.quantized ? ' · Q8_0' : ''}${size} · loaded in ${loadMs.toFixed(0)} ms`;
  loaded = { llama, key, fallback };
  return llama;
}

// ---- Generating -------------------------------------------------------------

function numberInput(input: HTMLInputElement, name: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  const raw = input.value.trim();
  if (raw === '') return undefined;
  const v = Number(raw);
  if (!Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    throw new Error(`${name}: ${JSON.stringify(raw)} is not a valid value`);
  }
  return v;
}

/** Lets the browser paint between tokens when the model runs in the page. */
let lastPaint = 0;
async function letPaint(): Promise<void> {
  if (performance.now() - lastPaint < 30) return;
  await new Promise((r) => setTimeout(r, 0));
  lastPaint = performance.now();
}

let controller: AbortController | undefined;

async function run(): Promise<void> {
  controller = new AbortController();
  generateButton.disabled = true;
  stopButton.disabled = false;
  output.textContent = '';
  tokensOut.textContent = tpsOut.textContent = '–';
  setStatus('loading', 'Starting…');
  try {
    const opts = {
      steps: numberInput(steps, 'steps', { integer: true, min: 0 }) ?? 256,
      temperature: numberInput(temperature, 'temperature', { min: 0 }) ?? 1,
      topp: numberInput(topp, 'top-p', { min: 0, max: 1 }) ?? 0.9,
      seed: numberInput(seed, 'seed', { integer: true }),
      signal: controller.signal,
    };
    const llama = await ensureLoaded();
    setStatus('generating', `Generating on ${llama.backend.name}…`);
    const generation = llama.generate(prompt.value, opts);
    let count = 0;
    for await (const t of generation) {
      if (t.prompt) {
        const span = document.createElement('span');
        span.className = 'prompt';
        span.textContent = t.text;
        output.append(span);
      } else {
        output.append(t.text);
        count++;
      }
      tokensOut.textContent = String(count);
      if (llama instanceof Llama) await letPaint();
    }
    const r = await generation.result();
    tokensOut.textContent = String(r.generatedTokens);
    tokensOut.title = `${r.promptTokens} prompt tokens read first`;
    tpsOut.textContent = r.timing.tokensPerSecond.toFixed(1);
    const why = {
      steps: 'step limit', context: 'end of the context', bos: 'BOS sampled', eos: 'EOS sampled', stop: 'stop string', aborted: 'stopped', preempted: 'preempted',
    }[r.reason];
    setStatus('done', `Done (${why}): ${r.generatedTokens} tokens, ${r.timing.tokensPerSecond.toFixed(1)} tokens/s on ${llama.backend.name}, first token after ${r.timing.timeToFirstTokenMs.toFixed(0)} ms.`);
  } catch (e) {
    console.error(e);
    progressBar.hidden = true;
    setStatus('error', `Error: ${(e as Error).message ?? String(e)}`);
  } finally {
    controller = undefined;
    generateButton.disabled = false;
    stopButton.disabled = true;
  }
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!controller) void run();
});
stopButton.addEventListener('click', () => controller?.abort());

// A newly picked file replaces the URL.
for (const [file, url] of [[modelFile, modelUrl], [tokenizerFile, tokenizerUrl]] as const) {
  file.addEventListener('change', () => {
    if (file.files?.[0]) url.value = '';
  });
  url.addEventListener('input', () => {
    if (url.value) file.value = '';
  });
}

if (params.get('autorun') === '1') void run();
else if (modelUrl.value || modelFile.files?.length) setStatus('idle', 'Ready: press Generate.');
