/**
 * Helpers every backend shares for a step's rows (see Backend.begin): the
 * checks, and the geometry of a KV cache with several slots.
 */
import type { StepRows } from './backend.js';
import { ArgumentError } from '@rama/core';
import type { TensorDesc } from './tensor.js';

/** A step's rows, checked and as plain arrays. */
export interface CheckedRows {
  /** Each row's position in its sequence. */
  positions: number[];
  /** Each row's KV cache slot (its sequence). */
  slots: number[];
}

/** Checks a step's rows against the backend's maxRows: 1..maxRows rows, integer positions and slots >= 0. */
export function checkStepRows(rows: StepRows, maxRows: number): CheckedRows {
  if (!rows || typeof rows !== 'object' || rows.positions === undefined) {
    throw new ArgumentError('begin: expected { positions, slots? } describing the step\'s rows');
  }
  const positions = Array.from(rows.positions);
  const n = positions.length;
  if (!(n >= 1 && n <= maxRows)) throw new ArgumentError(`step rows ${n} outside 1..${maxRows}`);
  const slots = rows.slots === undefined ? new Array<number>(n).fill(0) : Array.from(rows.slots);
  if (slots.length !== n) throw new ArgumentError(`begin: ${n} positions but ${slots.length} slots`);
  for (let r = 0; r < n; r++) {
    if (!(Number.isInteger(positions[r]) && positions[r] >= 0)) throw new ArgumentError(`step position ${positions[r]} (row ${r}) must be an integer >= 0`);
    if (!(Number.isInteger(slots[r]) && slots[r] >= 0)) throw new ArgumentError(`step slot ${slots[r]} (row ${r}) must be an integer >= 0`);
  }
  return { positions, slots };
}

/** The shape of a KV cache: [layers, slots, seqLen, kvDim], or [layers, seqLen, kvDim] for one slot. */
export interface KVGeometry {
  /** Transformer layers. */
  layers: number;
  /** Sequences the cache holds, one slot each. */
  slots: number;
  /** Positions per slot. */
  seqLen: number;
  /** Numbers per position: nKvHeads * headSize. */
  kvDim: number;
}

/** Reads a KV cache's geometry from its shape; an ArgumentError naming `what` for any other shape. */
export function kvGeometry(cache: TensorDesc, what: string): KVGeometry {
  const s = cache.shape;
  if (s.length === 3) return { layers: s[0], slots: 1, seqLen: s[1], kvDim: s[2] };
  if (s.length === 4) return { layers: s[0], slots: s[1], seqLen: s[2], kvDim: s[3] };
  throw new ArgumentError(`${what}: ${cache.label} must be [layers, slots, seqLen, kvDim] or [layers, seqLen, kvDim], is [${s.join(', ')}]`);
}

/** Checks that every row's (slot, position) lies inside the cache; returns the geometry. */
export function checkRowsInCache(cache: TensorDesc, layer: number, rows: CheckedRows, what: string): KVGeometry {
  const g = kvGeometry(cache, what);
  if (!(Number.isInteger(layer) && layer >= 0 && layer < g.layers)) throw new ArgumentError(`${what}: layer ${layer} outside 0..${g.layers - 1}`);
  for (let r = 0; r < rows.positions.length; r++) {
    if (rows.slots[r] >= g.slots) throw new ArgumentError(`${what}: slot ${rows.slots[r]} (row ${r}) past the KV cache's ${g.slots} slots`);
    if (rows.positions[r] >= g.seqLen) throw new ArgumentError(`position ${rows.positions[r]} past the KV cache (${g.seqLen})`);
  }
  return g;
}

/** Element offset of (layer, slot, position 0) in a KV cache. */
export function kvOffset(g: KVGeometry, layer: number, slot: number): number {
  return ((layer * g.slots + slot) * g.seqLen) * g.kvDim;
}

/**
 * How many rows each tensor holds within one step (see Step): the step's row
 * count, except for a gather's output and what is computed from it.
 */
export class RowFlow<T extends TensorDesc = TensorDesc> {
  private readonly counts = new Map<T, number>();
  /** @param stepRows The step's row count: what every tensor holds unless set otherwise. */
  constructor(readonly stepRows: number) {}

  /** Rows `t` holds in this step. */
  of(t: T): number {
    return this.counts.get(t) ?? this.stepRows;
  }

  /** `out` now holds `n` rows (checked against its capacity). */
  set(out: T, n: number, what: string): void {
    if (out.shape.length > 1 && out.shape[0] < n) throw new ArgumentError(`${what}: ${out.label} has ${out.shape[0]} rows, the step writes ${n}`);
    if (n === this.stepRows) this.counts.delete(out);
    else this.counts.set(out, n);
  }

  /** An op from `input` to `out`: out holds as many rows as input; returns that count. */
  flow(out: T, input: T, what: string): number {
    const n = this.of(input);
    this.set(out, n, what);
    return n;
  }
}

/** Checks a gather's rows: 1..outRows of them, each one of the `have` rows its input holds; returns them as an array. */
export function checkGatherRows(rows: ArrayLike<number> | undefined, have: number, outRows: number, outLabel: string): number[] {
  const which = Array.from(rows ?? []);
  if (which.length < 1 || which.length > outRows) throw new ArgumentError(`gather: ${which.length} rows into ${outLabel}'s ${outRows}`);
  for (const r of which) if (!(Number.isInteger(r) && r >= 0 && r < have)) throw new ArgumentError(`gather: row ${r} outside 0..${have - 1}`);
  return which;
}
