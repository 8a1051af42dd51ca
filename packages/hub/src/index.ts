/**
 * @rama/hub: models by name. `hf:owner/repo/file.gguf[@revision]` (a file on
 * the Hugging Face Hub) and http(s) URLs are downloaded once into a cache,
 * resumed when a connection breaks, and checked against the Hub's SHA-256
 * before use. Node keeps the cache on disk (`@rama/hub/node`); a browser in
 * the Cache API. This module is browser-safe: it loads the right one on demand.
 */
import { ArgumentError } from '@rama/core';
import type { CacheOptions, CachedModel, FetchOptions } from './options.js';

export { HubError, type HubErrorCode, type HubErrorDetails } from './errors.js';
export { parseModelRef, isRemoteName, modelParts, resolveUrl, type ModelRef, type HfRef, type UrlRef } from './ref.js';
export type { Progress } from './transfer.js';
export { DEFAULT_ENDPOINT, type FetchOptions, type CacheOptions, type CachedModel } from './options.js';

/** A fetched model file: a path in Node, a Blob in a browser. */
export type ModelFile = string | Blob;

const inNode = () => typeof process !== 'undefined' && !!process.versions?.node && typeof (globalThis as { window?: unknown }).window === 'undefined';

/**
 * The local copy of a model, downloading it first when it is not cached:
 * one file, or every part of a split GGUF (`x-00001-of-00003.gguf`) in
 * order. Node: paths; browser: Blobs from the cache.
 */
export async function fetchModel(name: string, opts: FetchOptions = {}): Promise<ModelFile[]> {
  if (typeof name !== 'string') throw new ArgumentError(`fetchModel: the name must be a string, got ${typeof name}`);
  if (inNode()) return (await import('./node.js')).fetchModel(name, opts);
  return (await import('./browser.js')).fetchModel(name, opts);
}

/** Every cached model file. */
export async function listCached(opts: CacheOptions = {}): Promise<CachedModel[]> {
  if (inNode()) return (await import('./node.js')).listCached(opts);
  return (await import('./browser.js')).listCached(opts);
}

/** Removes a model (every part of it) from the cache; resolves to what was removed (empty: it was not cached). */
export async function removeCached(name: string, opts: CacheOptions = {}): Promise<string[]> {
  if (inNode()) return (await import('./node.js')).removeCached(name, opts);
  return (await import('./browser.js')).removeCached(name, opts);
}
