import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '@rama/core';
import { missingMessage, releaseFifo, settleWithin, sharedFile, specialPaths, type SpecialPaths } from '@rama/testkit';
import { itRefusesSpecialPaths } from '@rama/testkit/vitest';
import { MAX_TOKENIZER_BYTES, Tokenizer } from './index.js';

/** Long enough for any real load; a reader blocked on a FIFO or reading /dev/zero never gets there. */
const DEADLINE_MS = 2000;

async function refusal(path: string): Promise<FormatError> {
  const outcome = await settleWithin(Tokenizer.fromFile(path), DEADLINE_MS);
  releaseFifo(path); // wakes a reader stuck in open(2), if the code under test blocked
  expect(outcome.status, `Tokenizer.fromFile(${path}) must fail promptly`).toBe('rejected');
  const err = (outcome as { reason: unknown }).reason;
  expect(err).toBeInstanceOf(FormatError);
  return err as FormatError;
}

describe('Tokenizer.fromFile accepts regular files only', () => {
  let sp: SpecialPaths;
  beforeAll(() => (sp = specialPaths('rama-tok-special-')));
  afterAll(() => sp.cleanup());

  itRefusesSpecialPaths(refusal, () => sp);

  it('a file far larger than any tokenizer (a model passed by mistake?) is refused before it is read', async () => {
    const big = join(sp.directory, 'sparse.bin');
    writeFileSync(big, '');
    truncateSync(big, MAX_TOKENIZER_BYTES + 1); // sparse: takes no disk space
    const e = await refusal(big);
    expect(e.message).toContain(big);
    expect(e.message).toMatch(/is 268,435,457 bytes, more than any tokenizer/);
  });

  it('follows symlinks: to a regular file it loads, to a FIFO it is refused', async (ctx) => {
    const fifoLink = join(sp.directory, 'fifo-link.bin');
    symlinkSync(sp.fifo, fifoLink);
    expect((await refusal(fifoLink)).message).toMatch(/is a FIFO/);
    const tok = sharedFile('models/tok512-aidreams.bin');
    if (!tok) return ctx.skip(missingMessage('models/tok512-aidreams.bin'));
    const link = join(sp.directory, 'tok-link.bin');
    symlinkSync(tok, link);
    expect((await Tokenizer.fromFile(link)).vocabSize).toBe(512);
  });
});
