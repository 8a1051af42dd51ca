/**
 * Models by name and the cache: `rama pull NAME...`, `rama ls`, `rama rm
 * NAME...`, and the fetch behind `-m hf:...`. Everything goes through
 * @rama/hub, so the CLI and the library share one cache: $RAMA_CACHE, else
 * $XDG_CACHE_HOME/rama, else ~/.cache/rama.
 */
import { RamaError } from '@rama/llama';
import { fetchModel, isRemoteName, listCached, removeCached } from '@rama/hub';
import { cacheDir } from '@rama/hub/node';
import { UsageError } from './args.js';
import { defaultSources, ensureCached, stallTimeoutMs } from './download.js';
import { DOWNLOADED_MODEL } from './models.js';
import { formatBytes, progressReporter } from './progress.js';

/** A model by name through @rama/hub (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE and RAMA_CACHE apply), with progress on stderr. */
export async function fetchNamed(name: string): Promise<string[]> {
  const progress = progressReporter(process.stderr);
  try {
    return (await fetchModel(name, { onProgress: progress.onProgress, stallTimeoutMs: stallTimeoutMs(), stallHint: 'RAMA_DOWNLOAD_TIMEOUT sets this limit' })) as string[];
  } finally {
    progress.abandon();
  }
}

export const CACHE_USAGE = {
  pull: [
    'Usage: rama pull NAME...',
    '',
    'Downloads models into the cache (and prints their paths), so that later runs',
    'and offline use (HF_HUB_OFFLINE=1) find them. NAME: hf:owner/repo/file.gguf[@revision]',
    '(a split GGUF *-00001-of-0000N.gguf: every part), an http(s) URL, or stories15M.',
  ],
  ls: ['Usage: rama ls', '', 'Lists the cached models: name, size and path.'],
  rm: ['Usage: rama rm NAME...', '', 'Removes models from the cache (every part of a split GGUF, and partial downloads).', 'NAME: as rama ls shows it, or stories15M.'],
} as const;

interface Io {
  out: (s: string) => unknown;
  err: (s: string) => unknown;
  version: string;
}

/** Runs `rama pull|ls|rm`; resolves to the exit code. */
export async function cacheCommand(command: keyof typeof CACHE_USAGE, argv: readonly string[], io: Io): Promise<number> {
  if (argv.includes('-h') || argv.includes('--help')) return io.out(`${CACHE_USAGE[command].join('\n')}\n`), 0;
  const flag = argv.find((a) => a.startsWith('-'));
  if (flag) throw new UsageError(`unknown flag ${flag} for rama ${command} (see rama ${command} --help)`);
  if (command === 'ls') {
    if (argv.length) throw new UsageError(`rama ls takes no arguments, got ${JSON.stringify(argv[0])}`);
    const models = await listCached();
    if (models.length === 0) return io.err(`rama: the cache (${cacheDir()}) is empty\n`), 0;
    const width = Math.max(...models.map((m) => m.name.length));
    for (const m of models) io.out(`${m.name.padEnd(width)}  ${formatBytes(m.size).padStart(10)}  ${m.path}\n`);
    return 0;
  }
  if (argv.length === 0) throw new UsageError(`rama ${command} needs a model name (see rama ${command} --help)`);
  if (command === 'pull') {
    for (const name of argv) {
      if (name === DOWNLOADED_MODEL) {
        const sources = defaultSources({});
        const cache = { progress: process.stderr, stallMs: stallTimeoutMs() };
        io.out(`${await ensureCached(sources.model, cache)}\n${await ensureCached(sources.tokenizer, cache)}\n`);
        continue;
      }
      if (!isRemoteName(name)) throw new UsageError(`rama pull: ${JSON.stringify(name)} is not a model name (hf:owner/repo/file, an http(s) URL, or ${DOWNLOADED_MODEL})`);
      for (const path of await fetchNamed(name)) io.out(`${path}\n`);
    }
    return 0;
  }
  let missing: string | undefined;
  for (const name of argv) {
    const removed = name === DOWNLOADED_MODEL ? await removeCached(`${name}.bin`) : await removeCached(name);
    for (const path of removed) io.out(`removed ${path}\n`);
    if (removed.length === 0) missing ??= name;
  }
  if (missing !== undefined) throw new RamaError('E_NOT_FOUND', `${missing} is not in the cache (${cacheDir()}); rama ls lists what is`);
  return 0;
}
