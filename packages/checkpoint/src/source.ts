/**
 * Random-access byte sources: a Node file path (@rama/core/node's
 * openFileSource: a regular file only, `node:fs` loaded on demand so the
 * package stays importable in a browser), a Blob, or an in-memory buffer.
 */
import { checkChunkSize, FormatError, type ByteSource } from '@rama/core';

export { DEFAULT_CHUNK, type ByteSource } from '@rama/core';
export { openFileSource, type OpenFileOptions } from '@rama/core/node';

/** Largest single Blob slice read (each slice is materialized as an ArrayBuffer before copying). */
const BLOB_CHUNK = 1 << 28;

export function blobSource(blob: Blob, name: string, chunk = BLOB_CHUNK): ByteSource {
  checkChunkSize(chunk);
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
