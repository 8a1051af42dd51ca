/**
 * Command-line flags: llama2.c's (-m -t -p -s -r -l -o) plus Rama's own.
 * Hand-written rather than node:util parseArgs so that a value may start
 * with "-" (as in `-p "-5 degrees"`) and every mistake gets a message that
 * names the flag.
 */

/** A mistake on the command line: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type Mode = 'generate' | 'chat';
export type BackendFlag = 'cpu' | 'webgpu' | 'auto';
/** --kv-cache: the KV cache's element type. */
export type KvCacheFlag = 'f32' | 'f16';

export interface CliOptions {
  model?: string;
  tokenizer?: string;
  prompt: string;
  /** llama2.c's steps: positions run, prompt included; 0 = the model's seq_len. */
  steps: number;
  temperature: number;
  topp: number;
  topk: number;
  minp: number;
  repeatPenalty: number;
  /** undefined: the current time (llama2.c's default). */
  seed?: number;
  mode: Mode;
  system?: string;
  backend: BackendFlag;
  q80: boolean;
  threads?: number;
  /** The KV cache's element type (Llama.load's kvCacheType). */
  kvCache: KvCacheFlag;
  json: boolean;
  modelUrl?: string;
  tokenizerUrl?: string;
  help: boolean;
  version: boolean;
}

type Key = keyof CliOptions;

interface Flag {
  key: Key;
  long: string;
  short?: string;
  /** Placeholder shown in --help; absent for boolean flags. */
  arg?: string;
  help: string;
  /** Converts and checks a value; throws a message describing what was expected. */
  parse?: (raw: string) => unknown;
}

// Plain decimal only: Number() also takes "0x10", "0b1", " 5" and "Infinity",
// none of which anyone means as a step count or a temperature.
const INTEGER = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** A number check: returns the value or throws "expected ...". */
export function number(opts: { integer?: boolean; min?: number; above?: number; below?: number }) {
  const parts = [opts.integer ? 'an integer' : 'a number'];
  if (opts.min !== undefined) parts.push(`>= ${opts.min}`);
  if (opts.above !== undefined) parts.push(`> ${opts.above}`);
  if (opts.below !== undefined) parts.push(`< ${opts.below}`);
  const expected = parts.join(' ');
  return (raw: string): number => {
    const n = Number(raw);
    const ok =
      (opts.integer ? INTEGER : DECIMAL).test(raw) &&
      Number.isFinite(n) &&
      (!opts.integer || Number.isSafeInteger(n)) &&
      (opts.min === undefined || n >= opts.min) &&
      (opts.above === undefined || n > opts.above) &&
      (opts.below === undefined || n < opts.below);
    if (!ok) throw new Error(`expected ${expected}`);
    return n;
  };
}

function oneOf<T extends string>(...choices: T[]) {
  return (raw: string): T => {
    if (!(choices as string[]).includes(raw)) throw new Error(`expected ${choices.join(', ')}`);
    return raw as T;
  };
}

const text = (raw: string) => raw;

export const FLAGS: readonly Flag[] = [
  { key: 'model', long: 'model', short: 'm', arg: 'PATH', help: 'llama2.c checkpoint or GGUF file, or a name: aidreams260K (built in, the default), stories15M, hf:owner/repo/file.gguf[@rev] or an http(s) URL (downloaded once)', parse: text },
  { key: 'tokenizer', long: 'tokenizer', short: 't', arg: 'PATH', help: "tokenizer.bin, or its hf: name or URL (default: the built-in model's own; for other models the Llama 2 tokenizer, downloaded once)", parse: text },
  { key: 'prompt', long: 'prompt', short: 'p', arg: 'TEXT', help: 'prompt (generate) or first user message (chat); default ""', parse: text },
  { key: 'steps', long: 'step', short: 's', arg: 'N', help: "positions to run, prompt included; 0 = the model's seq_len (default 256)", parse: number({ integer: true, min: 0 }) },
  { key: 'temperature', long: 'temperature', short: 'r', arg: 'T', help: '0 = greedy (default 1.0)', parse: number({ min: 0 }) },
  { key: 'topp', long: 'topp', short: 'l', arg: 'P', help: 'top-p (nucleus) threshold; <= 0 or >= 1 turns it off (default 0.9)', parse: number({}) },
  { key: 'mode', long: 'mode', short: 'o', arg: 'MODE', help: 'generate or chat (default generate)', parse: oneOf<Mode>('generate', 'chat') },
  { key: 'system', long: 'system', arg: 'TEXT', help: 'system prompt (chat mode)', parse: text },
  { key: 'seed', long: 'seed', arg: 'N', help: 'random seed; 0 or absent = the current time', parse: number({ integer: true, min: 0 }) },
  { key: 'backend', long: 'backend', arg: 'NAME', help: 'cpu, webgpu or auto (default cpu)', parse: oneOf<BackendFlag>('cpu', 'webgpu', 'auto') },
  { key: 'q80', long: 'q80', help: "quantize an fp32 checkpoint to Q8_0 at load (runq.c's numerics)" },
  { key: 'threads', long: 'threads', arg: 'N', help: 'CPU worker threads (default: every core)', parse: number({ integer: true, min: 1 }) },
  { key: 'kvCache', long: 'kv-cache', arg: 'TYPE', help: 'KV cache element type: f32 or f16 (half the memory; default f32)', parse: oneOf<KvCacheFlag>('f32', 'f16') },
  { key: 'topk', long: 'top-k', arg: 'K', help: 'keep the K most likely tokens; 0 = off (default)', parse: number({ integer: true, min: 0 }) },
  { key: 'minp', long: 'min-p', arg: 'P', help: 'keep tokens with prob >= P * the top prob; 0 = off (default)', parse: number({ min: 0, below: 1 }) },
  { key: 'repeatPenalty', long: 'repeat-penalty', arg: 'X', help: '> 1 discourages recent tokens; 1 = off (default)', parse: number({ above: 0 }) },
  { key: 'json', long: 'json', help: 'print JSON only on stdout (one line per generation or chat turn)' },
  { key: 'modelUrl', long: 'model-url', arg: 'URL', help: 'download the model from this address (instead of -m)', parse: url },
  { key: 'tokenizerUrl', long: 'tokenizer-url', arg: 'URL', help: 'download the tokenizer from this address (instead of -t)', parse: url },
  { key: 'help', long: 'help', short: 'h', help: 'show this help' },
  { key: 'version', long: 'version', short: 'v', help: 'print the version' },
];

/**
 * An http(s) address whose path decodes (the cache file is named after its
 * last segment); throws "expected an http(s) URL" otherwise.
 */
export function url(raw: string): string {
  let ok = false;
  try {
    const u = new URL(raw);
    ok = (u.protocol === 'http:' || u.protocol === 'https:') && decodeURIComponent(u.pathname) !== undefined;
  } catch {
    // new URL: "Invalid URL"; decodeURIComponent: "URI malformed". Both are reported below, naming the flag or variable.
  }
  if (!ok) throw new Error('expected an http(s) URL');
  return raw;
}

/** Runs a check on a flag's or an environment variable's value: a bad value is a UsageError naming it. */
export function checkValue<T>(name: string, raw: string, parse: (raw: string) => T): T {
  try {
    return parse(raw);
  } catch (e) {
    throw new UsageError(`invalid value for ${name}: ${JSON.stringify(raw)} (${(e as Error).message})`);
  }
}

export const DEFAULTS: CliOptions = {
  prompt: '',
  steps: 256,
  temperature: 1.0,
  topp: 0.9,
  topk: 0,
  minp: 0,
  repeatPenalty: 1,
  mode: 'generate',
  backend: 'cpu',
  q80: false,
  kvCache: 'f32',
  json: false,
  help: false,
  version: false,
};

const label = (f: Flag) => (f.short ? `-${f.short}/--${f.long}` : `--${f.long}`);

/**
 * llama2.c's `run <checkpoint> [options]` flags, after a checkpoint given as
 * the first argument: each takes a value. (Rama's long flags still work
 * there; its short ones do not, since llama2.c uses the same letters.)
 */
export const LLAMA2C_FLAGS: readonly Flag[] = [
  { key: 'temperature', long: 'temperature', short: 't', arg: 'T', help: 'temperature; 0 = greedy (default 1.0)', parse: number({ min: 0 }) },
  { key: 'topp', long: 'topp', short: 'p', arg: 'P', help: 'top-p (nucleus) threshold (default 0.9)', parse: number({}) },
  { key: 'seed', long: 'seed', short: 's', arg: 'N', help: 'random seed; 0 = the current time', parse: number({ integer: true, min: 0 }) },
  { key: 'steps', long: 'step', short: 'n', arg: 'N', help: "positions to run (default 256); 0 = the model's seq_len", parse: number({ integer: true, min: 0 }) },
  { key: 'prompt', long: 'prompt', short: 'i', arg: 'TEXT', help: 'input prompt', parse: text },
  { key: 'tokenizer', long: 'tokenizer', short: 'z', arg: 'PATH', help: 'tokenizer.bin', parse: text },
  { key: 'mode', long: 'mode', short: 'm', arg: 'MODE', help: 'generate or chat (default generate)', parse: oneOf<Mode>('generate', 'chat') },
  { key: 'system', long: 'system', short: 'y', arg: 'TEXT', help: 'system prompt (chat mode)', parse: text },
];

/** Whether argv is llama2.c's form: a checkpoint first (anything but a flag). */
export const isLlama2cForm = (argv: readonly string[]): boolean => argv.length > 0 && !argv[0].startsWith('-');

export function parseCliArgs(argv: readonly string[]): CliOptions {
  const out: Record<string, unknown> = { ...DEFAULTS };
  // llama2.c's form: `rama model.bin -t 0.8 -n 256 -i "..." -z tokenizer.bin`.
  const compat = isLlama2cForm(argv);
  if (compat) {
    out.model = argv[0];
    argv = argv.slice(1);
  }
  const shortFlags = compat ? LLAMA2C_FLAGS : FLAGS;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--' || !a.startsWith('-') || a === '-') {
      const extra = a === '--' ? argv[i + 1] : a;
      if (extra === undefined) break;
      throw new UsageError(`unexpected argument ${JSON.stringify(extra)} (see rama --help)`);
    }
    if (compat && /^-[a-z]$/i.test(a) && !LLAMA2C_FLAGS.some((f) => `-${f.short}` === a)) {
      throw new UsageError(`unknown flag ${a} after a checkpoint (llama2.c's flags: ${LLAMA2C_FLAGS.map((f) => `-${f.short}`).join(' ')}, or Rama's long ones; see rama --help)`);
    }
    let name = a;
    let inline: string | undefined;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      name = a.slice(0, eq);
      inline = a.slice(eq + 1);
    }
    const flag = name.startsWith('--')
      ? FLAGS.find((f) => `--${f.long}` === name)
      : shortFlags.find((f) => f.short !== undefined && `-${f.short}` === name);
    if (!flag) throw new UsageError(`unknown flag ${name} (see rama --help)`);
    if (!flag.parse) {
      if (inline !== undefined) throw new UsageError(`flag ${label(flag)} takes no value`);
      out[flag.key] = true;
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new UsageError(`flag ${label(flag)} needs a value (${flag.arg})`);
    out[flag.key] = checkValue(label(flag), raw, flag.parse);
  }
  const opts = out as unknown as CliOptions;
  if (opts.seed === 0) opts.seed = undefined;
  // llama2.c ignores -y outside chat; Rama's own form says so.
  if (opts.system !== undefined && opts.mode !== 'chat') {
    if (compat) opts.system = undefined;
    else throw new UsageError('flag --system needs --mode chat');
  }
  return opts;
}

export function usage(version: string): string {
  const rows = FLAGS.map((f) => [`${f.short ? `-${f.short}, ` : '    '}--${f.long}${f.arg ? ` ${f.arg}` : ''}`, f.help]);
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return [
    `rama ${version}: Llama 2 inference in TypeScript (a port of llama2.c)`,
    '',
    'Usage: rama [options]',
    '       rama serve [options]   an OpenAI-compatible server (rama serve --help)',
    '       rama CHECKPOINT [-t T] [-p P] [-s N] [-n N] [-i TEXT] [-z PATH] [-m MODE] [-y TEXT]',
    "                              llama2.c's run: its flags after a checkpoint (see below)",
    '       rama pull NAME...      download models into the cache',
    '       rama ls                list the cached models',
    '       rama rm NAME...        remove models from the cache',
    '',
    'Options:',
    ...rows.map(([l, h]) => `  ${l.padEnd(width)}${h}`),
    '',
    "llama2.c's flags, after a checkpoint given first (Rama's long flags work there too):",
    ...LLAMA2C_FLAGS.map((f) => `  -${f.short} ${f.arg!.padEnd(6)}${f.help} (--${f.long})`),
    '',
    'Examples:',
    '  rama -p "I dreamed of" -r 0                     # the built-in aidreams260K, greedy',
    '  rama -m stories15M -p "Once upon a time"        # stories15M.bin, downloaded on first use',
    '  rama -m hf:owner/repo/model-q8_0.gguf -p "Hi"   # a GGUF file from the Hugging Face Hub',
    '  rama -m model.bin -t tokenizer.bin -r 0 -s 64   # greedy, 64 positions',
    '  rama model.bin -t 0.8 -n 256 -i "Once upon a time" -z tokenizer.bin   # llama2.c\'s flags',
    '  rama -m chat.bin -o chat --system "Be brief."   # chat on a terminal',
    '  printf "Hi\\nBye\\n" | rama -m chat.bin -o chat --json',
    '  rama serve --port 8080                           # the built-in model over HTTP',
    '',
    'Downloads are cached in $RAMA_CACHE, else $XDG_CACHE_HOME/rama, else ~/.cache/rama.',
    'RAMA_MODEL_BASE_URL replaces the download address of stories15M.bin and tokenizer.bin;',
    'RAMA_DOWNLOAD_TIMEOUT sets the seconds without data before a download fails (default 30).',
    'HF_TOKEN: a Hugging Face token (gated repositories); HF_ENDPOINT: another Hub;',
    'HF_HUB_OFFLINE=1: use only the cache.',
    '',
  ].join('\n');
}
