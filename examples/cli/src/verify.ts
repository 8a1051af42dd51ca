/**
 * Is a downloaded (or cached) file what it should be? Known files are checked
 * against their published size and SHA-256; any model or tokenizer must at
 * least not be an HTML page and must start like a llama2.c file, so that a
 * login page or an error page is never taken for a model.
 */
import { fileProblem } from '@rama/hub/node';

/** What a file is for: decides which header it must start with. */
export type FileKind = 'model' | 'tokenizer';

/** A file whose exact contents are known: the cache file's name, its size and its SHA-256 (hex). */
export interface KnownFile {
  name: string;
  size: number;
  sha256: string;
}

/** The files rama downloads by default. */
export const KNOWN_FILES: readonly KnownFile[] = [
  // karpathy/tinyllamas stories15M.bin: a 28-byte v0 header (dim 288, hidden 768, 6 layers,
  // 6 heads, vocab 32000, seq 256) and 15,204,000 float32 weights.
  { name: 'stories15M.bin', size: 60_816_028, sha256: 'cd590644d963867a2b6e5a1107f51fad663c41d79c149fbecbbb1f95fa81f49a' },
  // karpathy/llama2.c tokenizer.bin: the Llama 2 vocabulary (32000 tokens).
  { name: 'tokenizer.bin', size: 433_869, sha256: '50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361' },
];

export function knownFile(name: string, table: readonly KnownFile[] = KNOWN_FILES): KnownFile | undefined {
  return table.find((k) => k.name === name);
}

/**
 * What is wrong with the file at `path`, in words ("it is 1234 bytes, not
 * 60816028"), or undefined when it passes every check that applies: size,
 * not an HTML page, the header its kind must start with, SHA-256.
 */
export async function findProblem(path: string, expect: { known?: KnownFile; kind?: FileKind }): Promise<string | undefined> {
  const { known, kind } = expect;
  return (await fileProblem(path, { size: known?.size, sha256: known?.sha256, check: headCheck(kind) }))?.problem;
}

/** The check of a file's first bytes for its kind (a model or a tokenizer), for @rama/hub's downloads. */
export function headCheck(kind: FileKind | undefined): ((head: Uint8Array) => string | undefined) | undefined {
  if (kind === 'model') return (head) => (looksLikeCheckpoint(head) ? undefined : 'it does not start with a llama2.c checkpoint header');
  if (kind === 'tokenizer') return (head) => (looksLikeTokenizer(head) ? undefined : 'it does not start with a llama2.c tokenizer header');
  return undefined;
}

/** 'ak42' read as a little-endian uint32: the magic of llama2.c's v1 (fp32) and v2 (Q8_0) files. */
const CHECKPOINT_MAGIC = 0x616b3432;

/**
 * A llama2.c checkpoint starts with the magic and version 1 or 2, or (v0)
 * with seven int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (negative: unshared classifier) and seq_len.
 */
export function looksLikeCheckpoint(head: Uint8Array): boolean {
  if (head.length < 28) return false;
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const i = (k: number) => dv.getInt32(4 * k, true);
  if (dv.getUint32(0, true) === CHECKPOINT_MAGIC) return i(1) === 1 || i(1) === 2;
  const [dim, hidden, layers, heads, kvHeads, vocab, seq] = [0, 1, 2, 3, 4, 5, 6].map(i);
  const positive = [dim, hidden, layers, heads, kvHeads, seq].every((v) => v > 0 && v <= 1 << 24);
  return positive && vocab !== 0 && heads <= dim && kvHeads <= heads;
}

/**
 * tokenizer.bin: int32 max_token_length, then each token as float32 score,
 * int32 length and its bytes. The tokens that fit in `head` must be sane.
 */
export function looksLikeTokenizer(head: Uint8Array): boolean {
  if (head.length < 12) return false;
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const maxLen = dv.getInt32(0, true);
  if (!(maxLen > 0 && maxLen <= 1 << 16)) return false;
  for (let at = 4; at + 8 <= head.length; ) {
    const len = dv.getInt32(at + 4, true);
    if (!Number.isFinite(dv.getFloat32(at, true)) || len < 0 || len > maxLen) return false;
    at += 8 + len;
  }
  return true;
}
