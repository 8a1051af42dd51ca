/**
 * Helpers for the readers' property-based (fuzz) tests: a reproducible seed,
 * and a watch on the typed arrays a reader allocates, so a test can assert
 * that no size read from a file is trusted beyond the file's real size.
 */

export interface FuzzParams {
  seed: number;
  numRuns: number;
  /** fast-check's replay path, with RAMA_FUZZ_PATH (printed beside the seed on failure). */
  path?: string;
}

/**
 * fast-check parameters: RAMA_FUZZ_SEED, RAMA_FUZZ_RUNS and RAMA_FUZZ_PATH
 * when set, else a fixed seed, so every CI run checks the same cases and a
 * failure printed with its seed can be replayed.
 */
export function fuzzParams(defaultRuns: number, defaultSeed = 20240611): FuzzParams {
  const int = (name: string, dflt: number): number => {
    const v = process.env[name];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const path = process.env.RAMA_FUZZ_PATH || undefined;
  return { seed: int('RAMA_FUZZ_SEED', defaultSeed), numRuns: int('RAMA_FUZZ_RUNS', defaultRuns), ...(path ? { path } : {}) };
}

export interface AllocationLog {
  /** Buffers created (views of an existing buffer are not counted). */
  count: number;
  /** Their bytes, summed. */
  total: number;
  /** The largest single one, in bytes. */
  largest: number;
}

/** Thrown instead of allocating when a request exceeds the tracker's limit (a plain Error: never a RamaError). */
export class AllocationLimitExceeded extends Error {
  constructor(readonly bytes: number, readonly limit: number, readonly what: string) {
    super(`allocation of ${bytes} bytes (${what}) exceeds the test's limit of ${limit}`);
    this.name = 'AllocationLimitExceeded';
  }
}

const BUFFER_CTORS = ['ArrayBuffer', 'SharedArrayBuffer'] as const;
const VIEW_CTORS = [
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
  'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
] as const;

/** The real buffer constructors, captured before any proxy is installed. */
const RealArrayBuffer = globalThis.ArrayBuffer;
const RealSharedArrayBuffer: typeof SharedArrayBuffer | undefined =
  typeof SharedArrayBuffer !== 'undefined' ? SharedArrayBuffer : undefined;
const isBuffer = (x: unknown): boolean =>
  x instanceof RealArrayBuffer || (RealSharedArrayBuffer !== undefined && x instanceof RealSharedArrayBuffer);

let tracking = false;

/**
 * Runs `fn` while counting the ArrayBuffers and typed arrays that JavaScript
 * code creates (`new Uint8Array(n)`, `new ArrayBuffer(n)`, `Int32Array.from`,
 * a typed-array copy of an array): the global constructors are replaced by
 * proxies for the duration, and code resolves them at call time. A request
 * over `limit` bytes throws AllocationLimitExceeded before anything is
 * allocated, so a reader that trusts a lying size fails the test instead of
 * taking gigabytes.
 *
 * Not seen: buffers that built-ins make internally (`slice()` of a typed
 * array or ArrayBuffer, `Blob.arrayBuffer()`, Node's own fs buffers) and
 * anything in other threads. The readers size those from lengths they have
 * already checked, which the counted allocations bound.
 */
export async function trackAllocations<T>(
  fn: () => T | Promise<T>,
  limit = Infinity,
): Promise<{ settled: PromiseSettledResult<Awaited<T>>; log: AllocationLog }> {
  if (tracking) throw new Error('trackAllocations does not nest');
  const g = globalThis as unknown as Record<string, unknown>;
  const log: AllocationLog = { count: 0, total: 0, largest: 0 };
  const record = (bytes: number, what: string): void => {
    if (bytes > limit) throw new AllocationLimitExceeded(bytes, limit, what);
    log.count++;
    log.total += bytes;
    log.largest = Math.max(log.largest, bytes);
  };
  const saved = new Map<string, unknown>();
  /** `measure` gives the bytes a construction will allocate, 'view' for none, undefined when known only after. */
  const install = (name: string, measure: (args: unknown[], bpe: number) => number | 'view' | undefined): void => {
    const target = g[name] as (new (...a: unknown[]) => { byteLength: number }) & { BYTES_PER_ELEMENT?: number };
    if (typeof target !== 'function') return;
    saved.set(name, target);
    const bpe = target.BYTES_PER_ELEMENT ?? 1;
    g[name] = new Proxy(target, {
      construct(t, args, newTarget) {
        const before = measure(args, bpe);
        if (typeof before === 'number') record(before, `new ${name}(${typeof args[0] === 'number' ? args[0] : '…'})`);
        const obj = Reflect.construct(t, args, newTarget) as { byteLength: number };
        if (before === undefined) record(obj.byteLength, `new ${name}(iterable)`);
        return obj;
      },
    });
  };
  for (const name of BUFFER_CTORS) install(name, (args) => Number(args[0] ?? 0));
  for (const name of VIEW_CTORS) {
    install(name, (args, bpe) => {
      const a = args[0];
      if (a === undefined || a === null || typeof a !== 'object') return bpe * Number(a ?? 0); // a length
      if (isBuffer(a)) return 'view';
      const len = (a as { length?: unknown }).length;
      return typeof len === 'number' ? bpe * len : undefined; // a copy of an array-like, or of an iterable
    });
  }

  tracking = true;
  try {
    const settled = await Promise.allSettled([(async () => fn())()]);
    return { settled: settled[0] as PromiseSettledResult<Awaited<T>>, log };
  } finally {
    for (const [name, ctor] of saved) g[name] = ctor;
    tracking = false;
  }
}
