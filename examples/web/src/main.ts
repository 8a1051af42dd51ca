/**
 * The browser example: load a model (a GGUF file, or a llama2.c checkpoint
 * and its tokenizer) picked from the disk, by URL or by `hf:` name, generate
 * on WebGPU (or the CPU when WebGPU is missing), stream the text and show
 * tokens/s. URLs and names are downloaded through @rama/hub into the
 * browser's Cache API, with progress, so a second load needs no network. The
 * model runs in a Web Worker (@rama/llama/worker) so the page stays
 * responsive; where a worker cannot start (a strict Content Security Policy)
 * or when asked, it runs in the page.
 *
 * Query parameters prefill the form: ?model=URL|hf:name&tokenizer=URL&prompt=
 * &steps=&temperature=&topp=&seed=&backend=auto|webgpu|cpu&q80=1
 * &engine=worker|page&endpoint=URL&offline=1 &worker=URL (a prebuilt engine
 * worker script) (and &autorun=1 to start at once). #status gets
 * data-state="done" (or "error") at the end; #output data-ids the generated
 * token ids.
 */
import { AbortError, FormatError, Llama, type BackendName } from '@rama/llama';
import { createWorkerLlama, WorkerStartError, type LoadProgress, type WorkerLlama } from '@rama/llama/worker';
import { fetchModel, listCached, modelParts, parseModelRef, removeCached, type Progress } from '@rama/hub';
import { el, numberInput, showStatus, type State } from './dom.js';

const form = el<HTMLFormElement>('form');
const modelUrl = el<HTMLInputElement>('model-url');
const modelFile = el<HTMLInputElement>('model-file');
const tokenizerUrl = el<HTMLInputElement>('tokenizer-url');
const tokenizerFile = el<HTMLInputElement>('tokenizer-file');
const backendChoice = el<HTMLSelectElement>('backend-choice');
const q80 = el<HTMLInputElement>('q80');
const endpoint = el<HTMLInputElement>('endpoint');
const offline = el<HTMLInputElement>('offline');
const cacheInfo = el('cache-info');
const clearCacheButton = el<HTMLButtonElement>('clear-cache');
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

function setStatus(state: State, text: string): void {
  showStatus(status, state, text);
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
  ['temperature', temperature], ['topp', topp], ['seed', seed], ['backend', backendChoice], ['engine', engineChoice], ['endpoint', endpoint],
];
for (const [key, input] of prefill) {
  const v = params.get(key);
  if (v !== null) input.value = v;
}
if (params.has('q80')) q80.checked = params.get('q80') !== '0';
if (params.has('offline')) offline.checked = params.get('offline') !== '0';

// ---- Loading ----------------------------------------------------------------

/** A model or tokenizer as given: a picked file, an `hf:` name, or a URL (made absolute). */
type Source = File | string;

/** The picked file if any, else the name or URL; undefined when both are empty. */
function sourceOf(file: HTMLInputElement, url: HTMLInputElement): Source | undefined {
  const picked = file.files?.[0];
  if (picked) return picked;
  const u = url.value.trim();
  if (!u) return undefined;
  return /^hf:/i.test(u) ? u : new URL(u, location.href).href;
}

const mib = (n: number) => `${(n / 2 ** 20).toFixed(n < 10 * 2 ** 20 ? 2 : 1)} MiB`;

/** @rama/hub's options from the form: the Hub endpoint and offline mode. */
function hubOptions(): { endpoint?: string; offline?: boolean } {
  const e = endpoint.value.trim();
  return { ...(e ? { endpoint: e } : {}), ...(offline.checked ? { offline: true } : {}) };
}

/** Where the page keeps downloads: the Cache API, which only secure contexts (https, localhost) have. */
const hasCache = () => typeof caches !== 'undefined';

/** A source ready to load: files (several for a split GGUF), whether they came from the cache, and the name to drop from the cache if they are bad. */
interface Fetched {
  files: (File | string)[];
  fromCache: boolean;
  cachedAs?: string;
}

/**
 * A name or URL becomes its files from the browser's cache, downloading what
 * is missing (with progress); a picked file is used as it is. Without the
 * Cache API a plain URL is left for the loader to fetch (uncached).
 */
async function fetchSource(source: Source, what: string): Promise<Fetched> {
  if (typeof source !== 'string') return { files: [source], fromCache: false };
  if (!hasCache() && !/^hf:/i.test(source)) return { files: [source], fromCache: false };
  let downloaded = false;
  const onProgress = (p: Progress) => {
    downloaded = true;
    showProgress({ phase: 'download', file: p.file, loaded: p.loaded, total: p.total }, p.done);
  };
  // Stop aborts the download (what arrived is not cached).
  const blobs = await fetchModel(source, { ...hubOptions(), onProgress, signal: controller?.signal });
  // The cache's Blobs have no name: wrapped in Files (not copied) so the loader's errors name the file.
  const parts = modelParts(parseModelRef(source));
  const label = (i: number) => {
    const ref = parts[i];
    const path = ref.kind === 'hf' ? ref.path : new URL(ref.url).pathname;
    return decodeURIComponent(path.split('/').pop() || what);
  };
  const files = blobs.map((b, i) => (b instanceof Blob ? new File([b], label(i)) : b));
  if (!downloaded) setStatus('loading', `Found ${parts.length === 1 ? label(0) : `${label(0)} and the other ${parts.length - 1} parts`} in the browser's cache.`);
  return { files, fromCache: !downloaded, cachedAs: source };
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

/** Download and load progress in #status and the progress bar (at most ten times a second, and always the last event). */
let shownAt = 0;
function showProgress(p: LoadProgress, last = false): void {
  progressBar.hidden = false;
  if (p.phase === 'load') {
    progressBar.removeAttribute('value'); // indeterminate
    setStatus('loading', 'Reading the model and uploading the weights…');
    return;
  }
  const got = p.loaded ?? 0;
  if (!last && p.total !== got && performance.now() - shownAt < 100) return;
  shownAt = performance.now();
  if (p.total) {
    progressBar.max = p.total;
    progressBar.value = got;
  } else progressBar.removeAttribute('value');
  setStatus('loading', `Downloading ${p.file}: ${mib(got)}${p.total ? ` of ${mib(p.total)} (${Math.floor((got / p.total) * 100)}%)` : ''}`);
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

const keyPart = (s: Source | undefined) => (s === undefined ? 'none' : typeof s === 'string' ? `url:${s}` : `file:${s.name}:${s.size}:${s.lastModified}`);

/** Downloads a URL in the page (where there is no Cache API to keep it in), reporting progress. */
async function download(url: string, what: string): Promise<File> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${what}: ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || undefined;
  const name = decodeURIComponent(new URL(url).pathname.split('/').pop() || what);
  const parts: Uint8Array[] = [];
  let got = 0;
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      got += value.byteLength;
      showProgress({ phase: 'download', file: name, loaded: got, total });
    }
  } else parts.push(new Uint8Array(await res.arrayBuffer()));
  showProgress({ phase: 'download', file: name, loaded: got, total: total ?? got }, true);
  return new File(parts as BlobPart[], name);
}

/** Loads the model in the page (the engine's fallback, or when asked). */
async function loadInPage(model: Fetched, tokenizer: Fetched | undefined, backend: BackendName): Promise<Llama> {
  const local = (f: Fetched, what: string) => Promise.all(f.files.map((x) => (typeof x === 'string' ? download(x, what) : x)));
  const m = await local(model, 'model');
  const t = tokenizer && (await local(tokenizer, 'tokenizer'));
  showProgress({ phase: 'load' });
  return Llama.load({ model: m.length === 1 ? m[0] : m, ...(t ? { tokenizer: t[0] } : {}), backend, q80: q80.checked });
}

/** Loads the model, or reuses the one already loaded from the same sources and settings. */
async function ensureLoaded(): Promise<Engine> {
  const model = sourceOf(modelFile, modelUrl);
  if (model === undefined) throw new Error('choose a model file, or enter its URL or hf: name');
  const tokenizer = sourceOf(tokenizerFile, tokenizerUrl);
  const modelName = typeof model === 'string' ? model : model.name;
  if (tokenizer === undefined && /\.bin$/i.test(new URL(modelName, location.href).pathname)) {
    throw new Error(`${modelName} looks like a llama2.c checkpoint (.bin), which needs its tokenizer: pick tokenizer.bin or enter its URL (a GGUF file needs none)`);
  }
  const backend = backendChoice.value as BackendName;
  let engine = engineChoice.value === 'page' ? 'page' : 'worker';
  const key = [keyPart(model), keyPart(tokenizer), backend, q80.checked, engine].join('|');
  if (loaded?.key === key) return loaded.llama;
  loaded?.llama.dispose();
  loaded = undefined;
  backendOut.textContent = deviceOut.textContent = modelInfo.textContent = '–';
  delete modelInfo.dataset.source;
  showNote();

  setStatus('loading', 'Loading the model…');
  const t0 = performance.now();
  let llama: Engine;
  let fallback: string | undefined;
  let fetchedModel: Fetched | undefined;
  let fetchedTokenizer: Fetched | undefined;
  try {
    fetchedModel = await fetchSource(model, 'model');
    fetchedTokenizer = tokenizer === undefined ? undefined : await fetchSource(tokenizer, 'tokenizer');
    // The engine worker takes one file per source; a split GGUF by hf: name goes over as its name (the worker reads the same cache).
    const workerModel: File | string | undefined = fetchedModel.files.length === 1 ? fetchedModel.files[0] : typeof model === 'string' && /^hf:/i.test(model) ? model : undefined;
    if (engine === 'worker' && workerModel === undefined) {
      engine = 'page';
      fallback = 'A split GGUF by URL loads in this page (the engine worker takes one file per URL).';
    }
    if (engine === 'page') llama = await loadInPage(fetchedModel, fetchedTokenizer, backend);
    else {
      // Files go over as they are (a File is not copied); a URL left uncached is fetched by the worker itself.
      // ?worker=URL: a prebuilt engine worker script (e.g. the repository's packages/llama/dist/worker/thread.standalone.js) instead of the bundled one.
      const worker = params.get('worker') ?? undefined;
      llama = await createWorkerLlama({
        model: workerModel!, ...(fetchedTokenizer ? { tokenizer: fetchedTokenizer.files[0] } : {}),
        backend, q80: q80.checked, onProgress: (p) => showProgress(p), worker, hub: hubOptions(),
      });
    }
  } catch (e) {
    if (!(e instanceof WorkerStartError)) throw await forgetBadFiles(e, [fetchedModel, fetchedTokenizer]);
    fallback = `${e.message}. Running the model in this page instead (the page may be less responsive while it generates).`;
    showNote(fallback);
    try {
      llama = await loadInPage(fetchedModel!, fetchedTokenizer, backend);
    } catch (e2) {
      throw await forgetBadFiles(e2, [fetchedModel, fetchedTokenizer]);
    }
  } finally {
    progressBar.hidden = true;
    void refreshCacheInfo();
  }
  const loadMs = performance.now() - t0;

  const noGpu = backend === 'auto' && llama.backend.name !== 'webgpu'
    ? `WebGPU is not available: ${(await webGpuProblem()) ?? 'the WebGPU backend failed to start'}. Running on the CPU instead (slower).`
    : undefined;
  showNote(noGpu, llama.backend.notice, fallback);
  backendOut.textContent = llama.backend.name;
  deviceOut.textContent = `${llama.backend.description}${llama instanceof Llama ? ' · in the page' : ' · in a Web Worker'}`;
  const c = llama.config;
  const bytes = fetchedModel!.files.reduce((n, f) => n + (typeof f === 'string' ? 0 : f.size), 0);
  const origin = typeof model !== 'string' ? 'file' : fetchedModel!.fromCache ? 'cache' : 'network';
  modelInfo.dataset.source = origin;
  modelInfo.textContent =
    `${modelName.split('/').pop()} · ${llama.format} · dim ${c.dim} · ${c.nLayers} layers · ${c.nHeads} heads · vocab ${c.vocabSize} · ctx ${llama.contextLength}` +
    `${llama.quantized ? ' · Q8_0' : ''}${bytes ? ` · ${mib(bytes)}` : ''}` +
    `${origin === 'cache' ? " · from the browser's cache" : origin === 'network' ? ' · downloaded' : ''} · loaded in ${loadMs.toFixed(0)} ms`;
  loaded = { llama, key, fallback };
  return llama;
}

/**
 * A file the loader rejects (a FormatError: not a model, or truncated) is
 * removed from the cache, so that the next load downloads it again; the
 * error then says so.
 */
async function forgetBadFiles(e: unknown, sources: (Fetched | undefined)[]): Promise<unknown> {
  if (!(e instanceof FormatError)) return e;
  const removed: string[] = [];
  for (const s of sources) {
    if (s?.cachedAs && (await removeCached(s.cachedAs).catch(() => [])).length) removed.push(s.cachedAs);
  }
  if (removed.length) e.message += ` (removed ${removed.join(' and ')} from the browser's cache)`;
  return e;
}

// ---- The cache --------------------------------------------------------------

/** What the browser's cache holds, in #cache-info (data-count: how many files). */
async function refreshCacheInfo(): Promise<void> {
  if (!hasCache()) {
    cacheInfo.textContent = 'Cache: none (the Cache API needs a secure context: https or localhost)';
    clearCacheButton.disabled = true;
    return;
  }
  try {
    const list = await listCached();
    const bytes = list.reduce((n, m) => n + m.size, 0);
    cacheInfo.dataset.count = String(list.length);
    cacheInfo.textContent = list.length ? `Cache: ${list.length} file${list.length === 1 ? '' : 's'}, ${mib(bytes)}` : 'Cache: empty';
    cacheInfo.title = list.map((m) => `${m.name} (${mib(m.size)})`).join('\n');
    clearCacheButton.disabled = list.length === 0;
  } catch (e) {
    cacheInfo.textContent = `Cache: cannot be read (${(e as Error).message})`;
  }
}

/** Removes every downloaded model from the browser's cache. */
async function clearCache(): Promise<void> {
  clearCacheButton.disabled = true;
  try {
    const list = await listCached();
    let removed = 0;
    for (const m of list) removed += (await removeCached(m.name)).length;
    setStatus('idle', `Removed ${removed} file${removed === 1 ? '' : 's'} from the browser's cache.`);
  } catch (e) {
    setStatus('error', `Error: cannot clear the cache: ${(e as Error).message}`);
  } finally {
    await refreshCacheInfo();
  }
}

// ---- Generating -------------------------------------------------------------

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
    const ids: number[] = [];
    delete output.dataset.ids;
    for await (const t of generation) {
      if (t.prompt) {
        const span = document.createElement('span');
        span.className = 'prompt';
        span.textContent = t.text;
        output.append(span);
      } else {
        output.append(t.text);
        ids.push(t.id);
        count++;
      }
      tokensOut.textContent = String(count);
      if (llama instanceof Llama) await letPaint();
    }
    const r = await generation.result();
    output.dataset.ids = JSON.stringify(ids);
    tokensOut.textContent = String(r.generatedTokens);
    tokensOut.title = `${r.promptTokens} prompt tokens read first`;
    tpsOut.textContent = r.timing.tokensPerSecond.toFixed(1);
    const why = {
      steps: 'step limit', context: 'end of the context', bos: 'BOS sampled', eos: 'EOS sampled', stop: 'stop string', aborted: 'stopped', preempted: 'preempted',
    }[r.reason];
    setStatus('done', `Done (${why}): ${r.generatedTokens} tokens, ${r.timing.tokensPerSecond.toFixed(1)} tokens/s on ${llama.backend.name}, first token after ${r.timing.timeToFirstTokenMs.toFixed(0)} ms.`);
  } catch (e) {
    progressBar.hidden = true;
    if (e instanceof AbortError && controller?.signal.aborted) setStatus('idle', `Stopped: ${e.message}.`);
    else {
      console.error(e);
      setStatus('error', `Error: ${(e as Error).message ?? String(e)}`);
    }
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
clearCacheButton.addEventListener('click', () => void clearCache());

// A newly picked file replaces the URL.
for (const [file, url] of [[modelFile, modelUrl], [tokenizerFile, tokenizerUrl]] as const) {
  file.addEventListener('change', () => {
    if (file.files?.[0]) url.value = '';
  });
  url.addEventListener('input', () => {
    if (url.value) file.value = '';
  });
}

void refreshCacheInfo();
if (params.get('autorun') === '1') void run();
else if (modelUrl.value || modelFile.files?.length) setStatus('idle', 'Ready: press Generate.');
