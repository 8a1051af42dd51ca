/** The pieces of the `rama` command, for reuse and tests. */
export { main, version } from './main.js';
export { parseCliArgs, usage, UsageError, FLAGS, DEFAULTS } from './args.js';
export type { CliOptions, Mode, BackendFlag } from './args.js';
export { cacheDir, cachedName, defaultUrls, download, ensureCached, DownloadError, DEFAULT_MODEL_URL, DEFAULT_TOKENIZER_URL } from './download.js';
