/**
 * Test helpers that register vitest tests: a separate entry, so that the main
 * one (used by `pnpm bench` outside vitest) never imports vitest.
 */
import { expect, it } from 'vitest';
import type { SpecialPaths } from './special-files.js';

/**
 * The cases every reader of files shares, registered in the caller's
 * `describe`: `refusal(path)` must end in the reader's error, promptly.
 */
export function itRefusesSpecialPaths(refusal: (path: string) => Promise<Error>, paths: () => SpecialPaths): void {
  it('a FIFO is refused without blocking', async () => {
    const sp = paths();
    const e = await refusal(sp.fifo);
    expect(e.message).toContain(sp.fifo);
    expect(e.message).toMatch(/is a FIFO/);
    expect(e.message).toMatch(/not a regular file/);
  });

  it('a character device (/dev/zero) is refused instead of read without end', async () => {
    const e = await refusal(paths().charDevice);
    expect(e.message).toContain('/dev/zero');
    expect(e.message).toMatch(/is a character device/);
  });

  it('a directory is refused with a FormatError, not a bare EISDIR', async () => {
    const sp = paths();
    const e = await refusal(sp.directory);
    expect(e.message).toContain(sp.directory);
    expect(e.message).toMatch(/is a directory/);
  });

  it('a missing file names the path', async () => {
    const sp = paths();
    const e = await refusal(sp.missing);
    expect(e.message).toContain(sp.missing);
    expect(e.message).toMatch(/no such file/);
  });
}
