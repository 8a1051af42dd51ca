/** The pieces of the `rama` command, for reuse and tests. */
export { main, version } from './main.js';
export { parseCliArgs, usage, UsageError, FLAGS, DEFAULTS } from './args.js';
export type { CliOptions, Mode, BackendFlag, KvCacheFlag } from './args.js';
export { cacheDir, cachedName, defaultSources, download, ensureCached, stallTimeoutMs, DownloadError, DEFAULT_MODEL_URL, DEFAULT_TOKENIZER_URL, DEFAULT_STALL_SECONDS } from './download.js';
export type { CacheOptions, DownloadOptions, DownloadSource, ProgressStream } from './download.js';
export { KNOWN_FILES, findProblem } from './verify.js';
export type { FileKind, KnownFile } from './verify.js';
export { BUILTIN_MODEL, DOWNLOADED_MODEL, MODEL_NAMES } from './models.js';
