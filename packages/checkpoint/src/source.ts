/**
 * Random-access byte sources: a Node file path (positioned reads, loaded with a
 * dynamic import so the package stays importable in a browser), a Blob, or an
 * in-memory buffer.
 */
import { FormatError } from '@rama/backend';

export interface ByteSource {
  readonly size: number;
  /** Fills `dst` with the bytes at [position, position + dst.byteLength). */
  readAt(dst: Uint8Array, position: number): Promise<void>;
  close(): Promise<void>;
}

/** Largest single read from a file (keeps every read call well below Node's 2 GiB limit). */
export const DEFAULT_CHUNK = 1 << 30;
/** Largest single Blob slice read (each slice is materialized as an ArrayBuffer before copying). */
const BLOB_CHUNK = 1 << 28;

interface FileHandleLike {
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  stat(): Promise<{ size: number }>;
  close(): Promise<void>;
}

export async function fileSource(path: string, name: string, chunk = DEFAULT_CHUNK): Promise<ByteSource> {
  const fs = (await import('node:fs/promises')) as unknown as { open(p: string, flags: string): Promise<FileHandleLike> };
  let fh: FileHandleLike | undefined;
  try {
    fh = await fs.open(path, 'r');
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new FormatError(`${name}: cannot open the checkpoint (${code ?? String(e)})`, { cause: e });
  }
  let size: number;
  try {
    size = (await fh.stat()).size;
  } catch (e) {
    await fh.close().catch(() => {});
    throw e;
  }
  let closed = false;
  const handle = fh;
  return {
    size,
    async readAt(dst, position) {
      if (closed) throw new Error(`${name}: checkpoint is closed`);
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

export function blobSource(blob: Blob, name: string, chunk = BLOB_CHUNK): ByteSource {
  let closed = false;
  return {
    size: blob.size,
    async readAt(dst, position) {
      if (closed) throw new Error(`${name}: checkpoint is closed`);
      let done = 0;
      while (done < dst.byteLength) {
        const len = Math.min(chunk, dst.byteLength - done);
        const a = position + done;
        const buf = new Uint8Array(await blob.slice(a, a + len).arrayBuffer());
        if (buf.byteLength !== len) {
          throw new FormatError(`${name}: read ${buf.byteLength} bytes at ${a}, expected ${len}`);
        }
        dst.set(buf, done);
        done += len;
      }
    },
    async close() {
      closed = true;
    },
  };
}

export function bufferSource(bytes: Uint8Array, name: string): ByteSource {
  let data: Uint8Array | undefined = bytes;
  return {
    size: bytes.byteLength,
    async readAt(dst, position) {
      if (!data) throw new Error(`${name}: checkpoint is closed`);
      dst.set(data.subarray(position, position + dst.byteLength));
    },
    async close() {
      data = undefined;
    },
  };
}
