/// <reference types="@webgpu/types" />

/** GPU time spent in one kernel (compute pipeline), summed over its dispatches. */
export interface KernelTime {
  /** The pipeline's name (its kernel definition's name, e.g. `matmul_q8_wg`). */
  kernel: string;
  /** Dispatches timed. */
  count: number;
  /** Total GPU time of those dispatches, in milliseconds. */
  ms: number;
}

// Numeric flags, so a caller-provided device works without the GPU* globals.
const MAP_READ = 0x1;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const QUERY_RESOLVE = 0x200;
/** The most queries one GPUQuerySet may hold (WebGPU's limit); a chunk times half as many dispatches. */
const CHUNK_QUERIES = 4096;

/** A query set with its resolve and readback buffers, reused across steps. */
interface Chunk {
  set: GPUQuerySet;
  resolve: GPUBuffer;
  read: GPUBuffer;
}

/**
 * The timestamps of one step: each timed dispatch gets its own compute pass
 * whose `timestampWrites` put its start and end into a query pair. At submit
 * the pairs are resolved into a buffer and copied to a mappable one in the
 * same command buffer; after submit they are mapped asynchronously, so
 * nothing waits for them (the step's own reads are not held up).
 */
export class ProfileFrame {
  private readonly chunks: Chunk[] = [];
  private readonly kernels: string[] = [];

  constructor(
    private readonly profiler: KernelProfiler,
    private readonly epoch: number,
  ) {}

  /** The descriptor of a compute pass that times one dispatch of `kernel`. */
  pass(kernel: string): GPUComputePassDescriptor {
    const pair = this.kernels.push(kernel) - 1;
    const q = 2 * pair;
    const c = Math.floor(q / CHUNK_QUERIES);
    if (c === this.chunks.length) this.chunks.push(this.profiler.take());
    const at = q % CHUNK_QUERIES;
    return {
      label: kernel,
      timestampWrites: { querySet: this.chunks[c].set, beginningOfPassWriteIndex: at, endOfPassWriteIndex: at + 1 },
    };
  }

  /** Records the resolve of every query written into the step's encoder (before `finish`). */
  resolve(encoder: GPUCommandEncoder): void {
    this.chunks.forEach((ch, c) => {
      const n = this.queriesIn(c);
      encoder.resolveQuerySet(ch.set, 0, n, ch.resolve, 0);
      encoder.copyBufferToBuffer(ch.resolve, 0, ch.read, 0, 8 * n);
    });
  }

  /** After the step's submit: maps the timestamps back and adds them to the profiler's totals. */
  submitted(): void {
    this.chunks.forEach((ch, c) => {
      const n = this.queriesIn(c);
      const done = ch.read.mapAsync(MAP_READ, 0, 8 * n).then(
        () => {
          const t = new BigUint64Array(ch.read.getMappedRange(0, 8 * n));
          for (let i = 0; i < n; i += 2) this.profiler.add(this.epoch, this.kernels[(c * CHUNK_QUERIES + i) / 2], t[i], t[i + 1]);
          ch.read.unmap();
          this.profiler.give(ch);
        },
        // The backend was disposed (buffers destroyed) or the device lost: those timings are gone.
        () => undefined,
      );
      this.profiler.pending(done);
    });
  }

  private queriesIn(chunk: number): number {
    return Math.min(CHUNK_QUERIES, 2 * this.kernels.length - chunk * CHUNK_QUERIES);
  }
}

/**
 * Per-kernel GPU time from timestamp queries (WebGPU's `timestamp-query`
 * feature). Totals are kept per pipeline name since the last `reset()`;
 * readbacks are asynchronous, and `times()` waits for those in flight.
 *
 * Timing each dispatch in its own pass adds a pass boundary per dispatch, so
 * a profiled step runs somewhat slower than an unprofiled one; the per-kernel
 * split is what it is for. Timestamps are GPU ticks in nanoseconds; Dawn
 * rounds them (to about 65 us) unless its `timestamp_quantization` toggle is
 * off, which the backend asks for in Node.
 */
export class KernelProfiler {
  private readonly free: Chunk[] = [];
  private readonly all = new Set<Chunk>();
  private readonly inFlight = new Set<Promise<void>>();
  private totals = new Map<string, { count: number; ns: number }>();
  private epoch = 0;

  constructor(private readonly device: GPUDevice) {}

  /** A frame for one step's dispatches. */
  frame(): ProfileFrame {
    return new ProfileFrame(this, this.epoch);
  }

  /** @internal A free chunk of queries, or a new one. */
  take(): Chunk {
    const reused = this.free.pop();
    if (reused) return reused;
    const ch: Chunk = {
      set: this.device.createQuerySet({ label: 'kernel timestamps', type: 'timestamp', count: CHUNK_QUERIES }),
      resolve: this.device.createBuffer({ label: 'kernel timestamps (resolve)', size: 8 * CHUNK_QUERIES, usage: QUERY_RESOLVE | COPY_SRC }),
      read: this.device.createBuffer({ label: 'kernel timestamps (read)', size: 8 * CHUNK_QUERIES, usage: MAP_READ | COPY_DST }),
    };
    this.all.add(ch);
    return ch;
  }

  /** @internal Returns a chunk whose timestamps were read. */
  give(ch: Chunk): void {
    if (this.all.has(ch)) this.free.push(ch);
  }

  /** @internal Tracks a readback until it settles. */
  pending(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** @internal Adds one dispatch's [begin, end] timestamps, unless a reset came after its step began. */
  add(epoch: number, kernel: string, begin: bigint, end: bigint): void {
    if (epoch !== this.epoch) return;
    // A driver may report an end before the begin (clock domain changes): count the dispatch, not the time.
    const ns = end > begin ? Number(end - begin) : 0;
    const t = this.totals.get(kernel);
    if (t) {
      t.count++;
      t.ns += ns;
    } else this.totals.set(kernel, { count: 1, ns });
  }

  /** Totals per kernel since the last reset, the most time first; waits for the readbacks in flight. */
  async times(): Promise<KernelTime[]> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
    return [...this.totals]
      .map(([kernel, t]) => ({ kernel, count: t.count, ms: t.ns / 1e6 }))
      .sort((a, b) => b.ms - a.ms || a.kernel.localeCompare(b.kernel));
  }

  /** Forgets the totals, and the timings of steps begun before now that are still in flight. */
  reset(): void {
    this.epoch++;
    this.totals = new Map();
  }

  /** Destroys the query sets and buffers. */
  dispose(): void {
    for (const ch of this.all) {
      ch.set.destroy();
      ch.resolve.destroy();
      ch.read.destroy();
    }
    this.all.clear();
    this.free.length = 0;
  }
}
