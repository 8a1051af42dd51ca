/**
 * The engine's worker side: one Llama, driven by requests from the page
 * (see protocol.ts). `thread.ts` runs it on a Web Worker's global scope; any
 * MessagePort-like endpoint will do, which is how it is tested in Node.
 */
import { RamaError } from '@rama/core';
import type { Generation } from '../generation.js';
import { Llama, type ModelSource } from '../llama.js';
import type { Session } from '../session.js';
import { toWire, type LoadProgress, type ModelInfo, type PortIn, type PortOut, type Reply, type Request, type WireSource } from './protocol.js';

/** The worker's end of the channel: a DedicatedWorkerGlobalScope or a MessagePort. */
export interface Endpoint {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  addEventListener(type: 'message', listener: (ev: MessageEvent) => void): void;
  start?(): void;
}

/** Serves one model on `endpoint` until it is disposed. */
export function serve(endpoint: Endpoint): void {
  let llama: Llama | undefined;
  /** Sessions the page made, by its ids (0 is the model's default session); an Error when making one failed. */
  const sessions = new Map<number, Session | Error>();
  const post = (m: Reply) => endpoint.postMessage(m);

  const model = (): Llama => {
    if (!llama) throw new RamaError('E_STATE', 'no model is loaded in this worker');
    return llama;
  };

  const session = (id: number): Session | Llama => {
    if (id === 0) return model();
    const s = sessions.get(id);
    if (s instanceof Error) throw s;
    if (!s) throw new RamaError('E_STATE', `no session ${id} in this worker`);
    return s;
  };

  async function run(id: number, r: Request): Promise<unknown> {
    switch (r.op) {
      case 'load': {
        if (llama) throw new RamaError('E_STATE', 'this worker already holds a model');
        const progress = (p: LoadProgress) => post({ type: 'progress', id, progress: p });
        const modelSource = await fetched(r.options.model, 'model', progress);
        const tokenizer = r.options.tokenizer === undefined ? undefined : await fetched(r.options.tokenizer, 'tokenizer', progress);
        progress({ phase: 'load' });
        const { model: _m, tokenizer: _t, ...rest } = r.options;
        // hf: names are downloaded (and cached) by Llama.load itself, through @rama/hub.
        const onProgress = (p: { file: string; loaded: number; total: number | undefined }) =>
          progress({ phase: 'download', file: p.file, loaded: p.loaded, total: p.total });
        llama = await Llama.load({ ...rest, onProgress, model: modelSource, ...(tokenizer === undefined ? {} : { tokenizer }) });
        return infoOf(llama);
      }
      case 'tokenize':
        return model().tokenize(r.text, r.options as never);
      case 'countTokens':
        return model().countTokens(r.text, r.options as never);
      case 'detokenize':
        return model().detokenize(r.ids);
      case 'session':
        try {
          sessions.set(r.session, model().session());
        } catch (e) {
          // Kept: the session's calls throw it (the page checked the slot count already).
          sessions.set(r.session, e as Error);
        }
        return undefined;
      case 'reset': {
        const s = session(r.session);
        if (s instanceof Llama) s.resetChat();
        else s.reset();
        return undefined;
      }
      case 'disposeSession': {
        const s = sessions.get(r.session);
        sessions.delete(r.session);
        if (s && !(s instanceof Error)) s.dispose();
        return undefined;
      }
      case 'generate':
      case 'chat': {
        const ac = new AbortController();
        if (r.aborted) ac.abort();
        const options = { ...r.options, signal: ac.signal };
        const target = r.session === 0 ? undefined : sessions.get(r.session);
        stream(r.port, ac, () => {
          const s = session(r.session);
          return r.op === 'generate' ? s.generate(r.input as never, options) : s.chat(r.input as never, options);
        }, () => (target && !(target instanceof Error) ? target.tokens : undefined));
        return undefined;
      }
      case 'dispose':
        llama?.dispose();
        llama = undefined;
        sessions.clear();
        return undefined;
    }
  }

  endpoint.addEventListener('message', (ev: MessageEvent) => {
    const { id, request } = ev.data as { id: number; request: Request };
    run(id, request).then(
      (value) => post({ type: 'reply', id, value }),
      (e) => post({ type: 'error', id, error: toWire(e) }),
    );
  });
  endpoint.start?.();
  post({ type: 'ready' });
}

/**
 * Streams a generation over its port: a token per credit the page grants,
 * then the result (or the error). A cancel (the page's consumer left) returns
 * the iterator, which ends the generation as breaking out of a loop does.
 */
function stream(port: MessagePort, ac: AbortController, make: () => Generation, tokensOf: () => readonly number[] | undefined): void {
  let credits = 0;
  let cancelled = false;
  let wake: (() => void) | undefined;
  const send = (m: PortOut, transfer: Transferable[] = []) => port.postMessage(m, transfer);
  port.onmessage = (ev: MessageEvent<PortIn>) => {
    const m = ev.data;
    if ('credit' in m) credits += m.credit;
    else if ('abort' in m) ac.abort();
    else cancelled = true;
    wake?.();
  };
  void (async () => {
    try {
      const gen = make();
      const it = gen[Symbol.asyncIterator]();
      for (;;) {
        while (credits === 0 && !cancelled) await new Promise<void>((r) => (wake = r));
        if (cancelled) {
          await it.return?.(undefined);
          break;
        }
        const r = await it.next();
        if (r.done) break;
        credits--;
        // Each token's logits are a fresh copy: handed over, not copied again.
        send({ token: r.value }, r.value.logits ? [r.value.logits.buffer] : []);
      }
      const result = await gen.result();
      send({ end: result, tokens: [...(tokensOf() ?? result.tokens)] });
    } catch (e) {
      send({ error: toWire(e) });
    } finally {
      port.onmessage = null;
      port.close();
    }
  })();
}

function infoOf(llama: Llama): ModelInfo {
  const { chatTemplate: _t, jinjaTemplate: _j, ...spec } = llama.spec;
  const b = llama.backend as typeof llama.backend & { threads?: number; notice?: string };
  return {
    spec,
    config: llama.config,
    format: llama.format,
    contextLength: llama.contextLength,
    batchSize: llama.batchSize,
    sessions: llama.sessions,
    quantized: llama.quantized,
    backend: { name: b.name, description: b.description, threads: b.threads, notice: b.notice },
  };
}

/** A URL is fetched here (reporting progress) into a File named after it, so errors name the file. */
async function fetched(source: WireSource, file: 'model' | 'tokenizer', progress: (p: LoadProgress) => void): Promise<ModelSource> {
  if (!(typeof source === 'object' && source !== null && 'url' in source && typeof source.url === 'string')) return source as ModelSource;
  const url = source.url;
  if (url.startsWith('hf:')) return url;
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new RamaError('E_FETCH', `${file}: cannot fetch ${url}: ${(e as Error).message}`, { cause: e });
  }
  if (!res.ok) throw new RamaError('E_FETCH', `${file}: ${url}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || undefined;
  const parts: Uint8Array[] = [];
  let loaded = 0;
  let shown = 0;
  progress({ phase: 'download', file, loaded, total });
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      loaded += value.byteLength;
      if (performance.now() - shown > 50) {
        shown = performance.now();
        progress({ phase: 'download', file, loaded, total });
      }
    }
  } else {
    const b = new Uint8Array(await res.arrayBuffer());
    parts.push(b);
    loaded = b.byteLength;
  }
  progress({ phase: 'download', file, loaded, total });
  const name = decodeURIComponent(new URL(url).pathname.split('/').pop() || url);
  return new File(parts as BlobPart[], name);
}
