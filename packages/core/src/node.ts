/**
 * @rama/core/node: Node-only helpers. `node:fs` is still imported on demand,
 * so a bundle that reaches this module (through @rama/checkpoint's
 * openCheckpoint, say) loads in a browser; only calling it there fails.
 */
import { checkChunkSize, DEFAULT_CHUNK, type ByteSource } from './bytes.js';
import { FormatError } from './errors.js';

interface FileHandleLike {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<StatsLike>;
  close(): Promise<void>;
}

interface StatsLike {
  size: number;
  isFile(): boolean;
  isDirectory(): boolean;
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
}

interface FsLike {
  stat(p: string): Promise<StatsLike>;
  open(p: string, flags: number): Promise<FileHandleLike>;
  constants: { O_RDONLY: number; O_NONBLOCK?: number };
}

export interface OpenFileOptions {
  /** Name for error messages (default: the path; when it differs, messages about the path give both). */
  name?: string;
  /** What the file should be, for messages: "checkpoint", "tokenizer". */
  what?: string;
  /** Largest single read, in bytes (default 1 GiB). */
  chunkSize?: number;
}

/** What a path that is not a regular file is, for messages. */
function kindOf(st: StatsLike): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'a special file';
}

const OPEN_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOTDIR: 'a component of the path is not a directory',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the path is too long',
};

/**
 * Opens a regular file for positioned reads (Node only). Anything else — a
 * directory, a FIFO, a device, a socket — is refused with a FormatError naming
 * the path and what it is: a FIFO would block open(2) forever and a device
 * such as /dev/zero never ends. The path is checked with stat before it is
 * opened (so a device is never opened at all), opened with O_NONBLOCK (so a
 * FIFO swapped in after the stat cannot block) and checked again on the open
 * descriptor, whose size is the one every read is bounded by.
 *
 * Used by @rama/checkpoint's openCheckpoint and @rama/tokenizer's fromFile.
 */
export async function openFileSource(path: string, opts: OpenFileOptions = {}): Promise<ByteSource> {
  const name = opts.name ?? path;
  const what = opts.what ?? 'file';
  const chunk = checkChunkSize(opts.chunkSize ?? DEFAULT_CHUNK);
  const label = name === path ? path : `${name} (${path})`;
  const fs = (await import('node:fs/promises')) as unknown as FsLike;
  const cannotOpen = (e: unknown): FormatError => {
    const code = (e as { code?: string }).code;
    const why = (code && OPEN_ERRORS[code]) ?? (e instanceof Error ? e.message : String(e));
    return new FormatError(`${label}: cannot open the ${what}: ${why}${code ? ` (${code})` : ''}`, { cause: e });
  };
  const requireRegular = (st: StatsLike): void => {
    if (!st.isFile()) throw new FormatError(`${label}: is ${kindOf(st)}, not a regular file; expected a ${what} file`);
  };

  try {
    requireRegular(await fs.stat(path));
  } catch (e) {
    throw e instanceof FormatError ? e : cannotOpen(e);
  }
  let handle: FileHandleLike;
  try {
    // O_NONBLOCK does not change reads of a regular file; Windows has no such flag (nor FIFOs that block open).
    handle = await fs.open(path, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw cannotOpen(e);
  }
  let size: number;
  try {
    const st = await handle.stat();
    requireRegular(st);
    size = st.size;
  } catch (e) {
    await handle.close().catch(() => {});
    throw e instanceof FormatError ? e : cannotOpen(e);
  }

  let closed = false;
  return {
    size,
    async readAt(dst, position) {
      if (closed) throw new Error(`${name}: ${what} is closed`);
      let done = 0;
      while (done < dst.byteLength) {
        const len = Math.min(chunk, dst.byteLength - done);
        const { bytesRead } = await handle.read(dst, done, len, position + done);
        if (bytesRead === 0) {
          throw new FormatError(
            `${name}: unexpected end of file at byte ${position + done} (the file shrank after it was opened?)`,
          );
        }
        done += bytesRead;
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await handle.close();
    },
  };
}
