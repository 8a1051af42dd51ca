/**
 * Pure header parsing and layout computation for llama2.c checkpoints.
 * Nothing here touches a file or allocates more than a few small objects per
 * tensor, and every size is checked against the real file size before the
 * tensor table is built.
 */
import type { TensorDesc } from '@rama/backend';
import { FormatError, fmtBytes } from '@rama/core';

export { fmtBytes };

/** A model's dimensions, from a llama2.c header (plus the constants run.c hard-codes). */
export interface ModelConfig {
  /** Width of the residual stream. */
  readonly dim: number;
  /** Width of the feed-forward layer. */
  readonly hiddenDim: number;
  /** Transformer layers. */
  readonly nLayers: number;
  /** Query heads. */
  readonly nHeads: number;
  /** Key/value heads (fewer than nHeads with grouped-query attention). */
  readonly nKvHeads: number;
  /** Always positive (the v0 sign convention is folded into `sharedClassifier`). */
  readonly vocabSize: number;
  /** Longest context the model was trained for. */
  readonly seqLen: number;
  /** dim / nHeads */
  readonly headSize: number;
  /** nKvHeads * headSize */
  readonly kvDim: number;
  /** true: the classifier reuses tok_embeddings (no "wcls" tensor). */
  readonly sharedClassifier: boolean;
  /** RMSNorm epsilon (llama2.c: 1e-5; not stored in the file). */
  readonly normEps: number;
  /** RoPE base (llama2.c: 10000; not stored in the file). */
  readonly ropeTheta: number;
}

/** llama2.c's versions: v0 (legacy, 28-byte header, f32), v1 (256-byte header, f32), v2 (Q8_0). */
export type CheckpointFormat = 'v0' | 'v1' | 'v2';

/**
 * A tensor's description plus where its bytes (standard layout) lie in the file.
 *
 * A v2 (q8_0) entry's `groupSize` is the file's: groups of that many
 * consecutive elements of the flat tensor, as llama2.c's export.py writes
 * them. They need not lie inside rows: when the last dimension is not a
 * multiple of `groupSize` (w2, [dim, hidden_dim], when hidden_dim is not),
 * rows straddle groups, and a backend's Q8_0 matmul, which assumes groups
 * within rows, needs the tensor regrouped first (@rama/quant-q80's
 * `rowAlignedGroupSize` and `regroupQ80`; @rama/llama does this at load).
 */
export interface TensorEntry extends TensorDesc {
  /** Offset of the tensor's first byte in the file. */
  readonly byteOffset: number;
  /** Bytes in the standard layout (f32: 4 per element; q8_0: int8 values then f32 scales). */
  readonly byteLength: number;
}

/** What `parseHeader` finds: the format, the model shape and every tensor's place in the file. */
export interface CheckpointLayout {
  /** Which llama2.c version the header is. */
  readonly format: CheckpointFormat;
  /** The model's dimensions. */
  readonly config: ModelConfig;
  /** v2 (Q8_0) only: elements per quantization group. */
  readonly groupSize?: number;
  /** Bytes before the first tensor: 28 (v0) or 256 (v1, v2). */
  readonly headerSize: number;
  /** The exact file size the header implies (equals the real size, or parseHeader throws). */
  readonly byteLength: number;
  /** Tensors in file order (see README for names). */
  readonly tensors: Map<string, TensorEntry>;
}

/** 'ak42' read as a little-endian uint32. */
export const MAGIC = 0x616b3432;
/** Size of the v1/v2 header; reading this many leading bytes (or the whole file, if shorter) is always enough for parseHeader. */
export const HEADER_BYTES = 256;
/** Size of the legacy v0 header: seven int32. */
export const V0_HEADER_BYTES = 28;
/** Largest first int32 accepted as a legacy v0 `dim`. */
export const MAX_V0_DIM = 1 << 20;
/**
 * Most layers accepted (the largest Llama has 126). The tensor table costs
 * ~2.4 KB of heap per layer while a layer of tiny matrices takes ~100 bytes
 * of file, so without a cap a crafted file whose size matches a header of
 * millions of layers would take many times its size in memory (9 Map entries
 * per layer; past 2^24 entries a RangeError).
 */
export const MAX_LAYERS = 4096;

const NORM_EPS = 1e-5;
const ROPE_THETA = 10000;

interface Raw {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seq: number;
}

function readRaw(dv: DataView, at: number): Raw {
  const i = (k: number) => dv.getInt32(at + 4 * k, true);
  return { dim: i(0), hidden: i(1), layers: i(2), heads: i(3), kvHeads: i(4), vocab: i(5), seq: i(6) };
}

function describe(r: Raw): string {
  return `dim ${r.dim}, hidden_dim ${r.hidden}, n_layers ${r.layers}, n_heads ${r.heads}, n_kv_heads ${r.kvHeads}, vocab_size ${r.vocab}, seq_len ${r.seq}`;
}

/** Checks the shape fields; throws a FormatError naming the field and value. */
function validateShape(src: string, r: Raw, what: string, groupSize?: number): void {
  const fields: [string, number][] = [
    ['dim', r.dim],
    ['hidden_dim', r.hidden],
    ['n_layers', r.layers],
    ['n_heads', r.heads],
    ['n_kv_heads', r.kvHeads],
    ['vocab_size', Math.abs(r.vocab)],
    ['seq_len', r.seq],
  ];
  for (const [name, v] of fields) {
    if (!(v > 0)) {
      throw new FormatError(`${src}: ${what} header has ${name} ${name === 'vocab_size' ? r.vocab : v}; expected a positive integer (${describe(r)})`);
    }
  }
  if (r.layers > MAX_LAYERS) {
    throw new FormatError(`${src}: ${what} header has n_layers ${fmtBytes(r.layers)}; at most ${fmtBytes(MAX_LAYERS)} are supported (${describe(r)})`);
  }
  if (r.dim % r.heads !== 0) {
    throw new FormatError(`${src}: dim ${r.dim} is not divisible by n_heads ${r.heads}`);
  }
  if (r.heads % r.kvHeads !== 0) {
    throw new FormatError(`${src}: n_heads ${r.heads} is not a multiple of n_kv_heads ${r.kvHeads}`);
  }
  const hs = r.dim / r.heads;
  if (hs % 2 !== 0) {
    throw new FormatError(`${src}: head size ${hs} (dim ${r.dim} / n_heads ${r.heads}) must be even for RoPE`);
  }
  if (groupSize !== undefined) {
    if (!(groupSize > 0)) throw new FormatError(`${src}: v2 header has group_size ${groupSize}; expected a positive integer`);
    // Every matrix has dim rows or dim columns, so this makes each one a whole
    // number of groups. hidden_dim need not be a multiple: groups run over the
    // flat tensor, and w2's rows then straddle groups (see TensorEntry).
    if (r.dim % groupSize !== 0) throw new FormatError(`${src}: group_size ${groupSize} does not divide dim ${r.dim}`);
  }
}

function makeConfig(r: Raw, shared: boolean): ModelConfig {
  const headSize = r.dim / r.heads;
  return {
    dim: r.dim,
    hiddenDim: r.hidden,
    nLayers: r.layers,
    nHeads: r.heads,
    nKvHeads: r.kvHeads,
    vocabSize: Math.abs(r.vocab),
    seqLen: r.seq,
    headSize,
    kvDim: r.kvHeads * headSize,
    sharedClassifier: shared,
    normEps: NORM_EPS,
    ropeTheta: ROPE_THETA,
  };
}

// ---- sizes (Number arithmetic; anything past 2^53 can never match a real file) ----

function matBytes(rows: number, cols: number, gs: number | undefined): number {
  const n = rows * cols;
  return gs === undefined ? 4 * n : n + 4 * (n / gs);
}

function impliedSize(format: CheckpointFormat, c: Raw, shared: boolean, gs: number | undefined): number {
  const { dim, hidden, layers: L, vocab, seq } = c;
  const V = Math.abs(vocab);
  const hs = dim / c.heads;
  const kvDim = c.kvHeads * hs;
  const norms = 4 * (2 * L * dim + dim);
  const mats =
    matBytes(V, dim, gs) +
    L * (2 * matBytes(dim, dim, gs) + 2 * matBytes(kvDim, dim, gs) + 3 * matBytes(hidden, dim, gs)) +
    (shared ? 0 : matBytes(V, dim, gs));
  if (format === 'v0') {
    // w2 is [dim, hidden] and w1/w3 [hidden, dim]: same element count, so 3 * matBytes(hidden, dim) holds.
    return V0_HEADER_BYTES + norms + mats + 4 * seq * hs; // freq_cis_real + freq_cis_imag: 2 * seq * hs/2
  }
  return HEADER_BYTES + norms + mats;
}

// ---- tensor tables ----

function buildTensors(format: CheckpointFormat, cfg: ModelConfig, gs: number | undefined, headerSize: number): Map<string, TensorEntry> {
  const out = new Map<string, TensorEntry>();
  const L = cfg.nLayers;
  let off = headerSize;
  const f32 = (name: string, shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(name, { label: name, shape, dtype: 'f32', byteOffset: off, byteLength: 4 * n });
    off += 4 * n;
  };
  const mat = (name: string, rows: number, cols: number) => {
    if (gs === undefined) return f32(name, [rows, cols]);
    const len = matBytes(rows, cols, gs);
    out.set(name, { label: name, shape: [rows, cols], dtype: 'q8_0', groupSize: gs, byteOffset: off, byteLength: len });
    off += len;
  };
  const perLayer = (suffix: string, fn: (name: string) => void) => {
    for (let l = 0; l < L; l++) fn(`layers.${l}.${suffix}`);
  };
  const { dim, hiddenDim: hid, kvDim, vocabSize: V } = cfg;
  const normsFirst = () => {
    perLayer('rms_att', (n) => f32(n, [dim]));
    perLayer('rms_ffn', (n) => f32(n, [dim]));
    f32('rms_final', [dim]);
  };
  const matrices = () => {
    perLayer('wq', (n) => mat(n, dim, dim));
    perLayer('wk', (n) => mat(n, kvDim, dim));
    perLayer('wv', (n) => mat(n, kvDim, dim));
    perLayer('wo', (n) => mat(n, dim, dim));
  };
  const ffn = () => {
    perLayer('w1', (n) => mat(n, hid, dim));
    perLayer('w2', (n) => mat(n, dim, hid));
    perLayer('w3', (n) => mat(n, hid, dim));
  };
  if (format === 'v0') {
    mat('tok_embeddings', V, dim);
    perLayer('rms_att', (n) => f32(n, [dim]));
    matrices();
    perLayer('rms_ffn', (n) => f32(n, [dim]));
    ffn();
    f32('rms_final', [dim]);
    off += 4 * cfg.seqLen * cfg.headSize; // freq_cis_real, freq_cis_imag: unused (RoPE is computed)
  } else {
    normsFirst();
    mat('tok_embeddings', V, dim);
    matrices();
    ffn();
  }
  if (!cfg.sharedClassifier) mat('wcls', V, dim);
  return out;
}

function sizeError(src: string, r: Raw, expected: number, found: number, extra = ''): FormatError {
  const hint = found < expected ? ' (truncated, or a header that lies about its dimensions?)' : ' (trailing bytes, or a header that lies about its dimensions?)';
  return new FormatError(
    `${src}: header (${describe(r)}${extra}) implies ${fmtBytes(expected)} bytes but the file has ${fmtBytes(found)}${hint}`,
  );
}

/**
 * Parses and validates a checkpoint header against the file size, and lays out
 * every tensor. Pure: `headerBytes` are the file's first bytes (at least
 * min(256, fileSize) of them). Throws FormatError naming `source`.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, source: string): CheckpointLayout {
  const src = source;
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new FormatError(`${src}: invalid file size ${fileSize}`);
  }
  const avail = Math.min(headerBytes.byteLength, fileSize);
  if (fileSize < 4 || avail < 4) {
    throw new FormatError(`${src}: the file has ${fmtBytes(fileSize)} bytes, too small for a llama2.c checkpoint header (28 bytes for v0, 256 for v1/v2)`);
  }
  const dv = new DataView(headerBytes.buffer, headerBytes.byteOffset, avail);
  const first = dv.getUint32(0, true);

  if (first === MAGIC) {
    if (fileSize < HEADER_BYTES) {
      throw new FormatError(`${src}: has the 'ak42' magic but only ${fmtBytes(fileSize)} bytes; the v1/v2 header alone is ${HEADER_BYTES} bytes (truncated?)`);
    }
    if (avail < HEADER_BYTES) {
      throw new FormatError(`${src}: parseHeader needs the first ${HEADER_BYTES} bytes of the file, got ${avail}`);
    }
    const version = dv.getInt32(4, true);
    if (version !== 1 && version !== 2) {
      throw new FormatError(`${src}: unsupported 'ak42' checkpoint version ${version}; expected 1 (fp32) or 2 (Q8_0)`);
    }
    const format: CheckpointFormat = version === 1 ? 'v1' : 'v2';
    const r = readRaw(dv, 8);
    if (r.vocab <= 0) {
      throw new FormatError(`${src}: ${format} header has vocab_size ${r.vocab}; expected a positive integer (${describe(r)})`);
    }
    const sharedByte = dv.getUint8(36);
    if (sharedByte !== 0 && sharedByte !== 1) {
      throw new FormatError(`${src}: shared_classifier byte at offset 36 is ${sharedByte}; expected 0 or 1`);
    }
    const shared = sharedByte === 1;
    const gs = format === 'v2' ? dv.getInt32(37, true) : undefined;
    validateShape(src, r, format, gs);
    const expected = impliedSize(format, r, shared, gs);
    if (expected !== fileSize) {
      const extra = `${shared ? ', shared' : ', unshared'} classifier${gs !== undefined ? `, group_size ${gs}` : ''}`;
      throw sizeError(src, r, expected, fileSize, extra);
    }
    const config = makeConfig(r, shared);
    const tensors = buildTensors(format, config, gs, HEADER_BYTES);
    return { format, config, ...(gs !== undefined ? { groupSize: gs } : {}), headerSize: HEADER_BYTES, byteLength: expected, tensors };
  }

  // Legacy v0: the first int32 is dim.
  const dim0 = dv.getInt32(0, true);
  if (!(dim0 > 0 && dim0 <= MAX_V0_DIM)) {
    throw new FormatError(
      `${src}: not a llama2.c checkpoint: the first int32 is ${dim0} (0x${first.toString(16).padStart(8, '0')}); expected the 'ak42' magic 0x${MAGIC.toString(16)} or a legacy v0 dim in 1..${fmtBytes(MAX_V0_DIM)}`,
    );
  }
  if (fileSize < V0_HEADER_BYTES || avail < V0_HEADER_BYTES) {
    throw new FormatError(`${src}: the file has ${fmtBytes(fileSize)} bytes, less than the 28-byte v0 header (truncated?)`);
  }
  const r = readRaw(dv, 0);
  validateShape(src, r, 'v0');
  // llama2.c: negative vocab_size means an unshared classifier. When the sign
  // disagrees with the size but the size matches the other layout exactly,
  // the size tells.
  const bySign = r.vocab > 0;
  const expSign = impliedSize('v0', r, bySign, undefined);
  let shared = bySign;
  let expected = expSign;
  if (expSign !== fileSize) {
    const expOther = impliedSize('v0', r, !bySign, undefined);
    if (expOther !== fileSize) {
      throw sizeError(src, r, expSign, fileSize, bySign ? ', shared classifier' : ', unshared classifier');
    }
    shared = !bySign;
    expected = expOther;
  }
  const config = makeConfig(r, shared);
  const tensors = buildTensors('v0', config, undefined, V0_HEADER_BYTES);
  return { format: 'v0', config, headerSize: V0_HEADER_BYTES, byteLength: expected, tensors };
}
