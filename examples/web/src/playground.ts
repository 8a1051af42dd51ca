/**
 * The playground: generates with @rama/llama's `inspect` option and shows,
 * for the token picked, its top-k candidates (their probabilities reshaped
 * live by temperature and top-p sliders, from the token's stored logits), a
 * heatmap of one attention head's weights over the positions before each
 * token, the residual stream's norm after each layer, and the prompt's
 * tokens with their ids. Plain DOM, canvas and SVG.
 *
 * Query parameters prefill the form: ?model=URL&tokenizer=URL&prompt=&steps=
 * &temperature=&topp=&seed=&backend=auto|webgpu|cpu&layer=&head=&topk=
 * (&autorun=1 starts at once). #status gets data-state="done" (or "error").
 * The numbers shown are also in data attributes (see the README).
 */
import { Llama, samplingDistribution, type BackendName, type ModelSource, type TokenInspection } from '@rama/llama';
import { el, numberInput, showStatus, type State } from './dom.js';

const form = el<HTMLFormElement>('form');
const modelUrl = el<HTMLInputElement>('model-url');
const modelFile = el<HTMLInputElement>('model-file');
const tokenizerUrl = el<HTMLInputElement>('tokenizer-url');
const tokenizerFile = el<HTMLInputElement>('tokenizer-file');
const backendChoice = el<HTMLSelectElement>('backend-choice');
const prompt = el<HTMLTextAreaElement>('prompt');
const steps = el<HTMLInputElement>('steps');
const temperature = el<HTMLInputElement>('temperature');
const topp = el<HTMLInputElement>('topp');
const seed = el<HTMLInputElement>('seed');
const layerSelect = el<HTMLSelectElement>('layer');
const headSelect = el<HTMLSelectElement>('head');
const topkInput = el<HTMLInputElement>('topk');
const generateButton = el<HTMLButtonElement>('generate');
const status = el('status');
const note = el('note');
const promptTokens = el('prompt-tokens');
const output = el('output');
const selectedToken = el('selected-token');
const tempSlider = el<HTMLInputElement>('temp-slider');
const toppSlider = el<HTMLInputElement>('topp-slider');
const tempValue = el<HTMLOutputElement>('temp-value');
const toppValue = el<HTMLOutputElement>('topp-value');
const drawButton = el<HTMLButtonElement>('draw');
const drawn = el('drawn');
const candidates = el<HTMLTableElement>('candidates');
const norms = el<SVGSVGElement>('norms');
const heatmap = el<HTMLCanvasElement>('heatmap');
const attentionRow = el('attention-row');
const attLayer = el('att-layer');
const attHead = el('att-head');

function setStatus(state: State, text: string): void {
  showStatus(status, state, text);
}

// ---- Form prefill ---------------------------------------------------------------

const params = new URLSearchParams(location.search);
for (const [key, input] of [
  ['model', modelUrl], ['tokenizer', tokenizerUrl], ['prompt', prompt], ['steps', steps], ['temperature', temperature],
  ['topp', topp], ['seed', seed], ['backend', backendChoice], ['topk', topkInput],
] as const) {
  const v = params.get(key);
  if (v !== null) input.value = v;
}

// ---- Loading --------------------------------------------------------------------

function sourceOf(file: HTMLInputElement, url: HTMLInputElement, what: string): File | string {
  const picked = file.files?.[0];
  if (picked) return picked;
  const u = url.value.trim();
  if (!u) throw new Error(`choose a ${what} file or enter its URL`);
  return new URL(u, location.href).href;
}

async function bytesOf(source: File | string, what: string): Promise<ModelSource> {
  if (typeof source !== 'string') return source;
  const res = await fetch(source);
  if (!res.ok) throw new Error(`${what}: ${source}: HTTP ${res.status} ${res.statusText}`);
  return res.blob();
}

let loaded: { llama: Llama; key: string } | undefined;

async function ensureLoaded(): Promise<Llama> {
  const model = sourceOf(modelFile, modelUrl, 'model');
  // A GGUF file carries its own tokenizer.
  const tokenizer = tokenizerFile.files?.[0] || tokenizerUrl.value.trim() ? sourceOf(tokenizerFile, tokenizerUrl, 'tokenizer') : undefined;
  const backend = backendChoice.value as BackendName;
  const part = (s: File | string | undefined) => (s === undefined ? '' : typeof s === 'string' ? s : `${s.name}:${s.size}:${s.lastModified}`);
  const key = [part(model), part(tokenizer), backend].join('|');
  if (loaded?.key === key) return loaded.llama;
  loaded?.llama.dispose();
  loaded = undefined;
  setStatus('loading', 'Loading the model…');
  const [m, t] = await Promise.all([bytesOf(model, 'model'), tokenizer && bytesOf(tokenizer, 'tokenizer')]);
  const llama = await Llama.load({ model: m, ...(t ? { tokenizer: t } : {}), backend });
  fillOptions(layerSelect, llama.spec.nLayers, params.get('layer'));
  fillOptions(headSelect, llama.spec.nHeads, params.get('head'));
  note.hidden = !(backend === 'auto' && llama.backend.name !== 'webgpu');
  note.textContent = note.hidden ? '' : 'WebGPU is not available here: running on the CPU.';
  loaded = { llama, key };
  return llama;
}

/** Options 0..n-1 of a select, keeping its choice (or the query's) when still valid. */
function fillOptions(select: HTMLSelectElement, n: number, wanted: string | null): void {
  const keep = select.value || wanted || '0';
  select.replaceChildren(...Array.from({ length: n }, (_, i) => new Option(String(i), String(i))));
  select.value = Number(keep) < n ? keep : '0';
}

// ---- State of the last generation -----------------------------------------------

interface Sampled {
  id: number;
  text: string;
  logits: Float32Array;
  inspect: TokenInspection;
}

interface Run {
  llama: Llama;
  /** Token ids by position: BOS, the prompt, then each sampled token. */
  ids: number[];
  promptLength: number;
  sampled: Sampled[];
  layer: number;
  head: number;
}

let run: Run | undefined;
let selected = -1;

const utf8 = new TextDecoder();
/** A token's text after the one before it, visible (spaces and newlines shown). */
function pieceText(llama: Llama, prev: number, id: number): string {
  const s = utf8.decode(llama.tokenizer.decodePiece(prev, id));
  return s === '' ? '∅' : s.replace(/\n/g, '↵');
}

/** A distinct pastel colour per index (golden-angle hues). */
const hue = (i: number) => `hsl(${(i * 137.508) % 360} 70% 82%)`;

function tokenSpan(text: string, id: number, background?: string): HTMLSpanElement {
  const span = document.createElement('span');
  span.className = 'tok';
  span.dataset.id = String(id);
  span.append(text);
  const sub = document.createElement('sub');
  sub.textContent = String(id);
  span.append(sub);
  if (background) span.style.background = background;
  return span;
}

// ---- Rendering ------------------------------------------------------------------

function renderPrompt(r: Run): void {
  promptTokens.replaceChildren(
    ...r.ids.slice(0, r.promptLength).map((id, p) => {
      const span = tokenSpan(p === 0 ? `${pieceText(r.llama, id, id)}` : pieceText(r.llama, r.ids[p - 1], id), id, hue(p));
      span.dataset.position = String(p);
      return span;
    }),
  );
}

function renderOutput(r: Run): void {
  const prompt = document.createElement('span');
  prompt.className = 'tok prompt';
  prompt.textContent = r.llama.detokenize(r.ids.slice(0, r.promptLength));
  const spans = r.sampled.map((s, i) => {
    const span = document.createElement('span');
    span.className = `tok${i === selected ? ' selected' : ''}`;
    span.dataset.index = String(i);
    span.dataset.id = String(s.id);
    span.textContent = s.text === '' ? '∅' : s.text;
    span.title = `token ${s.id} at position ${s.inspect.position + 1}`;
    return span;
  });
  output.replaceChildren(prompt, ...spans);
}

/** The candidates of the selected token; the slider column from its logits. */
function renderCandidates(): void {
  const body = candidates.tBodies[0];
  if (!run || selected < 0) {
    body.replaceChildren();
    return;
  }
  const s = run.sampled[selected];
  const t = Number(tempSlider.value), p = Number(toppSlider.value);
  tempValue.value = t.toFixed(2);
  toppValue.value = p.toFixed(2);
  const dist = samplingDistribution(s.logits, { temperature: t, topp: p });
  candidates.dataset.position = String(s.inspect.position);
  candidates.dataset.temperature = String(t);
  candidates.dataset.topp = String(p);
  const bar = (v: number) => {
    const td = document.createElement('td');
    td.className = 'bar num';
    const fill = document.createElement('span');
    fill.style.width = `${(v * 100).toFixed(1)}%`;
    const label = document.createElement('b');
    label.textContent = v.toFixed(4);
    td.append(fill, label);
    return td;
  };
  body.replaceChildren(
    ...(s.inspect.topK ?? []).map((c) => {
      const tr = document.createElement('tr');
      if (c.id === s.id) tr.className = 'chosen';
      Object.assign(tr.dataset, { id: String(c.id), logit: String(c.logit), prob: String(c.prob), sampled: String(dist[c.id]), generation: String(c.sampledProb) });
      const text = document.createElement('td');
      text.textContent = JSON.stringify(c.text);
      const id = document.createElement('td');
      id.className = 'num';
      id.textContent = String(c.id);
      const logit = document.createElement('td');
      logit.className = 'num';
      logit.textContent = c.logit.toFixed(3);
      tr.append(text, id, logit, bar(c.prob), bar(dist[c.id]));
      return tr;
    }),
  );
  drawn.textContent = '';
}

function renderNorms(): void {
  const ns = run && selected >= 0 ? (run.sampled[selected].inspect.residualNorms ?? []) : [];
  norms.dataset.norms = JSON.stringify(ns);
  const W = 360, H = 180, pad = 22;
  const max = Math.max(1e-9, ...ns);
  const w = (W - 2 * pad) / Math.max(1, ns.length);
  const svg = 'http://www.w3.org/2000/svg';
  const parts: SVGElement[] = [];
  ns.forEach((n, l) => {
    const h = ((H - 2 * pad) * n) / max;
    const rect = document.createElementNS(svg, 'rect');
    rect.setAttribute('x', String(pad + l * w + 2));
    rect.setAttribute('y', String(H - pad - h));
    rect.setAttribute('width', String(Math.max(1, w - 4)));
    rect.setAttribute('height', String(h));
    rect.dataset.layer = String(l);
    const title = document.createElementNS(svg, 'title');
    title.textContent = `layer ${l}: ${n.toFixed(4)}`;
    rect.append(title);
    const label = document.createElementNS(svg, 'text');
    label.setAttribute('x', String(pad + l * w + w / 2));
    label.setAttribute('y', String(H - pad + 12));
    label.setAttribute('text-anchor', 'middle');
    label.textContent = String(l);
    const value = document.createElementNS(svg, 'text');
    value.setAttribute('x', String(pad + l * w + w / 2));
    value.setAttribute('y', String(H - pad - h - 3));
    value.setAttribute('text-anchor', 'middle');
    value.textContent = n.toFixed(1);
    parts.push(rect, label, value);
  });
  norms.replaceChildren(...parts);
}

/** Cell size of the heatmap: positions across, generated tokens down. */
let cell = { w: 1, h: 1 };

function renderHeatmap(): void {
  const ctx = heatmap.getContext('2d')!;
  if (!run || run.sampled.length === 0) {
    ctx.clearRect(0, 0, heatmap.width, heatmap.height);
    return;
  }
  const rows = run.sampled.length;
  const cols = run.sampled[rows - 1].inspect.position + 1;
  cell = { w: Math.max(2, Math.min(24, Math.floor(900 / cols))), h: Math.max(2, Math.min(14, Math.floor(420 / rows))) };
  heatmap.width = cell.w * cols;
  heatmap.height = cell.h * rows;
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, heatmap.width, heatmap.height);
  run.sampled.forEach((s, r) => {
    (s.inspect.attention ?? []).forEach((w, c) => {
      // A square root spreads the small weights so the pattern shows, not only the largest.
      const v = Math.sqrt(w);
      ctx.fillStyle = `rgb(${Math.round(255 - 215 * v)}, ${Math.round(255 - 200 * v)}, ${Math.round(255 - 80 * v)})`;
      ctx.fillRect(c * cell.w, r * cell.h, cell.w, cell.h);
    });
  });
  if (selected >= 0) {
    ctx.strokeStyle = '#e11d48';
    ctx.lineWidth = 2;
    ctx.strokeRect(1, selected * cell.h + 1, heatmap.width - 2, cell.h - 2);
  }
  heatmap.dataset.rows = String(rows);
  heatmap.dataset.cols = String(cols);
  heatmap.dataset.selected = String(selected);
  heatmap.dataset.weights = JSON.stringify(selected >= 0 ? (run.sampled[selected].inspect.attention ?? []) : []);
}

/** The selected token's attention as the tokens it attends to, shaded by weight. */
function renderAttentionRow(): void {
  if (!run || selected < 0) {
    attentionRow.replaceChildren();
    return;
  }
  const att = run.sampled[selected].inspect.attention ?? [];
  const r = run;
  attentionRow.replaceChildren(
    ...att.map((w, p) => {
      const span = tokenSpan(pieceText(r.llama, p === 0 ? r.ids[0] : r.ids[p - 1], r.ids[p]), r.ids[p], `rgba(79, 70, 229, ${Math.sqrt(w).toFixed(3)})`);
      span.title = `position ${p}: ${w.toFixed(4)}`;
      span.dataset.weight = String(w);
      return span;
    }),
  );
}

function select(i: number): void {
  if (!run || i < 0 || i >= run.sampled.length) return;
  selected = i;
  const s = run.sampled[i];
  selectedToken.textContent = `${JSON.stringify(s.text)} (position ${s.inspect.position + 1})`;
  output.querySelectorAll<HTMLElement>('.tok[data-index]').forEach((span) => span.classList.toggle('selected', Number(span.dataset.index) === i));
  renderCandidates();
  renderNorms();
  renderHeatmap();
  renderAttentionRow();
}

// ---- Generating -----------------------------------------------------------------

let running = false;

async function generate(): Promise<void> {
  running = true;
  generateButton.disabled = true;
  try {
    const temp = numberInput(temperature, 'temperature', { min: 0 }) ?? 1;
    const p = numberInput(topp, 'top-p', { min: 0, max: 1 }) ?? 0.9;
    const stepCount = numberInput(steps, 'steps', { integer: true, min: 1 }) ?? 48;
    const topK = numberInput(topkInput, 'top-k', { integer: true, min: 1, max: 100 }) ?? 10;
    // A seed is always used (and shown) so that choosing another layer or head re-runs the same text.
    if (seed.value.trim() === '') seed.value = String(1 + Math.floor(Math.random() * 2 ** 31));
    const seedValue = numberInput(seed, 'seed', { integer: true })!;
    const llama = await ensureLoaded();
    const layer = Number(layerSelect.value), head = Number(headSelect.value);
    attLayer.textContent = String(layer);
    attHead.textContent = String(head);
    setStatus('generating', `Generating on ${llama.backend.name}…`);
    status.dataset.backend = llama.backend.name;
    const ids = llama.tokenize(prompt.value);
    run = { llama, ids: [...ids], promptLength: ids.length, sampled: [], layer, head };
    selected = -1;
    renderPrompt(run);
    renderOutput(run);
    tempSlider.value = String(Math.min(2, temp));
    toppSlider.value = String(p);
    const gen = llama.generate(prompt.value, {
      steps: stepCount, temperature: temp, topp: p, seed: seedValue, logits: true,
      inspect: { attention: [layer, head], topK, residualNorms: true },
    });
    let painted = performance.now();
    for await (const t of gen) {
      if (!t.inspect || !t.logits) continue;
      run.sampled.push({ id: t.id, text: t.text, logits: t.logits, inspect: t.inspect });
      run.ids.push(t.id);
      if (performance.now() - painted > 100) {
        renderOutput(run);
        select(run.sampled.length - 1);
        await new Promise((r) => setTimeout(r, 0));
        painted = performance.now();
      }
    }
    const result = await gen.result();
    renderOutput(run);
    select(run.sampled.length - 1);
    setStatus('done', `Done: ${result.generatedTokens} tokens on ${llama.backend.name} (${result.timing.tokensPerSecond.toFixed(1)} tokens/s with inspection).`);
  } catch (e) {
    console.error(e);
    setStatus('error', `Error: ${(e as Error).message ?? String(e)}`);
  } finally {
    running = false;
    generateButton.disabled = false;
  }
}

form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  if (!running) void generate();
});
output.addEventListener('click', (ev) => {
  const span = (ev.target as HTMLElement).closest<HTMLElement>('.tok[data-index]');
  if (span) select(Number(span.dataset.index));
});
heatmap.addEventListener('click', (ev) => {
  const box = heatmap.getBoundingClientRect();
  select(Math.floor(((ev.clientY - box.top) * (heatmap.height / box.height)) / cell.h));
});
tempSlider.addEventListener('input', renderCandidates);
toppSlider.addEventListener('input', renderCandidates);
drawButton.addEventListener('click', () => {
  if (!run || selected < 0) return;
  const s = run.sampled[selected];
  const dist = samplingDistribution(s.logits, { temperature: Number(tempSlider.value), topp: Number(toppSlider.value) });
  let coin = Math.random(), id = 0;
  for (; id < dist.length - 1; id++) if ((coin -= dist[id]) < 0) break;
  drawn.textContent = `→ ${JSON.stringify(pieceText(run.llama, run.ids[s.inspect.position], id))} (${id})`;
  drawn.dataset.id = String(id);
});
// Another layer or head: the same generation again (same seed), inspecting it.
for (const s of [layerSelect, headSelect]) s.addEventListener('change', () => run && !running && void generate());
for (const [file, url] of [[modelFile, modelUrl], [tokenizerFile, tokenizerUrl]] as const) {
  file.addEventListener('change', () => {
    if (file.files?.[0]) url.value = '';
  });
}

if (params.get('autorun') === '1') void generate();
else if (modelUrl.value) setStatus('idle', 'Ready: press Generate.');
