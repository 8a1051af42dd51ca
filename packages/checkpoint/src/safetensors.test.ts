/**
 * The safetensors reader on files built here: tensors read back byte for
 * byte from bytes, a Blob and a path; every malformed header is a
 * FormatError naming the file and what is wrong.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '@rama/core';
import { openSafetensors } from './index.js';

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'rama-safetensors-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file from a header object (written as is) and the data bytes. */
function file(header: unknown, data: Uint8Array, pad = true): Uint8Array<ArrayBuffer> {
  let json = typeof header === 'string' ? header : JSON.stringify(header);
  if (pad) json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  out.set(data, 8 + head.length);
  return out;
}

const DATA = Uint8Array.from({ length: 40 }, (_, i) => (i * 7 + 3) & 0xff);
const GOOD = {
  __metadata__: { format: 'pt' },
  b: { dtype: 'BF16', shape: [2, 3], data_offsets: [24, 36] },
  a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
  c: { dtype: 'U8', shape: [], data_offsets: [36, 37] },
};

describe('safetensors', () => {
  it('reads the header and each tensor\'s bytes, from bytes, a Blob or a path', async () => {
    const bytes = file(GOOD, DATA);
    const path = join(dir, 'good.safetensors');
    writeFileSync(path, bytes);
    for (const src of [bytes, new Blob([bytes]), path]) {
      const f = await openSafetensors(src);
      try {
        expect([...f.tensors.keys()]).toEqual(['a', 'b', 'c']);
        expect(f.metadata.get('format')).toBe('pt');
        const b = f.tensors.get('b')!;
        expect(b).toMatchObject({ dtype: 'BF16', shape: [2, 3], elements: 6, byteLength: 12 });
        const got = new Uint8Array(12);
        await f.readInto(b, got);
        expect(got).toEqual(DATA.subarray(24, 36));
        const part = new Uint8Array(4);
        await f.readInto(f.tensors.get('a')!, part, 8);
        expect(part).toEqual(DATA.subarray(8, 12));
        expect(f.tensors.get('c')!.elements).toBe(1);
      } finally {
        await f.close();
      }
    }
  });

  const bad: [string, Uint8Array, RegExp][] = [
    ['too short', new Uint8Array(5), /is 5 bytes, too short/],
    ['header past the end', (() => { const b = file(GOOD, DATA); new DataView(b.buffer).setBigUint64(0, 1n << 40n, true); return b; })(), /header is 1099511627776 bytes, more than/],
    ['not JSON', file('{"a": ', DATA), /header is not UTF-8 JSON/],
    ['not an object', file('[1, 2]', DATA), /header is not a JSON object/],
    ['unknown dtype', file({ a: { dtype: 'F12', shape: [1], data_offsets: [0, 4] } }, DATA), /tensor a has dtype "F12"/],
    ['bad shape', file({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, DATA), /tensor a has shape \[-1\]/],
    ['offsets reversed', file({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, DATA), /tensor a has data_offsets \[4,0\]/],
    ['size mismatch', file({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, DATA), /tensor a \(F32 \[2\]\) needs 8 bytes, its data_offsets span 4/],
    ['past the data', file({ a: { dtype: 'F32', shape: [11], data_offsets: [0, 44] } }, DATA), /tensor a ends at byte 44 of the data, past its end \(40 bytes\)/],
    ['overlap', file({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, DATA), /tensors a and b overlap/],
    ['metadata not strings', file({ __metadata__: { n: 1 } }, DATA), /__metadata__\.n is not a string/],
  ];
  for (const [what, bytes, message] of bad) {
    it(`a FormatError naming the file: ${what}`, async () => {
      const e = await openSafetensors(bytes, { name: 'm.safetensors' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(FormatError);
      expect((e as Error).message).toMatch(/^m\.safetensors: /);
      expect((e as Error).message).toMatch(message);
    });
  }
});
