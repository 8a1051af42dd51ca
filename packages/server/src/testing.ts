/** Test helpers: the tiny real model, raw HTTP requests, and an SSE reader. */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Llama, type Generation, type Session } from '@rama/llama';
import { sharedFile, missingMessage } from '@rama/testkit';

export { prng } from '@rama/testkit';

export const MODEL = 'models/aidreams260K.bin';
export const TOKENIZER = 'models/tok512-aidreams.bin';

/** The model's paths, or undefined (then the suite is skipped; under CI sharedFile throws instead). */
export function modelPaths(): { model: string; tokenizer: string } | undefined {
  const model = sharedFile(MODEL);
  const tokenizer = sharedFile(TOKENIZER);
  if (!model || !tokenizer) {
    console.warn(missingMessage(model ? TOKENIZER : MODEL));
    return undefined;
  }
  return { model, tokenizer };
}

export function loadModel(sessions: number): Promise<Llama> {
  const p = modelPaths()!;
  return Llama.load({ ...p, backend: 'cpu', sessions, threads: 1 });
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): any;
}

/** One request with node:http (no client-side checks or retries in the way). */
export function send(
  url: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string | number>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}${path}`, { method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'), headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export const post = (url: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  send(url, path, { body: JSON.stringify(body), headers: { 'content-type': 'application/json', ...headers } });

/** The events of an SSE body. */
export function parseSse(text: string): { event: string; data: string }[] {
  return text
    .split('\n\n')
    .filter((b) => b.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      return { event, data };
    });
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The Llama with every generation of its sessions slowed to one token per
 * `ms` (the tokens themselves unchanged), so that a test can act while a
 * request is surely still running, however loaded the machine is.
 */
export function slowLlama(llama: Llama, ms: number): Llama {
  const slowGeneration = (g: Generation): Generation =>
    ({
      async *[Symbol.asyncIterator]() {
        for await (const t of g) {
          await sleep(ms);
          yield t;
        }
      },
      result: () => g.result(),
      text: () => g.text(),
    }) as unknown as Generation;
  const slowSession = (s: Session): Session =>
    new Proxy(s, {
      get(target, key) {
        const v = Reflect.get(target, key, target);
        if (key === 'generate' || key === 'chat') return (...args: unknown[]) => slowGeneration((v as (...a: unknown[]) => Generation).apply(target, args));
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  return new Proxy(llama, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (key === 'session') return () => slowSession(target.session());
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
}
