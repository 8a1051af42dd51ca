import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '@rama/core';
import { missingMessage, releaseFifo, settleWithin, specialPaths, synthModel, type SpecialPaths } from '@rama/testkit';
import { itRefusesSpecialPaths } from '@rama/testkit/vitest';
import { openCheckpoint } from './index.js';

/** Long enough for any real open; a reader blocked on a FIFO never gets there. */
const DEADLINE_MS = 2000;

/** Opens `path` as a checkpoint and returns the FormatError it must end in, within the deadline. */
async function refusal(path: string, opts?: { name?: string }): Promise<FormatError> {
  const outcome = await settleWithin(openCheckpoint(path, opts), DEADLINE_MS);
  releaseFifo(path); // wakes a reader stuck in open(2), if the code under test blocked
  if (outcome.status === 'fulfilled') await outcome.value.close();
  expect(outcome.status, `openCheckpoint(${path}) must fail promptly`).toBe('rejected');
  const err = (outcome as { reason: unknown }).reason;
  expect(err).toBeInstanceOf(FormatError);
  return err as FormatError;
}

describe('openCheckpoint accepts regular files only', () => {
  let sp: SpecialPaths;
  beforeAll(() => (sp = specialPaths('rama-ckpt-special-')));
  afterAll(() => sp.cleanup());

  itRefusesSpecialPaths(refusal, () => sp);

  it('names the path as well as a caller-given name', async () => {
    const e = await refusal(sp.directory, { name: 'my-model' });
    expect(e.message).toMatch(/^my-model/);
    expect(e.message).toContain(sp.directory);
  });

  it('follows symlinks: to a regular file it opens, to a FIFO it is refused', async (ctx) => {
    const fifoLink = join(sp.directory, 'fifo-link.bin');
    symlinkSync(sp.fifo, fifoLink);
    expect((await refusal(fifoLink)).message).toMatch(/is a FIFO/);
    const model = synthModel('ckpt-tiny-v1.bin', '--dim 16 --hidden 32 --layers 1 --heads 4 --vocab 8 --seq 4 --format v1');
    if (!model) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const link = join(sp.directory, 'model-link.bin');
    symlinkSync(model, link);
    const ck = await openCheckpoint(link);
    expect(ck.config.dim).toBe(16);
    await ck.close();
  });
});
