/**
 * Model names: `hf:owner/repo/path/file.gguf[@revision]` (a file in a
 * Hugging Face repository) and http(s) URLs.
 */
import { ArgumentError } from '@rama/core';

/** A file in a Hugging Face repository, parsed from `hf:owner/repo/path[@revision]`. */
export interface HfRef {
  /** Tells it from a UrlRef. */
  kind: 'hf';
  /** The canonical name: `hf:owner/repo/path`, with `@revision` unless it is main. */
  name: string;
  /** The repository's owner (user or organization). */
  owner: string;
  /** The repository's name. */
  repo: string;
  /** The file's path inside the repository ("sub/dir/model.gguf"). */
  path: string;
  /** Branch, tag or commit (default "main"). */
  revision: string;
}

/** A model at an http(s) URL. */
export interface UrlRef {
  /** Tells it from an HfRef. */
  kind: 'url';
  /** The name as given: the URL. */
  name: string;
  /** The address to fetch. */
  url: string;
}

/** A parsed model name. */
export type ModelRef = HfRef | UrlRef;

/** Whether `s` is a name this package fetches (hf: or an http(s) URL) rather than a local path. */
export function isRemoteName(s: string): boolean {
  return /^hf:/i.test(s) || /^https?:\/\//i.test(s);
}

const NAME_PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Parses a model name; a malformed one is an ArgumentError saying what the form is. */
export function parseModelRef(name: string): ModelRef {
  if (typeof name !== 'string' || name === '') throw new ArgumentError(`model name must be a non-empty string, got ${JSON.stringify(name)}`);
  if (/^https?:\/\//i.test(name)) {
    let url: URL;
    try {
      url = new URL(name);
    } catch {
      throw new ArgumentError(`model URL ${JSON.stringify(name)} is not a valid URL`);
    }
    return { kind: 'url', name, url: url.href };
  }
  if (!/^hf:/i.test(name)) throw new ArgumentError(`model name ${JSON.stringify(name)} is neither hf:owner/repo/file nor an http(s) URL`);
  const bad = (why: string) => new ArgumentError(`model name ${JSON.stringify(name)}: ${why} (expected hf:owner/repo/path/file.gguf or hf:owner/repo/file.gguf@revision)`);
  let body = name.slice(3);
  let revision = 'main';
  const at = body.lastIndexOf('@');
  if (at >= 0) {
    revision = body.slice(at + 1);
    body = body.slice(0, at);
    if (revision === '' || revision.split('/').some((s) => s === '' || s === '.' || s === '..')) throw bad(`the revision ${JSON.stringify(revision)} is not valid`);
  }
  const [owner, repo, ...rest] = body.split('/');
  if (!owner || !NAME_PART.test(owner)) throw bad(`the owner ${JSON.stringify(owner ?? '')} is not valid`);
  if (!repo || !NAME_PART.test(repo)) throw bad(`the repository ${JSON.stringify(repo ?? '')} is not valid`);
  if (rest.length === 0) throw bad('no file is named');
  if (rest.some((s) => s === '' || s === '.' || s === '..' || s.includes('\\') || /[\x00-\x1f]/.test(s))) throw bad('the file path is not valid');
  const path = rest.join('/');
  return { kind: 'hf', name: `hf:${owner}/${repo}/${path}${revision === 'main' ? '' : `@${revision}`}`, owner, repo, path, revision };
}

const SPLIT = /^(.*-)(\d{5})-of-(\d{5})(\.gguf)$/i;

/**
 * A split GGUF model: `x-00001-of-00003.gguf` names its parts
 * `x-00001-of-00003.gguf` ... `x-00003-of-00003.gguf`, returned in order
 * (any one part names them all). Any other file is its own single part.
 */
export function modelParts<R extends ModelRef>(ref: R): R[] {
  const key = ref.kind === 'hf' ? ref.path : new URL(ref.url).pathname;
  const file = key.split('/').pop()!;
  const m = SPLIT.exec(file);
  if (!m) return [ref];
  const count = Number(m[3]);
  if (count < 1 || Number(m[2]) < 1 || Number(m[2]) > count) throw new ArgumentError(`model name ${JSON.stringify(ref.name)}: part ${m[2]} of ${m[3]} is not a valid split GGUF part`);
  const parts: R[] = [];
  for (let k = 1; k <= count; k++) {
    const partFile = `${m[1]}${String(k).padStart(5, '0')}-of-${m[3]}${m[4]}`;
    if (ref.kind === 'hf') {
      const path = [...ref.path.split('/').slice(0, -1), partFile].join('/');
      parts.push({ ...ref, path, name: `hf:${ref.owner}/${ref.repo}/${path}${ref.revision === 'main' ? '' : `@${ref.revision}`}` });
    } else {
      const url = new URL(ref.url);
      url.pathname = [...url.pathname.split('/').slice(0, -1), partFile].join('/');
      parts.push({ ...ref, url: url.href, name: url.href });
    }
  }
  return parts;
}

/** The Hub's download address of a file: `<endpoint>/<owner>/<repo>/resolve/<revision>/<path>`. */
export function resolveUrl(ref: HfRef, endpoint: string): string {
  const path = ref.path.split('/').map(encodeURIComponent).join('/');
  return `${endpoint.replace(/\/+$/, '')}/${ref.owner}/${ref.repo}/resolve/${encodeURIComponent(ref.revision)}/${path}`;
}

/** The file's name for messages and progress: its path in the repository, or the URL's last segment. */
export function fileLabel(ref: ModelRef): string {
  if (ref.kind === 'hf') return ref.path;
  const last = new URL(ref.url).pathname.split('/').filter(Boolean).pop() ?? '';
  try {
    return decodeURIComponent(last) || ref.url;
  } catch {
    return last;
  }
}
