import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { releaseFifo, settleWithin, specialPaths, type SpecialPaths } from '@rama/testkit';
import { ArgumentError, FormatError, checkChunkSize, fmtBytes } from './index.js';
import { openFileSource } from './node.js';

/** Opens `path` and returns the FormatError it must end in, within 2 s (a reader blocked on a FIFO never settles). */
async function refusal(path: string, opts?: { name?: string; what?: string }): Promise<FormatError> {
  const outcome = await settleWithin(openFileSource(path, opts), 2000);
  releaseFifo(path);
  if (outcome.status === 'fulfilled') await outcome.value.close();
  expect(outcome.status, `openFileSource(${path}) must fail promptly`).toBe('rejected');
  const err = (outcome as { reason: unknown }).reason;
  expect(err).toBeInstanceOf(FormatError);
  return err as FormatError;
}

describe('openFileSource', () => {
  let sp: SpecialPaths;
  let dir: string;
  let file: string;
  const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7) & 0xff);
  beforeAll(() => {
    sp = specialPaths('rama-core-special-');
    dir = mkdtempSync(join(tmpdir(), 'rama-core-file-'));
    file = join(dir, 'data.bin');
    writeFileSync(file, bytes);
  });
  afterAll(() => {
    sp.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads a regular file at any position, in chunks', async () => {
    const src = await openFileSource(file, { chunkSize: 7 });
    expect(src.size).toBe(1000);
    const dst = new Uint8Array(300);
    await src.readAt(dst, 123);
    expect(dst).toEqual(bytes.subarray(123, 423));
    await src.close();
    await src.close();
    await expect(src.readAt(dst, 0)).rejects.toThrow(/closed/);
  });

  it('a read past the end (the file shrank) is a FormatError', async () => {
    const src = await openFileSource(file);
    await expect(src.readAt(new Uint8Array(10), 995)).rejects.toThrow(FormatError);
    await src.close();
  });

  it('refuses a chunk size that would never finish', async () => {
    for (const c of [0, -1, 0.5, Number.NaN]) {
      await expect(openFileSource(file, { chunkSize: c })).rejects.toThrow(ArgumentError);
      expect(() => checkChunkSize(c)).toThrow(/chunkSize must be a positive integer/);
    }
  });

  it('a FIFO is refused without blocking, naming the path and what was expected', async () => {
    const e = await refusal(sp.fifo, { what: 'tokenizer' });
    expect(e.message).toBe(`${sp.fifo}: is a FIFO (named pipe), not a regular file; expected a tokenizer file`);
  });

  it('a character device, a directory, a missing file are refused', async () => {
    expect((await refusal(sp.charDevice)).message).toMatch(/is a character device/);
    expect((await refusal(sp.directory)).message).toMatch(/is a directory/);
    const missing = await refusal(sp.missing, { what: 'checkpoint' });
    expect(missing.message).toContain(sp.missing);
    expect(missing.message).toMatch(/cannot open the checkpoint: no such file \(ENOENT\)/);
  });

  it('names the path as well as a caller-given name', async () => {
    const e = await refusal(sp.directory, { name: 'my-model' });
    expect(e.message).toMatch(/^my-model/);
    expect(e.message).toContain(sp.directory);
  });

  it('follows symlinks', async () => {
    const link = join(dir, 'link.bin');
    symlinkSync(file, link);
    const src = await openFileSource(link);
    expect(src.size).toBe(1000);
    await src.close();
    const fifoLink = join(dir, 'fifo-link.bin');
    symlinkSync(sp.fifo, fifoLink);
    expect((await refusal(fifoLink)).message).toMatch(/is a FIFO/);
  });
});

describe('fmtBytes', () => {
  it('groups digits; beyond 2^53 approximate', () => {
    expect(fmtBytes(60816028)).toBe('60,816,028');
    expect(fmtBytes(12)).toBe('12');
    expect(fmtBytes(2 ** 60)).toMatch(/^~1\.153e\+18$/);
  });
});
