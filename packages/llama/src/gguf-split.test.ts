/**
 * Multi-file GGUF models (llama.cpp's gguf-split format), made here from
 * ../shared/gguf fixtures by our own splitter (test-gguf.ts): loaded from an
 * array of paths, Blobs or bytes, or from the first split's path, they give
 * exactly the unsplit file's logits; broken sets of splits are FormatErrors
 * naming the file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingMessage, sharedFile } from '@rama/testkit';
import { FormatError } from '@rama/core';
import { GGUFValueType } from '@rama/checkpoint';
import { Llama } from './index.js';
import { encodeGGUF, readGGUFContents, splitGGUF, withMetadata, type GGUFContents } from './test-gguf.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'rama-gguf-split-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Logits of the first prompt position and of 5 greedy steps after it. */
async function logitsOf(model: Parameters<typeof Llama.load>[0]['model']): Promise<Float32Array[]> {
  const llama = await Llama.load({ model });
  try {
    const out: Float32Array[] = [];
    for await (const t of llama.generate('Once upon a time', { temperature: 0, maxTokens: 6, logits: true })) if (t.logits) out.push(t.logits);
    return out;
  } finally {
    llama.dispose();
  }
}

/** Writes splits as prefix-0000k-of-0000n.gguf; returns their paths. */
function writeSplits(prefix: string, parts: GGUFContents[]): string[] {
  return parts.map((p, i) => {
    const path = join(dir, `${prefix}-${String(i + 1).padStart(5, '0')}-of-${String(parts.length).padStart(5, '0')}.gguf`);
    writeFileSync(path, encodeGGUF(p));
    return path;
  });
}

const loadError = async (model: Parameters<typeof Llama.load>[0]['model']): Promise<Error> => {
  const e = await Llama.load({ model }).then((l) => (l.dispose(), undefined), (x: unknown) => x);
  if (!(e instanceof Error)) throw new Error('expected the load to fail');
  return e;
};

describe('multi-file GGUF (gguf-split)', () => {
  for (const fixture of ['stories260K-f32', 'stories260K-q8_0']) {
    it(`${fixture} split in 3 gives the unsplit file's logits exactly, however the splits are given`, async (ctx) => {
      const path = sharedFile(`gguf/${fixture}.gguf`);
      if (!path) return ctx.skip(missingMessage(`gguf/${fixture}.gguf`));
      const whole = await readGGUFContents(path);
      const n = whole.tensors.length;
      const parts = splitGGUF(whole, [1, Math.floor(n / 2), n - 1 - Math.floor(n / 2)]);
      const paths = writeSplits(fixture, parts);
      const want = await logitsOf(path);
      expect(want.length).toBe(6);
      const bytes = parts.map((p) => encodeGGUF(p));
      for (const [how, model] of [
        ['paths', paths],
        ['paths out of order', [paths[2], paths[0], paths[1]]],
        ['the first split\'s path', paths[0]],
        ['the last split\'s path', paths[2]],
        ['bytes', bytes],
        ['Blobs', bytes.map((b) => new Blob([b]))],
      ] as const) {
        const got = await logitsOf(model as never);
        expect(got.length, how).toBe(want.length);
        got.forEach((l, i) => expect(l, `${how}, position ${i}`).toEqual(want[i]));
      }
    });
  }

  it('broken sets of splits are FormatErrors naming a file', async (ctx) => {
    const path = sharedFile('gguf/stories260K-f32.gguf');
    if (!path) return ctx.skip(missingMessage('gguf/stories260K-f32.gguf'));
    const whole = await readGGUFContents(path);
    const n = whole.tensors.length;
    const parts = splitGGUF(whole, [10, 10, n - 20]);
    const [a, b, c] = writeSplits('broken', parts);
    const u16 = (value: number) => ({ type: GGUFValueType.UINT16, value });
    const i32 = (value: number) => ({ type: GGUFValueType.INT32, value });
    const variant = (name: string, x: GGUFContents) => {
      const p = join(dir, name);
      writeFileSync(p, encodeGGUF(x));
      return p;
    };

    let e = await loadError([a, c]);
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toMatch(/3 splits, 2 given \(missing split 2\)/);

    e = await loadError([a, b, b]);
    expect(e.message).toContain(`${b} and ${b} are both split 2 of 3`);

    // The first split's siblings are looked for by name.
    rmSync(c);
    e = await loadError(a);
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toContain(c);
    expect(e.message).toContain('no such file');
    writeFileSync(c, encodeGGUF(parts[2]));

    const otherCount = variant('count.gguf', withMetadata(parts[1], { 'split.count': u16(4) }));
    e = await loadError([a, otherCount, c]);
    expect(e.message).toContain(`${otherCount}: split.count is 4, but ${a} says 3`);

    const outOfRange = variant('no.gguf', withMetadata(parts[1], { 'split.no': u16(7) }));
    e = await loadError([a, outOfRange, c]);
    expect(e.message).toContain(`${outOfRange}: split.no is 7, outside 0..2`);

    // A tensor in two splits.
    const dup = variant('dup.gguf', { metadata: parts[1].metadata, tensors: [...parts[1].tensors, parts[2].tensors[0]] });
    e = await loadError([a, dup, c]);
    expect(e.message).toContain(`tensor ${parts[2].tensors[0].name} is also in`);

    // A tensor in no split.
    const short = variant('short.gguf', { metadata: parts[2].metadata, tensors: parts[2].tensors.slice(1) });
    e = await loadError([a, b, short]);
    expect(e.message).toContain(`hold ${n - 1} tensors, but split.tensors.count is ${n}`);

    const wrongTotal = variant('total.gguf', withMetadata(parts[1], { 'split.tensors.count': i32(n + 1) }));
    e = await loadError([a, wrongTotal, c]);
    expect(e.message).toContain(`${wrongTotal}: split.tensors.count is ${n + 1}, but ${a} says ${n}`);

    // The unsplit file among splits, and one split alone.
    e = await loadError([path, b, c]);
    expect(e.message).toContain(`${path}: has no split.no/split.count`);
    const alone = variant('alone.gguf', parts[0]);
    e = await loadError(alone);
    expect(e.message).toMatch(/3 splits, 1 given \(missing splits 2, 3\)/);
  });
});
