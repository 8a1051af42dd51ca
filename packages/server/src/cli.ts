/**
 * rama-serve's flags, and starting a server from them: load the model with
 * one session per parallel request, serve, and drain on SIGTERM / SIGINT.
 */
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { parseArgs as parseNodeArgs } from 'node:util';
import { ArgumentError, Llama, type BackendName, type KvCacheType } from '@rama/llama';
import { serve, type ServerHandle } from './server.js';

/** The usage text, for the command `program` (rama-serve, or the rama CLI's "rama serve"). */
export const usage = (program: string): string => `Usage: ${program} -m MODEL -t TOKENIZER [options]

An OpenAI-compatible HTTP server for a llama2.c checkpoint.

Options:
  -m, --model PATH         llama2.c checkpoint (.bin)                  (required)
  -t, --tokenizer PATH     its tokenizer.bin                            (required)
      --host HOST          interface to listen on (default 127.0.0.1; 0.0.0.0: all)
      --port N             port (default 8080; 0: any free port)
      --parallel N         requests generating at once (default 4)
      --queue N            requests waiting beyond those (default 64; then 429)
      --api-key KEY        require "Authorization: Bearer KEY" (or set RAMA_API_KEY)
      --model-name NAME    the model's name in the API (default: MODEL's file name)
      --backend B          cpu, webgpu or auto (default cpu)
      --threads N          CPU backend threads (default: every core)
      --q80                quantize an fp32 model to Q8_0 at load
      --kv-cache TYPE      KV cache element type: f32 or f16 (half the memory per session; default f32)
      --body-limit BYTES   largest request body (default 1048576)
      --drain-ms MS        on SIGTERM/SIGINT, how long running requests may finish (default 10000)
  -h, --help               this help
      --version            the version

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
GET /gen?prompt=..., GET / (a page to try it), GET /health, GET /metrics.
`;

/** rama-serve's `--help` text. */
export const USAGE = usage('rama-serve');

/** rama-serve's flags, parsed and checked (see `usage`). */
export interface ServeArgs {
  /** -m: the checkpoint's path. */
  model: string;
  /** -t: its tokenizer.bin. */
  tokenizer: string;
  /** --host */
  host: string;
  /** --port (0: any free port) */
  port: number;
  /** --parallel: requests generating at once. */
  parallel: number;
  /** --queue: requests that may wait. */
  queue: number;
  /** --api-key, or RAMA_API_KEY. */
  apiKey?: string;
  /** --model-name */
  modelName: string;
  /** --backend */
  backend: BackendName;
  /** --threads */
  threads?: number;
  /** --q80 */
  q80: boolean;
  /** --kv-cache: the KV cache's element type. */
  kvCache: KvCacheType;
  /** --body-limit, in bytes. */
  bodyLimit: number;
  /** --drain-ms */
  drainMs: number;
}

/** The flags as ServeArgs, 'help' or 'version'; a bad flag is an ArgumentError whose message says what to fix. */
export function parseArgs(argv: string[], env: Record<string, string | undefined> = process.env): ServeArgs | 'help' | 'version' {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseNodeArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        model: { type: 'string', short: 'm' },
        tokenizer: { type: 'string', short: 't' },
        host: { type: 'string' },
        port: { type: 'string' },
        parallel: { type: 'string' },
        queue: { type: 'string' },
        'api-key': { type: 'string' },
        'model-name': { type: 'string' },
        backend: { type: 'string' },
        threads: { type: 'string' },
        q80: { type: 'boolean' },
        'kv-cache': { type: 'string' },
        'body-limit': { type: 'string' },
        'drain-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    }));
  } catch (e) {
    // node:util's messages name the flag; drop its advice about '--' which does not apply here.
    const lines = (e as Error).message.split('\n').map((l) => l.replace(/\.? To specify a positional argument.*$/, '')).filter((l) => !/^To specify/.test(l));
    throw new ArgumentError(`${lines.join(' ')} (see --help)`);
  }
  if (values.help) return 'help';
  if (values.version) return 'version';
  const int = (name: string, dflt: number, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const v = values[name] as string | undefined;
    if (v === undefined) return dflt;
    const n = Number(v);
    if (v.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new ArgumentError(`--${name} must be an integer in ${min}..${max}, got "${v}"`);
    return n;
  };
  const model = values.model as string | undefined;
  const tokenizer = values.tokenizer as string | undefined;
  if (!model) throw new ArgumentError('-m/--model is required: a llama2.c checkpoint (see --help)');
  if (!tokenizer) throw new ArgumentError('-t/--tokenizer is required: the tokenizer.bin for the model (see --help)');
  const backend = (values.backend as string | undefined) ?? 'cpu';
  if (!['cpu', 'webgpu', 'auto'].includes(backend)) throw new ArgumentError(`--backend must be cpu, webgpu or auto, got "${backend}"`);
  const apiKey = (values['api-key'] as string | undefined) ?? (env.RAMA_API_KEY || undefined);
  if (apiKey === '') throw new ArgumentError('--api-key must not be empty');
  const kvCache = (values['kv-cache'] as string | undefined) ?? 'f32';
  if (kvCache !== 'f32' && kvCache !== 'f16') throw new ArgumentError(`--kv-cache must be f32 or f16, got "${kvCache}"`);
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  if (host === '') throw new ArgumentError('--host must not be empty');
  return {
    model,
    tokenizer,
    host,
    port: int('port', 8080, 0, 65535),
    parallel: int('parallel', 4, 1, 1024),
    queue: int('queue', 64, 0),
    apiKey,
    modelName: (values['model-name'] as string | undefined) || basename(model, extname(model)),
    backend: backend as BackendName,
    threads: values.threads === undefined ? undefined : int('threads', 1, 1, 1024),
    q80: values.q80 === true,
    kvCache,
    bodyLimit: int('body-limit', 1 << 20, 1),
    drainMs: int('drain-ms', 10_000, 0),
  };
}

/** Loads the model and serves it. The caller drains with `handle.close()` and then disposes `llama`. */
export async function runServe(args: ServeArgs): Promise<{
  /** The loaded model: dispose it after closing the server. */
  llama: Llama;
  /** The running server. */
  handle: ServerHandle;
}> {
  const llama = await Llama.load({
    model: args.model,
    tokenizer: args.tokenizer,
    backend: args.backend,
    sessions: args.parallel,
    q80: args.q80,
    kvCacheType: args.kvCache,
    ...(args.threads !== undefined && { threads: args.threads }),
  });
  try {
    const handle = await serve(llama, {
      host: args.host,
      port: args.port,
      parallel: args.parallel,
      queue: args.queue,
      apiKey: args.apiKey,
      modelName: args.modelName,
      bodyLimit: args.bodyLimit,
    });
    return { llama, handle };
  } catch (e) {
    llama.dispose();
    throw e;
  }
}

/** Where `main` writes and what environment it reads (tests pass their own). */
export interface MainIO {
  /** The command's name in messages (default rama-serve). */
  program?: string;
  /** Writes to standard output. */
  stdout: (text: string) => void;
  /** Writes to standard error. */
  stderr: (text: string) => void;
  /** The environment (RAMA_API_KEY). */
  env: Record<string, string | undefined>;
}

const defaultIO: MainIO = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
};

/**
 * The whole command, for `rama-serve` and for a `rama serve` subcommand:
 * parses `argv` (no program name), loads, serves until SIGTERM or SIGINT,
 * drains, disposes. Resolves with the exit code (0; 2 for a bad flag); a
 * failure to load or listen rejects, for the caller to print as one line. A
 * second signal while draining exits the process at once.
 */
export async function main(argv: string[], io: MainIO = defaultIO): Promise<number> {
  const program = io.program ?? 'rama-serve';
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(argv, io.env);
  } catch (e) {
    if (!(e instanceof ArgumentError)) throw e;
    io.stderr(`${program}: error: ${e.message}\n`);
    return 2;
  }
  if (args === 'help') {
    io.stdout(usage(program));
    return 0;
  }
  if (args === 'version') {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    io.stdout(`${program} ${version}\n`);
    return 0;
  }
  const a = args;
  const { llama, handle } = await runServe(a);
  io.stderr(
    `${program}: listening on ${handle.url} (model ${a.modelName}, ${llama.config.seqLen} positions, parallel ${a.parallel}, queue ${a.queue}${a.apiKey ? ', API key required' : ''})\n`,
  );
  return new Promise<number>((resolve, reject) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        io.stderr(`${program}: ${signal} again: exiting now\n`);
        process.exit(1);
      }
      stopping = true;
      io.stderr(`${program}: ${signal}: draining (up to ${a.drainMs} ms)\n`);
      handle.close({ drainMs: a.drainMs }).then(
        () => {
          llama.dispose();
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          io.stderr(`${program}: stopped\n`);
          resolve(0);
        },
        reject,
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
