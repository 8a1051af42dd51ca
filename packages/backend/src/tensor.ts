/**
 * Element types, described by traits the way ggml describes its types
 * (ggml_type_traits: type name, block size, type size, is-quantized): a type
 * is a registered name, and what the rest of Rama needs to know about its
 * bytes comes from its traits. Adding a type (f16 kernels, GGUF's q4_0 or
 * q6_K, ...) means registering it here and writing kernels in the backends
 * that support it; the Backend interface does not change. Each backend says
 * which types it stores with `Backend.supports(dtype)`.
 */
import { ArgumentError } from '@rama/core';
import type { Backend } from './backend.js';

/**
 * The registered type names. Open by declaration merging: a package that
 * registers a type adds its name here as well, so `DType` includes it:
 *
 *   declare module '@rama/backend' { interface DTypes { gguf_q4_0: true } }
 *   registerDType({ name: 'gguf_q4_0', kind: 'quantized', blockSize: 32, bytesPerBlock: 18, layout: '...' });
 */
export interface DTypes {
  /** 32-bit float. */
  f32: true;
  /** 32-bit signed integer (token ids). */
  i32: true;
  /** llama2.c's Q8_0: int8 values, one f32 scale per group. */
  q8_0: true;
  /** IEEE half precision. */
  f16: true;
  /** bfloat16: the high 16 bits of an f32. */
  bf16: true;
  /** GGUF's Q4_0: 4-bit values, one f16 scale per 32. */
  q4_0: true;
  /** GGUF's Q4_K: super-blocks of 256, 4-bit values, 6-bit scales and mins per 32, f16 d and dmin. */
  q4_k: true;
  /** GGUF's Q5_K: as Q4_K with a fifth bit per value. */
  q5_k: true;
  /** GGUF's Q6_K: super-blocks of 256, 6-bit values, an int8 scale per 16, an f16 d. */
  q6_k: true;
}

/** Name of a registered element type. */
export type DType = keyof DTypes;

/** Plain floats, integers, or blocks of quantized values with their scales. */
export type DTypeKind = 'float' | 'int' | 'quantized';

/** What Rama knows about an element type's bytes (its standard layout, the one `upload` receives). */
export interface DTypeTraits {
  /** The registered name. */
  readonly name: DType;
  /** Float, int or quantized. */
  readonly kind: DTypeKind;
  /**
   * Elements per block: a fixed count (1 for plain types; ggml's block types
   * have 32 or 256), or 'groupSize' when each tensor's `groupSize` sets it
   * (llama2.c's q8_0). Blocks never straddle rows: the last dimension must
   * be a multiple of a fixed block size.
   */
  readonly blockSize: number | 'groupSize';
  /** Bytes per block; for a 'groupSize' type, a function of the group size. */
  readonly bytesPerBlock: number | ((groupSize: number) => number);
  /** A short description of the byte layout. */
  readonly layout: string;
}

const registry = new Map<string, DTypeTraits>();

/** Adds an element type (or fails if its name is taken by a different one). Returns its traits. */
export function registerDType(traits: DTypeTraits): DTypeTraits {
  const { name, kind, blockSize, bytesPerBlock } = traits;
  if (typeof name !== 'string' || !/^[a-z][a-z0-9_]*$/i.test(name)) throw new ArgumentError(`registerDType: bad name ${JSON.stringify(name)}`);
  if (!['float', 'int', 'quantized'].includes(kind)) throw new ArgumentError(`registerDType ${name}: kind must be float, int or quantized, got ${JSON.stringify(kind)}`);
  if (blockSize !== 'groupSize' && !(Number.isSafeInteger(blockSize) && blockSize >= 1)) {
    throw new ArgumentError(`registerDType ${name}: blockSize must be a positive integer or 'groupSize', got ${String(blockSize)}`);
  }
  const fixedBytes = typeof bytesPerBlock === 'number';
  if (fixedBytes ? !(Number.isSafeInteger(bytesPerBlock) && bytesPerBlock >= 1) : typeof bytesPerBlock !== 'function') {
    throw new ArgumentError(`registerDType ${name}: bytesPerBlock must be a positive integer or a function of the group size`);
  }
  if (fixedBytes === (blockSize === 'groupSize')) {
    throw new ArgumentError(`registerDType ${name}: a fixed blockSize takes a number of bytesPerBlock, a 'groupSize' one a function`);
  }
  const old = registry.get(name);
  if (old) {
    if (old.kind === kind && old.blockSize === blockSize && old.bytesPerBlock === bytesPerBlock) return old;
    throw new ArgumentError(`registerDType: ${name} is already registered with other traits`);
  }
  const t = Object.freeze({ ...traits });
  registry.set(name, t);
  return t;
}

/** The traits of a registered type; an ArgumentError naming `label` for any other name. */
export function dtypeTraits(dtype: string, label?: string): DTypeTraits {
  const t = registry.get(dtype);
  if (!t) {
    throw new ArgumentError(
      `${label ? `${label}: ` : ''}unknown dtype ${JSON.stringify(dtype)}; registered: ${[...registry.keys()].join(', ')}`,
    );
  }
  return t;
}

/** Whether `dtype` names a registered type. */
export function isDType(dtype: unknown): dtype is DType {
  return typeof dtype === 'string' && registry.has(dtype);
}

/** Every registered type, in registration order. */
export function registeredDTypes(): DTypeTraits[] {
  return [...registry.values()];
}

registerDType({ name: 'f32', kind: 'float', blockSize: 1, bytesPerBlock: 4, layout: 'IEEE-754 binary32, little-endian' });
registerDType({ name: 'i32', kind: 'int', blockSize: 1, bytesPerBlock: 4, layout: 'two\'s-complement int32, little-endian (token ids)' });
registerDType({
  name: 'q8_0',
  kind: 'quantized',
  blockSize: 'groupSize',
  bytesPerBlock: (groupSize) => groupSize + 4,
  layout:
    "llama2.c's Q8_0 (runq.c, a v2 checkpoint tensor): groups of `groupSize` consecutive elements (set per tensor) " +
    'as int8, one f32 scale per group; all int8 values row-major first, then all f32 scales. Not GGUF\'s Q8_0 ' +
    '(blocks of 32 with an f16 scale inline)',
});
registerDType({ name: 'f16', kind: 'float', blockSize: 1, bytesPerBlock: 2, layout: 'IEEE-754 binary16, little-endian' });
registerDType({ name: 'bf16', kind: 'float', blockSize: 1, bytesPerBlock: 2, layout: 'bfloat16 (the high 16 bits of a binary32), little-endian' });
registerDType({
  name: 'q4_0',
  kind: 'quantized',
  blockSize: 32,
  bytesPerBlock: 18,
  layout:
    "GGUF's Q4_0: blocks of 32 consecutive elements of a row, each an f16 scale d then 16 bytes; element j < 16 of a " +
    'block is the low nibble of byte j, element j + 16 its high nibble, and its value is (nibble - 8) * d',
});
registerDType({
  name: 'q4_k',
  kind: 'quantized',
  blockSize: 256,
  bytesPerBlock: 144,
  layout:
    "GGUF's Q4_K: super-blocks of 256 consecutive elements of a row, each f16 d @0, f16 dmin @2, scales[12] @4 (eight " +
    "6-bit (sc, m) pairs, ggml's get_scale_min_k4), qs[128] @16. Chunk k = 0..3 of 64 elements: element 64k + l (l < 32) " +
    'is the low nibble of qs[32k + l] with pair 2k, element 64k + 32 + l its high nibble with pair 2k + 1; value = d*sc*q - dmin*m',
});
registerDType({
  name: 'q5_k',
  kind: 'quantized',
  blockSize: 256,
  bytesPerBlock: 176,
  layout:
    "GGUF's Q5_K: super-blocks of 256, each f16 d @0, f16 dmin @2, scales[12] @4 (as Q4_K), qh[32] @16, qs[128] @48; as " +
    'Q4_K, plus 16 when bit 2k (low nibbles of chunk k) or 2k + 1 (high nibbles) of qh[l] is set; value = d*sc*q - dmin*m',
});
registerDType({
  name: 'q6_k',
  kind: 'quantized',
  blockSize: 256,
  bytesPerBlock: 210,
  layout:
    "GGUF's Q6_K: super-blocks of 256, each ql[128] @0 (low 4 bits), qh[64] @128 (high 2 bits), int8 scales[16] @192 " +
    '(one per 16 elements), f16 d @208. Half h of 128 elements, l < 32: elements l, l+32, l+64, l+96 take ql[64h+l] low, ' +
    'ql[64h+l+32] low, ql[64h+l] high, ql[64h+l+32] high nibbles and bits 0-1, 2-3, 4-5, 6-7 of qh[32h+l]; value = d*sc*(q - 32)',
});

/** Shape, type and name of a tensor. Matrices are [rows, cols] = [out, in], as in llama2.c. */
export interface TensorDesc {
  /** Dimensions, outermost first; a matrix is [rows, cols]. */
  readonly shape: readonly number[];
  /** The element type. */
  readonly dtype: DType;
  /** A human name for errors and debugging, e.g. "layers.3.wq". */
  readonly label: string;
  /** Types whose blockSize is 'groupSize' (q8_0) only: elements per quantization group (divides the element count). */
  readonly groupSize?: number;
  /**
   * Tensors one op reads together (the KV cache's keys and values, both read
   * by `attention`): a backend that keeps several memories (the CPU backend
   * past 4 GiB) puts every tensor of a group in the same one. `bytes` is the
   * whole group's size, so the first member goes where all of them fit.
   */
  readonly colocate?: {
    /** The group's name: tensors with the same name share a memory. */
    readonly group: string;
    /** Bytes of the whole group. */
    readonly bytes: number;
  };
}

/** A handle to device-resident memory owned by a Backend. */
export interface Tensor extends TensorDesc {
  /** Size in the standard byte layout. */
  readonly byteLength: number;
}

/** The number of elements of a shape: the product of its dimensions. */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Bytes of a tensor in its type's standard layout, from the type's traits.
 * An unknown type, a missing group size or one that does not divide the last
 * dimension, or a last dimension that is not a multiple of a fixed block size
 * is an ArgumentError naming the tensor.
 */
export function byteLengthOf(desc: TensorDesc): number {
  const t = dtypeTraits(desc.dtype, desc.label);
  const n = elementCount(desc.shape);
  if (t.blockSize === 'groupSize') {
    const gs = desc.groupSize ?? 0;
    if (!Number.isSafeInteger(gs) || gs <= 0 || n % gs !== 0) {
      throw new ArgumentError(`${desc.label}: ${t.name} group size ${gs} does not divide ${n} elements`);
    }
    // The kernels scale each row's groups from the row's start: a group that
    // straddles two rows would be read with the wrong scale (regroup first,
    // as @rama/quant-q80's regroupQ80 does for such llama2.c files).
    const cols = desc.shape.length > 0 ? desc.shape[desc.shape.length - 1] : n;
    if (cols % gs !== 0) {
      throw new ArgumentError(`${desc.label}: ${t.name} groups of ${gs} straddle its rows of ${cols}; regroup it to a size that divides ${cols}`);
    }
    return (n / gs) * (t.bytesPerBlock as (groupSize: number) => number)(gs);
  }
  const bs = t.blockSize;
  if (bs > 1 && desc.shape.length > 0 && desc.shape[desc.shape.length - 1] % bs !== 0) {
    throw new ArgumentError(`${desc.label}: ${t.name} stores blocks of ${bs} elements; the last dimension ${desc.shape[desc.shape.length - 1]} is not a multiple of ${bs}`);
  }
  return (n / bs) * (t.bytesPerBlock as number);
}

/**
 * What a backend's upload and alloc do first: a tensor of a registered type
 * the backend does not support is an ArgumentError naming the tensor, the
 * type and the backend (not a failure in some kernel later).
 */
export function checkSupported(backend: Pick<Backend, 'name' | 'supports'>, desc: TensorDesc, op?: string): void {
  const what = op ? `${op} ${desc.label}` : desc.label;
  dtypeTraits(desc.dtype, what);
  if (!backend.supports(desc.dtype)) {
    const have = registeredDTypes().map((t) => t.name).filter((d) => backend.supports(d));
    throw new ArgumentError(
      `${what}: the ${backend.name} backend does not support dtype ${desc.dtype} (it supports ${have.join(', ')}); convert the tensor or use another backend`,
    );
  }
}

/** Rows of an activation tensor: its leading dimension (1 for a single vector). */
export function rowsOf(t: TensorDesc): number {
  return t.shape.length > 1 ? t.shape[0] : 1;
}

/** Elements per row of an activation or weight tensor: its last dimension. */
export function colsOf(t: TensorDesc): number {
  return t.shape[t.shape.length - 1];
}
