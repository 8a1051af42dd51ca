/**
 * Model names in Llama.load: `hf:owner/repo/file.gguf[@revision]` and
 * http(s) URLs are fetched through @rama/hub (cached, resumed, verified);
 * anything else (a path, a Blob, bytes) is passed on as it is. A string that
 * names an existing local file stays that file, even if it looks like a name.
 */
import { fetchModel, isRemoteName, type FetchOptions, type Progress } from '@rama/hub';

export type { Progress } from '@rama/hub';

/** @rama/hub's options for names (offline, token, endpoint, cacheDir, ...). */
export type HubOptions = Omit<FetchOptions, 'onProgress'>;

export interface ResolveOptions {
  onProgress?: (p: Progress) => void;
  hub?: HubOptions;
}

/** Whether `s` is an existing local file (Node only; a browser has no paths). */
function isLocalFile(s: string): boolean {
  if (typeof process === 'undefined' || typeof process.getBuiltinModule !== 'function') return false;
  const fs = process.getBuiltinModule('node:fs');
  try {
    return fs.statSync(s).isFile();
  } catch {
    return false;
  }
}

/** Whether `source` (or one of a list) is a name to fetch rather than a local source. */
export function isModelName(source: unknown): source is string {
  return typeof source === 'string' && isRemoteName(source) && !isLocalFile(source);
}

/**
 * The local form of a model or tokenizer source: a name becomes its cached
 * file (Node: a path; browser: a Blob), or, for a split GGUF, the list of its
 * parts in order; other sources come back unchanged. In a list, each name is
 * fetched in turn.
 */
export async function resolveSource<T>(source: T | readonly T[], opts: ResolveOptions = {}): Promise<T | (string | Blob) | readonly (T | string | Blob)[]> {
  const fetchOne = async (s: T): Promise<readonly (T | string | Blob)[]> =>
    isModelName(s) ? fetchModel(s, { ...opts.hub, onProgress: opts.onProgress }) : [s];
  if (Array.isArray(source)) return (await Promise.all((source as readonly T[]).map(fetchOne))).flat();
  const files = await fetchOne(source as T);
  return files.length === 1 ? files[0] : files;
}
