/**
 * Element types a backend stores.
 * - f32: IEEE float32.
 * - i32: int32 (token ids).
 * - q8_0: llama2.c's Q8_0 weights: int8 values quantized in groups of
 *   `groupSize` consecutive elements along the last dimension, one f32 scale per
 *   group. The standard byte layout (what `upload` receives) is exactly a v2
 *   checkpoint tensor: all int8 values row-major, then all f32 scales.
 */
export type DType = 'f32' | 'i32' | 'q8_0';

/** Shape, type and name of a tensor. Matrices are [rows, cols] = [out, in], as in llama2.c. */
export interface TensorDesc {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** A human name for errors and debugging, e.g. "layers.3.wq". */
  readonly label: string;
  /** q8_0 only: elements per quantization group (divides the last dimension). */
  readonly groupSize?: number;
}

/** A handle to device-resident memory owned by a Backend. */
export interface Tensor extends TensorDesc {
  /** Size in the standard byte layout. */
  readonly byteLength: number;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Bytes of a tensor in the standard layout (see DType). */
export function byteLengthOf(desc: TensorDesc): number {
  const n = elementCount(desc.shape);
  if (desc.dtype === 'q8_0') {
    const gs = desc.groupSize ?? 0;
    if (!(gs > 0) || n % gs !== 0) {
      throw new RangeError(`${desc.label}: q8_0 group size ${gs} does not divide ${n} elements`);
    }
    return n + 4 * (n / gs);
  }
  return 4 * n;
}

/** Rows of an activation tensor: its leading dimension (1 for a single vector). */
export function rowsOf(t: TensorDesc): number {
  return t.shape.length > 1 ? t.shape[0] : 1;
}

/** Elements per row of an activation or weight tensor: its last dimension. */
export function colsOf(t: TensorDesc): number {
  return t.shape[t.shape.length - 1];
}
