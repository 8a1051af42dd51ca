/**
 * The race openFileSource guards against: a path that is a regular file when
 * stat looks at it and a FIFO by the time it is opened. stat is made to report
 * a regular file for every path, so only the O_NONBLOCK open and the fstat of
 * the open descriptor stand between the FIFO and a reader blocked forever.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FormatError } from './errors.js';
import { releaseFifo, settleWithin, specialPaths, type SpecialPaths } from '@rama/testkit';
import { openFileSource } from './node.js';

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const stat = async (p: string) => {
    const st = await real.stat(p);
    return Object.assign(Object.create(Object.getPrototypeOf(st)), st, {
      isFile: () => true,
      isFIFO: () => false,
      isCharacterDevice: () => false,
      isDirectory: () => false,
    });
  };
  return { ...real, default: { ...real, stat }, stat };
});

describe('openFileSource: a FIFO swapped in after stat', () => {
  let sp: SpecialPaths;
  beforeAll(() => (sp = specialPaths('rama-core-race-')));
  afterAll(() => sp.cleanup());

  it('is refused by the check on the open descriptor, without blocking', async () => {
    const outcome = await settleWithin(openFileSource(sp.fifo, { what: 'checkpoint' }), 2000);
    releaseFifo(sp.fifo);
    if (outcome.status === 'fulfilled') await outcome.value.close();
    expect(outcome.status).toBe('rejected');
    const e = (outcome as { reason: unknown }).reason;
    expect(e).toBeInstanceOf(FormatError);
    expect((e as Error).message).toBe(`${sp.fifo}: is a FIFO (named pipe), not a regular file; expected a checkpoint file`);
  });
});
