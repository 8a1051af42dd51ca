/**
 * Random-access byte sources and the helpers every reader of a model file
 * shares. Browser-safe: the Node file opener is `openFileSource` in
 * `@rama/core/node`.
 */
import { ArgumentError } from './errors.js';

/** Bytes read at any position: a file, a Blob, a buffer. */
export interface ByteSource {
  /** Total bytes. */
  readonly size: number;
  /** Fills `dst` with the bytes at [position, position + dst.byteLength). */
  readAt(dst: Uint8Array, position: number): Promise<void>;
  /** Releases the underlying file handle; reads afterwards fail. Safe to call twice. */
  close(): Promise<void>;
}

/** Largest single read from a file (keeps every read call well below Node's 2 GiB limit). */
export const DEFAULT_CHUNK = 1 << 30;

/**
 * Checks a read loop's chunk size: a loop advances by at most `chunk` bytes a
 * turn, so zero, a fraction or NaN would never finish.
 */
export function checkChunkSize(chunk: number): number {
  if (!Number.isSafeInteger(chunk) || chunk < 1) {
    throw new ArgumentError(`chunkSize must be a positive integer number of bytes, got ${chunk}`);
  }
  return chunk;
}

/** 60816028 -> "60,816,028"; sizes beyond 2^53 are shown approximately. */
export function fmtBytes(n: number): string {
  if (!Number.isSafeInteger(n)) return `~${n.toExponential(3)}`;
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
