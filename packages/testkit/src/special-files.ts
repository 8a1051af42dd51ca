/**
 * Paths that are not regular files, for the tests of file readers: a reader
 * must refuse them with a clear error instead of blocking on a FIFO, reading
 * a character device forever, or failing with a bare EISDIR.
 */
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SpecialPaths {
  /** A named pipe nobody writes to (opening it for reading blocks without O_NONBLOCK). */
  fifo: string;
  directory: string;
  /** /dev/zero: a character device that never reaches end of file. */
  charDevice: string;
  /** A path inside an existing folder that does not exist. */
  missing: string;
  /** Removes the temporary folder. */
  cleanup(): void;
}

/** Makes a FIFO (with the `mkfifo` command), a directory and a missing path in a new temporary folder. */
export function specialPaths(prefix = 'rama-special-'): SpecialPaths {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const fifo = join(dir, 'model.fifo');
  execFileSync('mkfifo', [fifo]);
  const directory = join(dir, 'model.dir');
  mkdirSync(directory);
  return {
    fifo,
    directory,
    charDevice: '/dev/zero',
    missing: join(dir, 'missing.bin'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Opens a FIFO for writing and closes it at once: a reader blocked in open(2)
 * on it wakes up and then sees end of file. Lets a test that timed out on a
 * FIFO leave no thread stuck behind it. Does nothing when no reader waits.
 */
export function releaseFifo(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch {
    return; // ENXIO: no reader has it open
  }
  closeSync(fd);
}

export type Outcome<T> =
  | { status: 'fulfilled'; value: T }
  | { status: 'rejected'; reason: unknown }
  | { status: 'timeout'; ms: number };

/**
 * How `p` settles, or `timeout` after `ms`: a reader that blocks must fail its
 * test, not hang the run. A late rejection of `p` is swallowed (it has been
 * reported as a timeout already).
 */
export async function settleWithin<T>(p: Promise<T>, ms: number): Promise<Outcome<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<Outcome<T>>((resolve) => {
    timer = setTimeout(() => resolve({ status: 'timeout', ms }), ms);
  });
  const settled = p.then(
    (value): Outcome<T> => ({ status: 'fulfilled', value }),
    (reason: unknown): Outcome<T> => ({ status: 'rejected', reason }),
  );
  try {
    return await Promise.race([settled, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

