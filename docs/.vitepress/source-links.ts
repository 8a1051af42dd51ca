/**
 * Links from the guide to our code that cannot go stale. In Markdown,
 * `[text](src:packages/llama/src/forward.ts#attention)` becomes a link to the
 * lines of that `// #region attention` on GitHub, and
 * `[text](src:packages/tokenizer/src/tokenizer.ts?find=encode%28)` to the first
 * line containing `encode(`. The line numbers are computed from the files at
 * build time; a missing file, region or string fails the build.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { MarkdownRenderer } from 'vitepress';

export const REPO_BLOB = 'https://github.com/rama-llama/rama/blob/main/';

/** Lines (1-based, inclusive) of a region's body, or of the first line containing `find`. */
export function sourceLines(root: string, path: string, anchor: { region?: string; find?: string }): [number, number] {
  let text: string;
  try {
    text = readFileSync(resolve(root, path), 'utf8');
  } catch {
    throw new Error(`source link: ${path} does not exist`);
  }
  const lines = text.split('\n');
  if (anchor.region !== undefined) {
    const name = anchor.region;
    const start = lines.findIndex((l) => new RegExp(`^\\s*(//|/\\*)\\s*#region ${name}\\b`).test(l));
    if (start < 0) throw new Error(`source link: ${path} has no "// #region ${name}"`);
    const end = lines.findIndex((l, i) => i > start && new RegExp(`^\\s*(//|/\\*)\\s*#endregion( ${name}\\b)?`).test(l));
    if (end < 0) throw new Error(`source link: ${path}'s region ${name} has no #endregion`);
    return [start + 2, end];
  }
  if (anchor.find !== undefined) {
    const at = lines.findIndex((l) => l.includes(anchor.find!));
    if (at < 0) throw new Error(`source link: ${path} has no line containing ${JSON.stringify(anchor.find)}`);
    return [at + 1, at + 1];
  }
  return [1, lines.length];
}

/** The GitHub URL for a `src:` link target. */
export function sourceUrl(root: string, target: string): string {
  const m = /^src:([^#?]+)(?:\?find=([^#]+)|#(.+))?$/.exec(target);
  if (!m) throw new Error(`source link: cannot read ${target}`);
  const [, path, find, region] = m;
  if (find === undefined && region === undefined) return REPO_BLOB + path;
  const [a, b] = sourceLines(root, path, { region, find: find === undefined ? undefined : decodeURIComponent(find) });
  return `${REPO_BLOB}${path}#L${a}${b > a ? `-L${b}` : ''}`;
}

/** markdown-it plugin: rewrites `src:` links (see above). `root` is the repository root. */
export function sourceLinks(md: MarkdownRenderer, root: string): void {
  md.core.ruler.push('rama-source-links', (state) => {
    for (const block of state.tokens) {
      for (const t of block.children ?? []) {
        if (t.type !== 'link_open') continue;
        const href = t.attrGet('href');
        if (!href?.startsWith('src:')) continue;
        t.attrSet('href', sourceUrl(root, href));
        t.attrSet('target', '_blank');
        t.attrSet('rel', 'noreferrer');
      }
    }
  });
}
