/**
 * Byte-level mutations of valid files, for the readers' fuzz tests: each
 * mutation is plain data (so fast-check prints and shrinks it), applied by
 * `applyMutations`. Positions are taken modulo the current length, so any
 * mutation applies to any file.
 */
import fc from 'fast-check';

export type Mutation =
  /** Keep the first `at % (length + 1)` bytes. */
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: Uint8Array }
  /** XOR one byte with `mask` (1..255). */
  | { kind: 'flip'; at: number; mask: number }
  /** Overwrite a little-endian int32 (a header word, a length field). Skipped if it does not fit. */
  | { kind: 'int32'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number };

export function applyMutations(base: Uint8Array, mutations: readonly Mutation[]): Uint8Array<ArrayBuffer> {
  let b = Uint8Array.from(base);
  for (const m of mutations) {
    const pos = (at: number, len: number) => (len === 0 ? 0 : at % len);
    switch (m.kind) {
      case 'truncate':
        b = b.slice(0, m.at % (b.length + 1));
        break;
      case 'append': {
        const out = new Uint8Array(b.length + m.bytes.length);
        out.set(b);
        out.set(m.bytes, b.length);
        b = out;
        break;
      }
      case 'flip':
        if (b.length > 0) b[pos(m.at, b.length)] ^= m.mask;
        break;
      case 'int32':
        if (m.at + 4 <= b.length) new DataView(b.buffer).setInt32(m.at, m.value, true);
        break;
      case 'insert': {
        const at = pos(m.at, b.length + 1);
        const out = new Uint8Array(b.length + m.bytes.length);
        out.set(b.subarray(0, at));
        out.set(m.bytes, at);
        out.set(b.subarray(at), at + m.bytes.length);
        b = out;
        break;
      }
      case 'delete': {
        const at = pos(m.at, b.length);
        const out = new Uint8Array(b.length - Math.min(m.count, b.length - at));
        out.set(b.subarray(0, at));
        out.set(b.subarray(at + m.count), at);
        b = out;
        break;
      }
    }
  }
  return b;
}

/**
 * int32 values that make sizes lie: zero, negatives, the extremes, powers of
 * two (huge dims that multiply past 2^53) and their neighbours, small values
 * close to real ones, and anything else.
 */
export const lyingInt32: fc.Arbitrary<number> = fc.oneof(
  fc.constantFrom(0, -1, 1, 2, 3, 0x7fffffff, -0x80000000, 0x616b3432),
  fc.integer({ min: 0, max: 30 }).chain((k) => fc.constantFrom(2 ** k, 2 ** k - 1, 2 ** k + 1, -(2 ** k))),
  fc.integer({ min: -64, max: 4096 }),
  fc.integer({ min: -0x80000000, max: 0x7fffffff }),
);

export interface MutationOptions {
  /** Offsets of the format's int32 fields (header words, length fields) to aim lies at; any offset is also tried. */
  int32Offsets?: readonly number[];
  /** Most mutations per case (default 3). */
  maxMutations?: number;
}

/** One to `maxMutations` mutations: truncations, appended junk, byte flips, lying int32 fields, inserted and deleted bytes. */
export function mutationsArb(opts: MutationOptions = {}): fc.Arbitrary<Mutation[]> {
  const hot = opts.int32Offsets?.length ? fc.constantFrom(...opts.int32Offsets) : fc.nat({ max: 64 });
  const at = fc.nat();
  const junk = fc.uint8Array({ minLength: 1, maxLength: 64 });
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    { weight: 2, arbitrary: at.map((a): Mutation => ({ kind: 'truncate', at: a })) },
    { weight: 1, arbitrary: junk.map((bytes): Mutation => ({ kind: 'append', bytes })) },
    { weight: 3, arbitrary: fc.record({ at, mask: fc.integer({ min: 1, max: 255 }) }).map((r): Mutation => ({ kind: 'flip', ...r })) },
    { weight: 4, arbitrary: fc.record({ at: fc.oneof(hot, fc.nat({ max: 512 })), value: lyingInt32 }).map((r): Mutation => ({ kind: 'int32', ...r })) },
    { weight: 1, arbitrary: fc.record({ at, bytes: junk }).map((r): Mutation => ({ kind: 'insert', ...r })) },
    { weight: 1, arbitrary: fc.record({ at, count: fc.integer({ min: 1, max: 64 }) }).map((r): Mutation => ({ kind: 'delete', ...r })) },
  );
  return fc.array(mutation, { minLength: 1, maxLength: opts.maxMutations ?? 3 });
}
