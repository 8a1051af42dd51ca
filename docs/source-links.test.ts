/** The build-time source links (.vitepress/source-links.ts): right lines, and a build failure when a target is gone. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { sourceLines, sourceUrl } from './.vitepress/source-links';

const root = fileURLToPath(new URL('..', import.meta.url));
const lines = (path: string) => readFileSync(`${root}/${path}`, 'utf8').split('\n');

describe('source links', () => {
  it('a region link covers exactly the lines between its markers', () => {
    const [a, b] = sourceLines(root, 'packages/llama/src/forward.ts', { region: 'attention' });
    const file = lines('packages/llama/src/forward.ts');
    expect(file[a - 2]).toMatch(/\/\/ #region attention$/);
    expect(file[b]).toMatch(/\/\/ #endregion attention$/);
    expect(file.slice(a - 1, b).join('\n')).toContain('step.attention(');
    expect(sourceUrl(root, 'src:packages/llama/src/forward.ts#attention'))
      .toBe(`https://github.com/rama-llama/rama/blob/main/packages/llama/src/forward.ts#L${a}-L${b}`);
  });

  it('a find link points at the first line containing the text', () => {
    const url = sourceUrl(root, 'src:packages/llama/src/forward.ts?find=export%20function%20forward');
    const n = lines('packages/llama/src/forward.ts').findIndex((l) => l.includes('export function forward')) + 1;
    expect(n).toBeGreaterThan(0);
    expect(url).toBe(`https://github.com/rama-llama/rama/blob/main/packages/llama/src/forward.ts#L${n}`);
  });

  it('a missing file, region or text fails with a message naming it', () => {
    expect(() => sourceUrl(root, 'src:packages/nope.ts#x')).toThrow(/packages\/nope\.ts does not exist/);
    expect(() => sourceUrl(root, 'src:packages/llama/src/forward.ts#no-such-region')).toThrow(/no "\/\/ #region no-such-region"/);
    expect(() => sourceUrl(root, 'src:packages/llama/src/forward.ts?find=no%20such%20text')).toThrow(/no line containing "no such text"/);
  });
});
