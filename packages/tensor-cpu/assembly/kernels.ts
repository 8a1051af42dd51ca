// The CPU backend's kernels, in AssemblyScript, compiled to WebAssembly with
// 128-bit SIMD and threads (shared memory + atomics). See ../README.md.
//
// Every thread (the JS main thread as thread 0, plus the pool's workers) runs
// the same program: a list of fixed-size op records that the JS side writes
// into the shared memory for one Step. Each op splits its work by thread id,
// and a barrier separates consecutive ops, so a whole Step costs one wake-up
// instead of one message per op.
//
// Numerics: everything except the f32 matmul reproduces src/kernels/scalar.ts
// (and so llama2.c built with -O3) bit for bit: f32 arithmetic in the same
// order, SIMD only across independent lanes (rows, positions, columns). The
// f32 matmul sums in 16 f32 lanes, then adds the lanes (a different order than
// the scalar reference's f64 sum; the conformance bound allows it, and every
// golden still matches).
// exp rounds as JavaScript's Math.exp does in V8, so softmax and SiLU match
// the scalar kernels exactly (see kernelExp).
//
// How the math maps to threads and 128-bit lanes (docs/guide/batching.md):
// - matmul: threads take rows of W (out = W x, one dot product per row);
//   f32 rows sum in 16 lanes (4 x f32x4); Q8_0 weights are interleaved at load
//   in blocks of four rows, so one memory stream feeds four rows, one per
//   i32 lane, with int8 x int16 products by i32x4.dot_i16x8_s. Decoding is
//   bound by reading W, so the layout of W matters more than the arithmetic.
// - attention: threads take (row, head) pairs; the scores of four positions
//   are computed at once, one per lane, each a sequential f32 dot product.
// - rmsnorm, rope, swiglu, add: sequential or element by element, as run.c.

import { kSums, matmulQ45K, matmulQ6K } from './kquants';
import { embedRow } from './embed';

@external("env", "exp")
declare function hostExp(x: f64): f64;

// ---------------------------------------------------------------------------
// Control block (offsets in bytes from `ctl`). The barrier's counter and
// generation sit on their own cache lines.
const EPOCH: usize = 0; // bumped by the main thread to start a program
const SLEEPERS: usize = 4; // workers blocked in atomic.wait on EPOCH
const SHUTDOWN: usize = 8; // 1: workers return from workerLoop
const NTHREADS: usize = 12;
const PROGRAM: usize = 16; // address of the op list
const FAILED: usize = 20; // nonzero: a thread trapped; everyone bails out
const IDLE_SPIN: usize = 24; // spins before a worker sleeps between programs
const BAR_SPIN: usize = 28; // spins before a thread sleeps in a barrier
const COUNT: usize = 32; // ops in the program at PROGRAM (at least 1)
const BAR_COUNT: usize = 64;
const BAR_GEN: usize = 128;
const BAR_SLEEPERS: usize = 132;
export const CONTROL_BYTES: i32 = 192;
/** Where the backend puts the control block (a fixed address, so kernels can read flags). */
const CTL_BASE: usize = 1024;

// Op codes; each record is OP_WORDS i32 words: [code, args...].
const OP_COPY = 1; // dst, src, bytes
const OP_EMBED = 2; // out, table, tokens, dim, rows
const OP_EMBED_PACKED = 18; // out, table, scales, tokens, dim, rows, kind, gs, vocab, blocked (embed.ts)
const OP_RMSNORM = 3; // out, x, weight, n, rows, eps(f32)
const OP_QUANTIZE = 4; // x, n, rows, gs, xq (i16), xs (f32)
const OP_MATMUL_F32 = 5; // out, x, w, n, d, rows
const OP_MATMUL_Q80 = 6; // out, xq, xs, wq, ws, n, d, rows, gs, blocked
const OP_ROPE = 7; // x, n, rows, table, period
const OP_ATTENTION = 8; // out, q, keys, values, rowTable, rows, nHeads, nKvHeads, headSize, scratch, scratchStride, f16
// (rowTable: per row, i32 last position and u32 byte offset of its KV slot from `keys`/`values`;
// f16: 0 for an f32 KV cache, 1 for an f16 one)
const OP_SWIGLU = 9; // out, gate, up, count
const OP_ADD = 10; // out, a, b, count
const OP_ARGMAX = 11; // out, logits, n, rows
const OP_MATMUL_HALF = 12; // out, x, w, n, d, rows, bf16 (0: f16 weights, 1: bf16)
const OP_MATMUL_Q40 = 13; // out, xq, xs, w, n, d, rows (w: GGUF Q4_0 blocks; xq/xs: QUANTIZE with gs 32)
const OP_STORE_F16 = 20; // dst (f16), src (f32), count: a run of KV rows into an f16 cache
// GGUF k-quants (kquants.ts); xq/xs/sums: QUANTIZE_K
const OP_MATMUL_Q4K = 14; // out, xq, xs, sums, w, n, d, rows
const OP_MATMUL_Q5K = 15; // out, xq, xs, sums, w, n, d, rows
const OP_MATMUL_Q6K = 16; // out, xq, xs, w, n, d, rows
const OP_QUANTIZE_K = 17; // x, n, rows, xq (i16), xs (f32), sums (i16): QUANTIZE with gs 256, plus each 32 xq's sum
export const OP_WORDS: i32 = 16;

// ---------------------------------------------------------------------------
// Thread pool: program loop, barrier, worker idle loop.

/** Splits [0, total) into `n` chunks, multiples of `align`; returns this thread's start. */
@inline function chunkStart(total: i32, tid: i32, n: i32, align: i32): i32 {
  const per = ((total + n - 1) / n + align - 1) / align * align;
  return min(tid * per, total);
}
@inline function chunkEnd(total: i32, tid: i32, n: i32, align: i32): i32 {
  const per = ((total + n - 1) / n + align - 1) / align * align;
  return min((tid + 1) * per, total);
}

function barrier(ctl: usize, n: i32, canWait: bool): void {
  if (n == 1) return;
  const gen = atomic.load<i32>(ctl + BAR_GEN);
  if (atomic.add<i32>(ctl + BAR_COUNT, 1) == n - 1) {
    // Last to arrive: reset the count before releasing the others.
    atomic.store<i32>(ctl + BAR_COUNT, 0);
    atomic.add<i32>(ctl + BAR_GEN, 1);
    if (atomic.load<i32>(ctl + BAR_SLEEPERS) > 0) atomic.notify(ctl + BAR_GEN, 1 << 30);
    return;
  }
  const limit = load<i32>(ctl + BAR_SPIN);
  let spins = 0;
  while (atomic.load<i32>(ctl + BAR_GEN) == gen) {
    if (atomic.load<i32>(ctl + FAILED) != 0) return;
    if (canWait && ++spins > limit) {
      atomic.add<i32>(ctl + BAR_SLEEPERS, 1);
      atomic.wait<i32>(ctl + BAR_GEN, gen, 20_000_000); // re-checks FAILED every 20 ms
      atomic.sub<i32>(ctl + BAR_SLEEPERS, 1);
    }
  }
}

/**
 * Runs the current program as thread `tid`, returning after its last barrier.
 *
 * Race-free because each thread reads the program's address and op count once,
 * before its first barrier, and touches the op list only before its last one.
 * The main thread writes the next program (list, PROGRAM, COUNT) only after it
 * has left the last barrier of this one, which no thread can do before every
 * thread has arrived there. (Reading the list for an end marker after the last
 * barrier, as this loop once did, could find the next step's op there: a late
 * thread then ran it and the barrier counts slipped by one.)
 */
export function runProgram(ctl: usize, tid: i32, canWait: bool): void {
  runOps(ctl, tid, load<i32>(ctl + NTHREADS), <usize>load<u32>(ctl + PROGRAM), load<i32>(ctl + COUNT), canWait);
}

/** Runs `count` ops from `p` as thread `tid` of `n`, with a barrier after each. */
function runOps(ctl: usize, tid: i32, n: i32, p: usize, count: i32, canWait: bool): void {
  for (let i = 0; i < count; i++) {
    if (atomic.load<i32>(ctl + FAILED) != 0) return;
    execute(load<i32>(p), p + 4, tid, n);
    barrier(ctl, n, canWait);
    p += <usize>(OP_WORDS * 4);
  }
}

/** A worker's life: wait for a program (spin, then sleep), run it, repeat until shutdown. */
export function workerLoop(ctl: usize, tid: i32, epoch: i32): void {
  let seen = epoch;
  while (true) {
    const limit = load<i32>(ctl + IDLE_SPIN);
    let spins = 0;
    while (atomic.load<i32>(ctl + EPOCH) == seen) {
      if (++spins > limit) {
        // Timed, so that a terminating worker (process exit without dispose)
        // comes back to a loop where the engine can stop it.
        atomic.add<i32>(ctl + SLEEPERS, 1);
        atomic.wait<i32>(ctl + EPOCH, seen, 20_000_000);
        atomic.sub<i32>(ctl + SLEEPERS, 1);
      }
    }
    seen++;
    if (atomic.load<i32>(ctl + SHUTDOWN) != 0) return;
    runProgram(ctl, tid, true);
  }
}

/**
 * Main thread: starts the `count` ops at `program` on every thread and runs its
 * own share; or, if `solo`, runs them all itself while the workers stay idle
 * (the backend's choice when the other cores are busy). An empty program is
 * not started: with no barrier in it, a worker could read the next launch's
 * PROGRAM and COUNT in place of this one's.
 */
export function launch(ctl: usize, program: usize, count: i32, solo: bool, canWait: bool): void {
  if (count <= 0) return;
  if (solo) {
    runOps(ctl, 0, 1, program, count, false);
    return;
  }
  store<u32>(ctl + PROGRAM, <u32>program);
  store<i32>(ctl + COUNT, count);
  atomic.add<i32>(ctl + EPOCH, 1);
  if (atomic.load<i32>(ctl + SLEEPERS) > 0) atomic.notify(ctl + EPOCH, 1 << 30);
  runProgram(ctl, 0, canWait);
}

@inline function arg(a: usize, i: i32): i32 {
  return load<i32>(a + (<usize>i << 2));
}
@inline function ptr(a: usize, i: i32): usize {
  return <usize>load<u32>(a + (<usize>i << 2));
}
@inline function argf(a: usize, i: i32): f32 {
  return load<f32>(a + (<usize>i << 2));
}

/**
 * The heavy ops (matmul, attention, quantize) hand out their work in chunks
 * from a counter in the op's record (its last word, zero when written): a
 * thread that runs slower (a busy core, a sibling hyperthread) takes fewer
 * chunks instead of holding everyone at the barrier. The split never changes
 * results: every output element is computed the same way by any thread.
 */
@inline function claim(a: usize, chunk: i32): i32 {
  return atomic.add<i32>(a + <usize>((OP_WORDS - 2) * 4), 1) * chunk;
}

/** The end of the chunk claimGuided returned last (a global: one per thread's instance). */
let claimedEnd: i32 = 0;

/**
 * Guided claim for the f32 matmul: takes about remaining / (2n) rows (a
 * multiple of 4, at least `minChunk`) from the op's counter, so each thread
 * starts with one large contiguous block and the end is shared in small
 * chunks. Large blocks keep each thread's weight stream long (the hardware
 * prefetcher restarts at every jump: many small interleaved chunks were
 * 15-25% slower on matrices streamed from DRAM); the small ones at the end
 * still let a slower thread take less. Returns the start (>= d: none left)
 * and sets claimedEnd.
 */
@inline function claimGuided(a: usize, d: i32, n: i32, minChunk: i32): i32 {
  const counter = a + <usize>((OP_WORDS - 2) * 4);
  while (true) {
    const cur = atomic.load<i32>(counter);
    if (cur >= d) return d;
    const end = min(d, cur + max(minChunk, ((d - cur) / (2 * n) + 3) & ~3));
    if (atomic.cmpxchg<i32>(counter, cur, end) == cur) {
      claimedEnd = end;
      return cur;
    }
  }
}

/** Rows per matmul chunk: about 8 chunks per thread, a multiple of 4 (the Q8_0 row blocks). */
@inline function matmulChunk(d: i32, n: i32): i32 {
  return max(4, ((d + n * 8 - 1) / (n * 8) + 3) & ~3);
}

function execute(op: i32, a: usize, tid: i32, n: i32): void {
  switch (op) {
    case OP_COPY: {
      const bytes = arg(a, 2);
      const s = chunkStart(bytes, tid, n, 64), e = chunkEnd(bytes, tid, n, 64);
      if (e > s) memory.copy(ptr(a, 0) + s, ptr(a, 1) + s, e - s);
      break;
    }
    case OP_EMBED: {
      const dim = arg(a, 3), rows = arg(a, 4);
      const out = ptr(a, 0), table = ptr(a, 1), tokens = ptr(a, 2);
      const bytes = <usize>dim << 2;
      for (let r = chunkStart(rows, tid, n, 1), e = chunkEnd(rows, tid, n, 1); r < e; r++) {
        const id = load<i32>(tokens + (<usize>r << 2));
        memory.copy(out + <usize>r * bytes, table + <usize>id * bytes, bytes);
      }
      break;
    }
    case OP_EMBED_PACKED: {
      const dim = arg(a, 4), rows = arg(a, 5);
      const out = ptr(a, 0), tokens = ptr(a, 3);
      for (let r = chunkStart(rows, tid, n, 1), e = chunkEnd(rows, tid, n, 1); r < e; r++) {
        const id = load<i32>(tokens + (<usize>r << 2));
        embedRow(out + <usize>r * (<usize>dim << 2), ptr(a, 1), ptr(a, 2), id, dim, arg(a, 6), arg(a, 7), arg(a, 8), arg(a, 9) != 0);
      }
      break;
    }
    case OP_RMSNORM: {
      const cols = arg(a, 3), rows = arg(a, 4), eps = argf(a, 5);
      const out = ptr(a, 0), x = ptr(a, 1), w = ptr(a, 2);
      const stride = <usize>cols << 2;
      for (let r = chunkStart(rows, tid, n, 1), e = chunkEnd(rows, tid, n, 1); r < e; r++) {
        rmsnorm(out + <usize>r * stride, x + <usize>r * stride, w, cols, eps);
      }
      break;
    }
    case OP_QUANTIZE: {
      const cols = arg(a, 1), rows = arg(a, 2), gs = arg(a, 3);
      const groups = rows * (cols / gs);
      const chunk = max(1, groups / (n * 4));
      for (let s = claim(a, chunk); s < groups; s = claim(a, chunk)) {
        quantize(ptr(a, 0), ptr(a, 4), ptr(a, 5), gs, s, min(s + chunk, groups));
      }
      break;
    }
    case OP_MATMUL_F32: {
      const cols = arg(a, 3), d = arg(a, 4), rows = arg(a, 5);
      const minChunk = max(4, ((d + n * 16 - 1) / (n * 16) + 3) & ~3);
      for (let s = claimGuided(a, d, n, minChunk); s < d; s = claimGuided(a, d, n, minChunk)) {
        matmulF32(ptr(a, 0), ptr(a, 1), ptr(a, 2), cols, d, rows, s, claimedEnd);
      }
      break;
    }
    case OP_MATMUL_Q80: {
      const cols = arg(a, 5), d = arg(a, 6), rows = arg(a, 7), gs = arg(a, 8);
      const chunk = matmulChunk(d, n);
      for (let s = claim(a, chunk); s < d; s = claim(a, chunk)) {
        matmulQ80(ptr(a, 0), ptr(a, 1), ptr(a, 2), ptr(a, 3), ptr(a, 4), cols, d, rows, gs, arg(a, 9) != 0, s, min(s + chunk, d));
      }
      break;
    }
    case OP_MATMUL_HALF: {
      const cols = arg(a, 3), d = arg(a, 4), rows = arg(a, 5);
      const minChunk = max(4, ((d + n * 16 - 1) / (n * 16) + 3) & ~3);
      for (let s = claimGuided(a, d, n, minChunk); s < d; s = claimGuided(a, d, n, minChunk)) {
        if (arg(a, 6) != 0) matmulHalf<i16>(ptr(a, 0), ptr(a, 1), ptr(a, 2), cols, d, rows, s, claimedEnd);
        else matmulHalf<u16>(ptr(a, 0), ptr(a, 1), ptr(a, 2), cols, d, rows, s, claimedEnd);
      }
      break;
    }
    case OP_MATMUL_Q40: {
      const cols = arg(a, 4), d = arg(a, 5), rows = arg(a, 6);
      const chunk = matmulChunk(d, n);
      for (let s = claim(a, chunk); s < d; s = claim(a, chunk)) {
        matmulQ40(ptr(a, 0), ptr(a, 1), ptr(a, 2), ptr(a, 3), cols, d, rows, s, min(s + chunk, d));
      }
      break;
    }
    case OP_MATMUL_Q4K:
    case OP_MATMUL_Q5K: {
      const cols = arg(a, 5), d = arg(a, 6), rows = arg(a, 7);
      const chunk = matmulChunk(d, n);
      for (let s = claim(a, chunk); s < d; s = claim(a, chunk)) {
        matmulQ45K(ptr(a, 0), ptr(a, 1), ptr(a, 2), ptr(a, 3), ptr(a, 4), cols, d, rows, s, min(s + chunk, d), op == OP_MATMUL_Q5K);
      }
      break;
    }
    case OP_MATMUL_Q6K: {
      const cols = arg(a, 4), d = arg(a, 5), rows = arg(a, 6);
      const chunk = matmulChunk(d, n);
      for (let s = claim(a, chunk); s < d; s = claim(a, chunk)) {
        matmulQ6K(ptr(a, 0), ptr(a, 1), ptr(a, 2), ptr(a, 3), cols, d, rows, s, min(s + chunk, d));
      }
      break;
    }
    case OP_QUANTIZE_K: {
      // each thread sums the groups it has just quantized (still in cache), with no barrier between
      const groups = arg(a, 2) * (arg(a, 1) / 256);
      const chunk = max(1, groups / (n * 4));
      for (let s = claim(a, chunk); s < groups; s = claim(a, chunk)) {
        const e = min(s + chunk, groups);
        quantize(ptr(a, 0), ptr(a, 3), ptr(a, 4), 256, s, e);
        kSums(ptr(a, 3), ptr(a, 5), s * 8, e * 8);
      }
      break;
    }
    case OP_ROPE: {
      const cols = arg(a, 1), rows = arg(a, 2), period = arg(a, 4);
      const x = ptr(a, 0), table = ptr(a, 3);
      for (let r = chunkStart(rows, tid, n, 1), e = chunkEnd(rows, tid, n, 1); r < e; r++) {
        rope(x + (<usize>(r * cols) << 2), cols, table + (<usize>(r * period) << 3), period);
      }
      break;
    }
    case OP_ATTENTION: {
      const rows = arg(a, 5), nHeads = arg(a, 6);
      const units = rows * nHeads;
      const scratch = ptr(a, 9) + <usize>tid * ptr(a, 10);
      for (let u = claim(a, 1); u < units; u = claim(a, 1)) {
        const r = u / nHeads;
        const row = ptr(a, 4) + (<usize>r << 3);
        const last = load<i32>(row), slotOff = <usize>load<u32>(row + 4);
        if (arg(a, 11) != 0) {
          attentionHead<u16>(ptr(a, 0), ptr(a, 1), ptr(a, 2) + slotOff, ptr(a, 3) + slotOff, last, r, u % nHeads,
            nHeads, arg(a, 7), arg(a, 8), scratch);
        } else {
          attentionHead<f32>(ptr(a, 0), ptr(a, 1), ptr(a, 2) + slotOff, ptr(a, 3) + slotOff, last, r, u % nHeads,
            nHeads, arg(a, 7), arg(a, 8), scratch);
        }
      }
      break;
    }
    case OP_STORE_F16: {
      const count = arg(a, 2);
      const s = chunkStart(count, tid, n, 8), e = chunkEnd(count, tid, n, 8);
      storeF16(ptr(a, 0), ptr(a, 1), s, e);
      break;
    }
    case OP_SWIGLU: {
      const count = arg(a, 3);
      const s = chunkStart(count, tid, n, 16), e = chunkEnd(count, tid, n, 16);
      swiglu(ptr(a, 0), ptr(a, 1), ptr(a, 2), s, e);
      break;
    }
    case OP_ADD: {
      const count = arg(a, 3);
      const s = chunkStart(count, tid, n, 16), e = chunkEnd(count, tid, n, 16);
      add(ptr(a, 0), ptr(a, 1), ptr(a, 2), s, e);
      break;
    }
    case OP_ARGMAX: {
      // one row of logits per thread in turn
      const cols = arg(a, 2), rows = arg(a, 3);
      for (let r = tid; r < rows; r += n) store<i32>(ptr(a, 0) + (<usize>r << 2), argmax(ptr(a, 1) + (<usize>r * <usize>cols << 2), cols));
      break;
    }
    default:
      unreachable();
  }
}

// ---------------------------------------------------------------------------
// exp, rounded exactly as JavaScript's Math.exp rounds it in V8 (Node,
// Chrome), so that softmax and SiLU here give the scalar kernels' bits.
// V8's Math.exp is the classic fdlibm algorithm; the same steps with the same
// constants give the same double, which the backend checks at startup: if the
// host's Math.exp disagrees (another engine), EXP_FLAG makes every exp call it.
//
// The math. Write x = k ln2 + r, k an integer and |r| <= ln2 / 2, so that
// exp(x) = 2^k exp(r). Two things keep r accurate: ln2 is split into LN2_HI
// (its low 32 bits zero, so k * LN2_HI is exact) plus LN2_LO, and r is carried
// as the pair hi - lo. On that interval exp(r) = 1 + 2r / (R(r) - r), where
// R(r) = r (e^r + 1) / (e^r - 1) is even and smooth (2 + r^2/6 - ...), so a
// short polynomial in r^2 fits it: R(r) ~ 2 + r^2 (A1 + A2 r^2 + ... + A5 r^8).
// With c = r - r^2 (A1 + ... + A5 r^8) = 2 + r - R(r), that is
// exp(r) = 1 + r + r c / (2 - c), evaluated as 1 - ((lo - r c / (2 - c)) - hi)
// to put the small terms together before the large ones.

/** Nonzero: use the host's Math.exp (set by the backend when kernelExp differs from it). */
const EXP_FLAG: usize = CTL_BASE + 36;

const LN2_HI: f64 = 6.93147180369123816490e-01; // ln 2 to 32 significant bits
const LN2_LO: f64 = 1.90821492927058770002e-10; // ln 2 - LN2_HI
const INV_LN2: f64 = 1.44269504088896338700e+00;
// The minimax fit of R(r) above on [-ln2/2, ln2/2] (error below 2^-59). Its
// exact coefficients are part of what Math.exp returns: another fit would
// round differently.
const A1: f64 = 1.66666666666666019037e-01;
const A2: f64 = -2.77777777770155933842e-03;
const A3: f64 = 6.61375632143793436117e-05;
const A4: f64 = -1.65339022054652515390e-06;
const A5: f64 = 4.13813679705723846039e-08;
const EXP_MAX: f64 = 7.09782712893383973096e+02; // above: the result overflows to +Infinity
const EXP_MIN: f64 = -7.45133219101941108420e+02; // below: it underflows to 0
const E: f64 = 2.718281828459045; // exp(1), correctly rounded: the one argument answered directly

/** 2^k for an exponent of a normal double (-1022 <= k <= 1023), built from its bits. */
@inline function pow2(k: i32): f64 {
  return reinterpret<f64>(<u64>(1023 + k) << 52);
}

function kernelExp(x: f64): f64 {
  const bits = reinterpret<u64>(x);
  const negative = (bits >> 63) != 0;
  const top = <u32>(bits >> 32) & 0x7fffffff; // the high word of |x|: its exponent and leading bits

  if (top >= 0x40862e42) { // |x| >= ~709.78: NaN, infinities, overflow, underflow
    if (top >= 0x7ff00000) {
      if ((bits << 1) != 0xffe0000000000000) return x + x; // NaN
      return negative ? 0.0 : x; // exp(-Infinity) = 0, exp(+Infinity) = +Infinity
    }
    if (x > EXP_MAX) return Infinity;
    if (x < EXP_MIN) return 0.0;
  }
  if (top < 0x3e300000) return 1.0 + x; // |x| < 2^-28: 1 + x is exp(x) rounded

  // Reduce: k and r = hi - lo (k = 0 and r = x when |x| <= ln2 / 2).
  let k: i32 = 0;
  let hi: f64 = 0, lo: f64 = 0, r = x;
  if (top > 0x3fd62e42) { // |x| > ln2 / 2
    if (top < 0x3ff0a2b2) { // |x| < 1.5 ln2: k = +1 or -1
      if (x == 1.0) return E;
      k = negative ? -1 : 1;
      hi = negative ? x + LN2_HI : x - LN2_HI;
      lo = negative ? -LN2_LO : LN2_LO;
    } else {
      k = <i32>(INV_LN2 * x + (negative ? -0.5 : 0.5)); // round to nearest, ties away from 0
      hi = x - <f64>k * LN2_HI;
      lo = <f64>k * LN2_LO;
    }
    r = hi - lo;
  }

  const r2 = r * r;
  const c = r - r2 * (A1 + r2 * (A2 + r2 * (A3 + r2 * (A4 + r2 * A5))));
  if (k == 0) return 1.0 - ((r * c) / (c - 2.0) - r);
  const y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);

  // Scale by 2^k in steps that stay normal: 2^1024 is not a double, and below
  // 2^-1021 the product goes through 2^(k + 1000) first.
  if (k == 1024) return y * 2.0 * pow2(1023);
  if (k >= -1021) return y * pow2(k);
  return y * pow2(k + 1000) * pow2(-1000);
}

/** exp as the scalar kernels compute it (Math.exp). */
@inline function exp64(x: f64): f64 {
  return load<i32>(EXP_FLAG) != 0 ? hostExp(x) : kernelExp(x);
}

/** For the backend's startup check against Math.exp. */
export function wasmExp(x: f64): f64 {
  return kernelExp(x);
}

// ---------------------------------------------------------------------------
// Kernels. Addresses are byte addresses; sizes are element counts.

@inline function at(base: usize, i: i32): usize {
  return base + (<usize>i << 2);
}

/** o = w * (x / sqrt(mean(x^2) + eps)): the sum of squares is sequential, as in run.c. */
function rmsnorm(o: usize, x: usize, w: usize, cols: i32, eps: f32): void {
  let ss: f32 = 0;
  for (let j = 0; j < cols; j++) {
    const v = load<f32>(at(x, j));
    ss += v * v;
  }
  ss = ss / <f32>cols + eps;
  const inv: f32 = <f32>1 / sqrt<f32>(ss);
  const vinv = f32x4.splat(inv);
  let j = 0;
  for (; j + 4 <= cols; j += 4) {
    v128.store(at(o, j), f32x4.mul(v128.load(at(w, j)), f32x4.mul(vinv, v128.load(at(x, j)))));
  }
  for (; j < cols; j++) store<f32>(at(o, j), load<f32>(at(w, j)) * (inv * load<f32>(at(x, j))));
}

/** Horizontal sum of a f32x4 in a fixed order: (l0 + l2) + (l1 + l3). */
@inline function hsum(v: v128): f32 {
  const s = f32x4.add(v, f32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

/**
 * Dot product of one f32 weight row with one input row: sixteen f32 lanes
 * (four f32x4 accumulators) over blocks of 16, blocks of 4 into the first,
 * then the lanes added in a fixed order, then the last n % 4 in order. Every
 * path below gives each output exactly this sum, so results do not depend on
 * the thread count or on batching.
 */
@inline function dotF32(w: usize, x: usize, cols: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const end16 = cols & ~15, end4 = cols & ~3;
  let j = 0;
  for (; j < end16; j += 16) {
    const o = <usize>j << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(w + o), v128.load(x + o)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(w + o, 16), v128.load(x + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(w + o, 32), v128.load(x + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(w + o, 48), v128.load(x + o, 48)));
  }
  for (; j < end4; j += 4) a0 = f32x4.add(a0, f32x4.mul(v128.load(at(w, j)), v128.load(at(x, j))));
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; j < cols; j++) s += load<f32>(at(w, j)) * load<f32>(at(x, j));
  return s;
}

/** dotF32 of one weight row with two input rows at once (the weight is loaded once). */
@inline function dotF32x2(w: usize, x: usize, y: usize, cols: i32, out: usize, outStride: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const end16 = cols & ~15, end4 = cols & ~3;
  let j = 0;
  for (; j < end16; j += 16) {
    const o = <usize>j << 2;
    const w0 = v128.load(w + o), w1 = v128.load(w + o, 16), w2 = v128.load(w + o, 32), w3 = v128.load(w + o, 48);
    a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(x + o)));
    b0 = f32x4.add(b0, f32x4.mul(w0, v128.load(y + o)));
    a1 = f32x4.add(a1, f32x4.mul(w1, v128.load(x + o, 16)));
    b1 = f32x4.add(b1, f32x4.mul(w1, v128.load(y + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(w2, v128.load(x + o, 32)));
    b2 = f32x4.add(b2, f32x4.mul(w2, v128.load(y + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(w3, v128.load(x + o, 48)));
    b3 = f32x4.add(b3, f32x4.mul(w3, v128.load(y + o, 48)));
  }
  for (; j < end4; j += 4) {
    const w0 = v128.load(at(w, j));
    a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(at(x, j))));
    b0 = f32x4.add(b0, f32x4.mul(w0, v128.load(at(y, j))));
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  let t = hsum(f32x4.add(f32x4.add(b0, b1), f32x4.add(b2, b3)));
  for (; j < cols; j++) {
    const wv = load<f32>(at(w, j));
    s += wv * load<f32>(at(x, j));
    t += wv * load<f32>(at(y, j));
  }
  store<f32>(out, s);
  store<f32>(out + outStride, t);
}

/**
 * out[r, i] = sum_j w[i, j] * x[r, j] for rows r < `rows` and outputs i in
 * [i0, i1). One weight row at a time: the weights stream through memory in
 * order (interleaving several rows' streams defeats the hardware prefetcher
 * and was 4x slower on matrices larger than the cache). With a batch, each
 * weight row meets every input row while it is in L1.
 */
function matmulF32(out: usize, x: usize, w: usize, cols: i32, d: i32, rows: i32, i0: i32, i1: i32): void {
  const rowBytes = <usize>cols << 2;
  const outStride = <usize>d << 2;
  if (rows == 1) {
    for (let i = i0; i < i1; i++) store<f32>(at(out, i), dotF32(w + <usize>i * rowBytes, x, cols));
    return;
  }
  for (let i = i0; i < i1; i++) {
    const wi = w + <usize>i * rowBytes;
    let r = 0;
    for (; r + 2 <= rows; r += 2) {
      const xr = x + <usize>r * rowBytes;
      dotF32x2(wi, xr, xr + rowBytes, cols, at(out, r * d + i), outStride);
    }
    if (r < rows) store<f32>(at(out, r * d + i), dotF32(wi, x + <usize>r * rowBytes, cols));
  }
}

/**
 * runq.c's quantize() for groups [g0, g1) of consecutive `gs` values of x:
 * scale = max|x| / 127 (f32 division), q = round(x / scale) with halves away
 * from zero (C's round; f32x4.nearest would round them to even). An all-zero
 * group divides 0 by 0 and stores 0, as x86 C does. The values are stored as
 * i16 (sign-extended once here, so the matmul multiplies 16-bit lanes).
 */
function quantize(x: usize, xq: usize, xs: usize, gs: i32, g0: i32, g1: i32): void {
  const half = f32x4.splat(0.5);
  const one = f32x4.splat(1);
  const signBit = i32x4.splat(0x80000000);
  for (let g = g0; g < g1; g++) {
    const base = g * gs;
    const xg = at(x, base);
    let j = 0;
    let vmax = f32x4.splat(0);
    for (; j + 4 <= gs; j += 4) vmax = f32x4.max(vmax, f32x4.abs(v128.load(at(xg, j))));
    let wmax: f32 = max(max(f32x4.extract_lane(vmax, 0), f32x4.extract_lane(vmax, 1)),
      max(f32x4.extract_lane(vmax, 2), f32x4.extract_lane(vmax, 3)));
    for (; j < gs; j++) wmax = max(wmax, abs<f32>(load<f32>(at(xg, j))));
    const scale: f32 = wmax / <f32>127;
    store<f32>(at(xs, g), scale);
    const vscale = f32x4.splat(scale);
    const qg = xq + (<usize>base << 1);
    j = 0;
    for (; j + 4 <= gs; j += 4) {
      const v = f32x4.div(v128.load(at(xg, j)), vscale);
      const t = f32x4.trunc(v);
      // |v - t| >= 0.5 rounds away from zero: add copysign(1, v).
      const up = f32x4.ge(f32x4.abs(f32x4.sub(v, t)), half);
      const step = v128.or(v128.and(v, signBit), one);
      const r = f32x4.add(t, v128.and(step, up));
      const q = i32x4.trunc_sat_f32x4_s(r); // NaN (0 / 0) -> 0
      store<i16>(qg + (<usize>j << 1), <i16>i32x4.extract_lane(q, 0));
      store<i16>(qg + (<usize>j << 1), <i16>i32x4.extract_lane(q, 1), 2);
      store<i16>(qg + (<usize>j << 1), <i16>i32x4.extract_lane(q, 2), 4);
      store<i16>(qg + (<usize>j << 1), <i16>i32x4.extract_lane(q, 3), 6);
    }
    for (; j < gs; j++) {
      const v: f32 = load<f32>(at(xg, j)) / scale;
      let q: i32 = 0;
      if (v == v) {
        const t = trunc<f32>(v);
        q = <i32>t;
        if (abs<f32>(v - t) >= <f32>0.5) q += v < 0 ? -1 : 1;
      }
      store<i16>(qg + (<usize>j << 1), <i16>q);
    }
  }
}

/** Sum of the four i32 lanes of each of a, b, c, d, as one i32x4 (exact: integer adds). */
@inline function reduce4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(i32x4.shuffle(a, b, 0, 1, 4, 5), i32x4.shuffle(a, b, 2, 3, 6, 7));
  const cd = i32x4.add(i32x4.shuffle(c, d, 0, 1, 4, 5), i32x4.shuffle(c, d, 2, 3, 6, 7));
  return i32x4.add(i32x4.shuffle(ab, cd, 0, 2, 4, 6), i32x4.shuffle(ab, cd, 1, 3, 5, 7));
}

/** int32 dot product of 16 int8 weights with 16 i16 activations, added to acc. */
@inline function dot16(acc: v128, wp: usize, xp: usize): v128 {
  const lo = i32x4.dot_i16x8_s(v128.load_ext<i8>(wp), v128.load(xp));
  const hi = i32x4.dot_i16x8_s(v128.load_ext<i8>(wp, 8), v128.load(xp, 16));
  return i32x4.add(acc, i32x4.add(lo, hi));
}

/** Integer dot product of one group: `gs` (a multiple of 16) int8 weights with i16 activations, as i32x4 partial sums. */
@inline function groupDot(w: usize, x: usize, gs: i32): v128 {
  let acc = i32x4.splat(0);
  for (let k = 0; k < gs; k += 16) acc = dot16(acc, w + <usize>k, x + (<usize>k << 1));
  return acc;
}

/**
 * One output of runq.c's matmul: for each group an exact int32 dot product,
 * then val += ((f32)ival * wScale) * xScale in f32, group after group. Four
 * groups' integer sums and scalings run side by side in SIMD lanes; the f32
 * additions into val stay in group order.
 */
function dotQ80(w: usize, ws: usize, x: usize, xs: usize, cols: i32, gs: i32): f32 {
  const groups = cols / gs;
  let val: f32 = 0;
  let g = 0;
  if ((gs & 15) == 0) {
    for (; g + 4 <= groups; g += 4) {
      const k = g * gs;
      const a0 = groupDot(w + <usize>k, x + (<usize>k << 1), gs);
      const a1 = groupDot(w + <usize>(k + gs), x + (<usize>(k + gs) << 1), gs);
      const a2 = groupDot(w + <usize>(k + 2 * gs), x + (<usize>(k + 2 * gs) << 1), gs);
      const a3 = groupDot(w + <usize>(k + 3 * gs), x + (<usize>(k + 3 * gs) << 1), gs);
      const ival = f32x4.convert_i32x4_s(reduce4(a0, a1, a2, a3));
      const p = f32x4.mul(f32x4.mul(ival, v128.load(at(ws, g))), v128.load(at(xs, g)));
      val += f32x4.extract_lane(p, 0);
      val += f32x4.extract_lane(p, 1);
      val += f32x4.extract_lane(p, 2);
      val += f32x4.extract_lane(p, 3);
    }
    for (; g < groups; g++) {
      const k = g * gs;
      const a = groupDot(w + <usize>k, x + (<usize>k << 1), gs);
      const s = i32x4.add(a, i32x4.shuffle(a, a, 2, 3, 0, 1));
      const ival = i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
      val += (<f32>ival * load<f32>(at(ws, g))) * load<f32>(at(xs, g));
    }
    return val;
  }
  for (; g < groups; g++) {
    let ival: i32 = 0;
    for (let k = g * gs; k < (g + 1) * gs; k++) ival += <i32>load<i8>(w + <usize>k) * <i32>load<i16>(x + (<usize>k << 1));
    val += (<f32>ival * load<f32>(at(ws, g))) * load<f32>(at(xs, g));
  }
  return val;
}

/**
 * Four outputs of runq.c's matmul from a block of four weight rows stored
 * interleaved (see interleaveQ80): group g of the four rows is 4 * gs
 * consecutive bytes and their scales one f32x4, so the block streams through
 * memory in order and each activation load serves four rows. Lane r of `val`
 * adds its rows' groups in order, exactly as dotQ80 does.
 */
@inline function blockQ80(wp: usize, sp: usize, x: usize, xs: usize, groups: i32, gs: i32): v128 {
  let val = f32x4.splat(0);
  const gs2 = <usize>(2 * gs), gs3 = <usize>(3 * gs);
  for (let g = 0; g < groups; g++) {
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
    for (let k = 0; k < gs; k += 16) {
      const xp = x + (<usize>k << 1);
      const w = wp + <usize>k;
      a0 = dot16(a0, w, xp);
      a1 = dot16(a1, w + <usize>gs, xp);
      a2 = dot16(a2, w + gs2, xp);
      a3 = dot16(a3, w + gs3, xp);
    }
    const ival = f32x4.convert_i32x4_s(reduce4(a0, a1, a2, a3));
    val = f32x4.add(val, f32x4.mul(f32x4.mul(ival, v128.load(sp)), f32x4.splat(load<f32>(at(xs, g)))));
    wp += <usize>(4 * gs);
    sp += 16;
    x += <usize>gs << 1;
  }
  return val;
}

/**
 * blockQ80 for two input rows at once (batched decoding, prompts): each
 * weight vector is loaded and widened once for both rows. Eight weights of
 * each of the four rows at a time keep 4 weight, 2 input and 8 accumulator
 * vectors in registers. The integer sums are exact, so their order does not
 * matter; the f32 steps per group are blockQ80's, so each output has the
 * same bits as blockQ80 gives it alone. Stores row x's outputs at `outX` and
 * row y's at `outY`.
 */
@inline function blockQ80x2(outX: usize, outY: usize, wp: usize, sp: usize, x: usize, xs: usize, y: usize, ys: usize, groups: i32, gs: i32): void {
  let valX = f32x4.splat(0), valY = f32x4.splat(0);
  const gs2 = <usize>(2 * gs), gs3 = <usize>(3 * gs);
  for (let g = 0; g < groups; g++) {
    let x0 = i32x4.splat(0), x1 = i32x4.splat(0), x2 = i32x4.splat(0), x3 = i32x4.splat(0);
    let y0 = i32x4.splat(0), y1 = i32x4.splat(0), y2 = i32x4.splat(0), y3 = i32x4.splat(0);
    for (let k = 0; k < gs; k += 8) {
      const w = wp + <usize>k;
      const xv = v128.load(x + (<usize>k << 1)), yv = v128.load(y + (<usize>k << 1));
      const w0 = v128.load_ext<i8>(w), w1 = v128.load_ext<i8>(w + <usize>gs);
      const w2 = v128.load_ext<i8>(w + gs2), w3 = v128.load_ext<i8>(w + gs3);
      x0 = i32x4.add(x0, i32x4.dot_i16x8_s(w0, xv));
      y0 = i32x4.add(y0, i32x4.dot_i16x8_s(w0, yv));
      x1 = i32x4.add(x1, i32x4.dot_i16x8_s(w1, xv));
      y1 = i32x4.add(y1, i32x4.dot_i16x8_s(w1, yv));
      x2 = i32x4.add(x2, i32x4.dot_i16x8_s(w2, xv));
      y2 = i32x4.add(y2, i32x4.dot_i16x8_s(w2, yv));
      x3 = i32x4.add(x3, i32x4.dot_i16x8_s(w3, xv));
      y3 = i32x4.add(y3, i32x4.dot_i16x8_s(w3, yv));
    }
    const scales = v128.load(sp);
    const ix = f32x4.convert_i32x4_s(reduce4(x0, x1, x2, x3));
    valX = f32x4.add(valX, f32x4.mul(f32x4.mul(ix, scales), f32x4.splat(load<f32>(at(xs, g)))));
    const iy = f32x4.convert_i32x4_s(reduce4(y0, y1, y2, y3));
    valY = f32x4.add(valY, f32x4.mul(f32x4.mul(iy, scales), f32x4.splat(load<f32>(at(ys, g)))));
    wp += <usize>(4 * gs);
    sp += 16;
    x += <usize>gs << 1;
    y += <usize>gs << 1;
  }
  v128.store(outX, valX);
  v128.store(outY, valY);
}

/**
 * runq.c's matmul for outputs [i0, i1) of every input row. `blocked` = the
 * first d & ~3 rows are interleaved in blocks of four (i0 is a multiple of 4);
 * the rest, and every row of a tensor that is not, are in the standard layout.
 */
function matmulQ80(out: usize, xq: usize, xs: usize, wq: usize, ws: usize,
  cols: i32, d: i32, rows: i32, gs: i32, blocked: bool, i0: i32, i1: i32): void {
  const groups = cols / gs;
  let i = i0;
  if (blocked) {
    const d4 = d & ~3;
    for (; i + 4 <= i1 && i < d4; i += 4) {
      const wp = wq + <usize>i * <usize>cols;
      const sp = at(ws, i * groups);
      let r = 0;
      for (; r + 2 <= rows; r += 2) {
        blockQ80x2(at(out, r * d + i), at(out, (r + 1) * d + i), wp, sp, xq + (<usize>(r * cols) << 1), at(xs, r * groups),
          xq + (<usize>((r + 1) * cols) << 1), at(xs, (r + 1) * groups), groups, gs);
      }
      if (r < rows) v128.store(at(out, r * d + i), blockQ80(wp, sp, xq + (<usize>(r * cols) << 1), at(xs, r * groups), groups, gs));
    }
  }
  for (; i < i1; i++) {
    const wi = wq + <usize>i * <usize>cols;
    const si = at(ws, i * groups);
    for (let r = 0; r < rows; r++) {
      store<f32>(at(out, r * d + i), dotQ80(wi, si, xq + (<usize>(r * cols) << 1), at(xs, r * groups), cols, gs));
    }
  }
}

/**
 * Rearranges a standard-layout Q8_0 matrix [d, cols] in place for blockQ80:
 * in each block of four rows, values go group by group ([group][row][gs]) and
 * scales [group][row]. Rows past d & ~3 stay as they are. `tmp` holds one
 * block (4 * cols bytes + 16 * groups).
 */
export function interleaveQ80(wq: usize, ws: usize, cols: i32, d: i32, gs: i32, tmp: usize): void {
  const groups = cols / gs;
  const blockBytes = <usize>(4 * cols);
  for (let i = 0; i + 4 <= d; i += 4) {
    const wp = wq + <usize>i * <usize>cols;
    memory.copy(tmp, wp, blockBytes);
    for (let g = 0; g < groups; g++) {
      for (let r = 0; r < 4; r++) {
        memory.copy(wp + <usize>((g * 4 + r) * gs), tmp + <usize>(r * cols + g * gs), <usize>gs);
      }
    }
    const sp = at(ws, i * groups);
    memory.copy(tmp, sp, <usize>(16 * groups));
    for (let g = 0; g < groups; g++) {
      for (let r = 0; r < 4; r++) store<f32>(at(sp, g * 4 + r), load<f32>(at(tmp, r * groups + g)));
    }
  }
}

// ---------------------------------------------------------------------------
// f16 and bf16 weights. The type parameter picks the element type at compile
// time: u16 for f16, i16 for bf16 (a marker only; both are 16-bit patterns).

/** 2^112: scales an f16's exponent, shifted into an f32's, to its own bias. */
const F16_RESCALE: u32 = 0x77800000;

/**
 * Four 16-bit weights (in the low halves of u32 lanes) to f32, exactly.
 * bf16 is the high half of an f32. f16: shifting sign-less bits left by 13
 * puts the exponent and fraction where an f32 has them, but with f16's bias;
 * multiplying by 2^112 corrects the bias, subnormals included (wasm never
 * flushes them); exponent 31 (inf, NaN) then gets f32's all-ones exponent,
 * and the sign goes back on.
 */
@inline function widen4<T>(h: v128): v128 {
  if (isSigned<T>()) return i32x4.shl(h, 16);
  const em = v128.and(h, i32x4.splat(0x7fff));
  let v = f32x4.mul(i32x4.shl(em, 13), f32x4.splat(reinterpret<f32>(F16_RESCALE)));
  const special = i32x4.eq(v128.and(h, i32x4.splat(0x7c00)), i32x4.splat(0x7c00));
  v = v128.or(v, v128.and(special, i32x4.splat(0x7f800000)));
  return v128.or(v, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/**
 * The fast path for f16s whose exponents are all 1..30 (normal numbers, as
 * nearly all weights are; a block of 16 with any other takes widen4): the
 * f32 bits are built in 16-bit lanes, eight at a time, with no multiply. The
 * high half (f16High) is the sign, the exponent rebiased by 127 - 15 = 112
 * and the fraction's top 7 bits; the low half (h << 13) the fraction's last
 * 3 bits at the top. f16Lo4/f16Hi4 interleave them into the f32x4s of
 * elements 0..3 and 4..7. 1.3-1.4x faster than widen4 alone.
 */
@inline function f16High(h: v128): v128 {
  return v128.or(i16x8.add(i16x8.shr_u(v128.and(h, i16x8.splat(0x7fff)), 3), i16x8.splat(0x3800)), v128.and(h, i16x8.splat(<i16>0x8000)));
}
@inline function f16Lo4(lo: v128, hi: v128): v128 {
  return i8x16.shuffle(lo, hi, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
}
@inline function f16Hi4(lo: v128, hi: v128): v128 {
  return i8x16.shuffle(lo, hi, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
}
/** Whether any of sixteen f16s is zero, subnormal, infinite or NaN (exponent 0 or 31): those take widen4. */
@inline function f16Special(h0: v128, h1: v128): bool {
  const m = i16x8.splat(0x7c00), z = i16x8.splat(0);
  const e0 = v128.and(h0, m), e1 = v128.and(h1, m);
  return v128.any_true(v128.or(v128.or(i16x8.eq(e0, z), i16x8.eq(e0, m)), v128.or(i16x8.eq(e1, z), i16x8.eq(e1, m))));
}

/** One 16-bit weight to f32, as widen4. */
@inline function widen1<T>(h: u32): f32 {
  if (isSigned<T>()) return reinterpret<f32>(h << 16);
  let v = reinterpret<f32>((h & 0x7fff) << 13) * reinterpret<f32>(F16_RESCALE);
  let bits = reinterpret<u32>(v);
  if ((h & 0x7c00) == 0x7c00) bits |= 0x7f800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/**
 * dotF32 with 16-bit weights: the same sixteen f32 lanes and the same order
 * of additions over the widened values, so an f16 matrix gives what its
 * f32 widening gives through MATMUL_F32, reading half the bytes.
 */
@inline function dotHalf<T>(w: usize, x: usize, cols: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const end16 = cols & ~15, end4 = cols & ~3;
  let j = 0;
  for (; j < end16; j += 16) {
    const o = <usize>j << 2;
    const h0 = v128.load(w + (<usize>j << 1)), h1 = v128.load(w + (<usize>j << 1), 16);
    let w0: v128, w1: v128, w2: v128, w3: v128;
    if (!isSigned<T>() && !f16Special(h0, h1)) {
      const hi0 = f16High(h0), lo0 = i16x8.shl(h0, 13), hi1 = f16High(h1), lo1 = i16x8.shl(h1, 13);
      w0 = f16Lo4(lo0, hi0); w1 = f16Hi4(lo0, hi0); w2 = f16Lo4(lo1, hi1); w3 = f16Hi4(lo1, hi1);
    } else {
      w0 = widen4<T>(i32x4.extend_low_i16x8_u(h0)); w1 = widen4<T>(i32x4.extend_high_i16x8_u(h0));
      w2 = widen4<T>(i32x4.extend_low_i16x8_u(h1)); w3 = widen4<T>(i32x4.extend_high_i16x8_u(h1));
    }
    a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(x + o)));
    a1 = f32x4.add(a1, f32x4.mul(w1, v128.load(x + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(w2, v128.load(x + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(w3, v128.load(x + o, 48)));
  }
  for (; j < end4; j += 4) {
    a0 = f32x4.add(a0, f32x4.mul(widen4<T>(i32x4.extend_low_i16x8_u(v128.load64_zero(w + (<usize>j << 1)))), v128.load(at(x, j))));
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; j < cols; j++) s += widen1<T>(<u32>load<u16>(w + (<usize>j << 1))) * load<f32>(at(x, j));
  return s;
}

/** dotHalf of one weight row with two input rows (each weight widened once). */
@inline function dotHalfx2<T>(w: usize, x: usize, y: usize, cols: i32, out: usize, outStride: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const end16 = cols & ~15, end4 = cols & ~3;
  let j = 0;
  for (; j < end16; j += 16) {
    const o = <usize>j << 2;
    const h0 = v128.load(w + (<usize>j << 1)), h1 = v128.load(w + (<usize>j << 1), 16);
    let w0: v128, w1: v128, w2: v128, w3: v128;
    if (!isSigned<T>() && !f16Special(h0, h1)) {
      const hi0 = f16High(h0), lo0 = i16x8.shl(h0, 13), hi1 = f16High(h1), lo1 = i16x8.shl(h1, 13);
      w0 = f16Lo4(lo0, hi0); w1 = f16Hi4(lo0, hi0); w2 = f16Lo4(lo1, hi1); w3 = f16Hi4(lo1, hi1);
    } else {
      w0 = widen4<T>(i32x4.extend_low_i16x8_u(h0)); w1 = widen4<T>(i32x4.extend_high_i16x8_u(h0));
      w2 = widen4<T>(i32x4.extend_low_i16x8_u(h1)); w3 = widen4<T>(i32x4.extend_high_i16x8_u(h1));
    }
    a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(x + o)));
    b0 = f32x4.add(b0, f32x4.mul(w0, v128.load(y + o)));
    a1 = f32x4.add(a1, f32x4.mul(w1, v128.load(x + o, 16)));
    b1 = f32x4.add(b1, f32x4.mul(w1, v128.load(y + o, 16)));
    a2 = f32x4.add(a2, f32x4.mul(w2, v128.load(x + o, 32)));
    b2 = f32x4.add(b2, f32x4.mul(w2, v128.load(y + o, 32)));
    a3 = f32x4.add(a3, f32x4.mul(w3, v128.load(x + o, 48)));
    b3 = f32x4.add(b3, f32x4.mul(w3, v128.load(y + o, 48)));
  }
  for (; j < end4; j += 4) {
    const w0 = widen4<T>(i32x4.extend_low_i16x8_u(v128.load64_zero(w + (<usize>j << 1))));
    a0 = f32x4.add(a0, f32x4.mul(w0, v128.load(at(x, j))));
    b0 = f32x4.add(b0, f32x4.mul(w0, v128.load(at(y, j))));
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  let t = hsum(f32x4.add(f32x4.add(b0, b1), f32x4.add(b2, b3)));
  for (; j < cols; j++) {
    const wv = widen1<T>(<u32>load<u16>(w + (<usize>j << 1)));
    s += wv * load<f32>(at(x, j));
    t += wv * load<f32>(at(y, j));
  }
  store<f32>(out, s);
  store<f32>(out + outStride, t);
}

/** matmulF32 with f16 (T = u16) or bf16 (T = i16) weights, outputs [i0, i1) of every input row. */
function matmulHalf<T>(out: usize, x: usize, w: usize, cols: i32, d: i32, rows: i32, i0: i32, i1: i32): void {
  const wBytes = <usize>cols << 1;
  const xBytes = <usize>cols << 2;
  const outStride = <usize>d << 2;
  if (rows == 1) {
    for (let i = i0; i < i1; i++) store<f32>(at(out, i), dotHalf<T>(w + <usize>i * wBytes, x, cols));
    return;
  }
  for (let i = i0; i < i1; i++) {
    const wi = w + <usize>i * wBytes;
    let r = 0;
    for (; r + 2 <= rows; r += 2) {
      const xr = x + <usize>r * xBytes;
      dotHalfx2<T>(wi, xr, xr + xBytes, cols, at(out, r * d + i), outStride);
    }
    if (r < rows) store<f32>(at(out, r * d + i), dotHalf<T>(wi, x + <usize>r * xBytes, cols));
  }
}

// ---------------------------------------------------------------------------
// GGUF Q4_0 weights, in the file's layout: blocks of 18 bytes (an f16 scale
// d, then 16 bytes: element j < 16 the low nibble of byte j, j + 16 its high
// nibble; value (nibble - 8) * d), a row's blocks one after another.

/** A Q4_0 block's 16 nibble bytes as signed values nibble - 8: elements 0..15 (lo) and 16..31 (hi), i8x16 each. */
@inline function q4Lo(wp: usize): v128 {
  return i8x16.sub(v128.and(v128.load(wp + 2), i8x16.splat(0x0f)), i8x16.splat(8));
}
@inline function q4Hi(wp: usize): v128 {
  return i8x16.sub(i8x16.shr_u(v128.load(wp + 2), 4), i8x16.splat(8));
}

/** Integer dot product of a block's unpacked values (q4Lo, q4Hi) with 32 i16 activations, as i32x4 partial sums. */
@inline function q4DotLH(lo: v128, hi: v128, xp: usize): v128 {
  const a = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(lo), v128.load(xp)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(lo), v128.load(xp, 16)));
  const b = i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(hi), v128.load(xp, 32)), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(hi), v128.load(xp, 48)));
  return i32x4.add(a, b);
}

/** Integer dot product of one Q4_0 block's 32 values (nibble - 8) with 32 i16 activations, as i32x4 partial sums. */
@inline function q4Dot(wp: usize, xp: usize): v128 {
  return q4DotLH(q4Lo(wp), q4Hi(wp), xp);
}

/** The four scales of blocks wp, wp + 18, wp + 36, wp + 54 as f32x4: each f16 into the low half of a lane, widened together. */
@inline function q4Scales4(wp: usize): v128 {
  let h = i32x4.splat(0);
  h = v128.load16_lane(wp, h, 0);
  h = v128.load16_lane(wp + 18, h, 2);
  h = v128.load16_lane(wp + 36, h, 4);
  h = v128.load16_lane(wp + 54, h, 6);
  return widen4<u16>(h);
}

/** Adds the four lanes of p to val in lane order (the blocks' order). */
@inline function addLanes(val: f32, p: v128): f32 {
  val += f32x4.extract_lane(p, 0);
  val += f32x4.extract_lane(p, 1);
  val += f32x4.extract_lane(p, 2);
  val += f32x4.extract_lane(p, 3);
  return val;
}

/**
 * dotQ40 for two input rows (x, y) at once: each block is unpacked once and
 * meets both rows' activations; each row's sum is exactly dotQ40's.
 */
function dotQ40x2(w: usize, x: usize, xs: usize, y: usize, ys: usize, blocks: i32, out: usize, outStride: usize): void {
  let vx: f32 = 0, vy: f32 = 0;
  let b = 0;
  for (; b + 4 <= blocks; b += 4) {
    const wp = w + <usize>(b * 18);
    const o = <usize>(b * 32) << 1;
    const l0 = q4Lo(wp), h0 = q4Hi(wp), l1 = q4Lo(wp + 18), h1 = q4Hi(wp + 18);
    const l2 = q4Lo(wp + 36), h2 = q4Hi(wp + 36), l3 = q4Lo(wp + 54), h3 = q4Hi(wp + 54);
    const ix = f32x4.convert_i32x4_s(reduce4(q4DotLH(l0, h0, x + o), q4DotLH(l1, h1, x + o + 64), q4DotLH(l2, h2, x + o + 128), q4DotLH(l3, h3, x + o + 192)));
    const iy = f32x4.convert_i32x4_s(reduce4(q4DotLH(l0, h0, y + o), q4DotLH(l1, h1, y + o + 64), q4DotLH(l2, h2, y + o + 128), q4DotLH(l3, h3, y + o + 192)));
    const dv = q4Scales4(wp);
    vx = addLanes(vx, f32x4.mul(f32x4.mul(ix, dv), v128.load(at(xs, b))));
    vy = addLanes(vy, f32x4.mul(f32x4.mul(iy, dv), v128.load(at(ys, b))));
  }
  for (; b < blocks; b++) {
    const wp = w + <usize>(b * 18);
    const o = <usize>(b * 32) << 1;
    const lo = q4Lo(wp), hi = q4Hi(wp);
    const d = q4Scale(wp);
    const a = q4DotLH(lo, hi, x + o);
    const s = i32x4.add(a, i32x4.shuffle(a, a, 2, 3, 0, 1));
    vx += (<f32>(i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1)) * d) * load<f32>(at(xs, b));
    const c = q4DotLH(lo, hi, y + o);
    const t = i32x4.add(c, i32x4.shuffle(c, c, 2, 3, 0, 1));
    vy += (<f32>(i32x4.extract_lane(t, 0) + i32x4.extract_lane(t, 1)) * d) * load<f32>(at(ys, b));
  }
  store<f32>(out, vx);
  store<f32>(out + outStride, vy);
}

/** A Q4_0 block's scale d (its first two bytes, an f16) as f32. */
@inline function q4Scale(wp: usize): f32 {
  return widen1<u16>(<u32>load<u16>(wp));
}

/**
 * One output of the Q4_0 matmul: per block b an exact int32 dot product of
 * (nibble - 8) with the q8_0 activations, then val += (f32(ival) * d_b) * xs_b
 * in f32, block after block: runq.c's accumulation, so the result equals
 * MATMUL_Q80 on the same weights converted to q8_0 (and the scalar
 * reference). Four blocks' integer sums and scalings share SIMD lanes.
 */
function dotQ40(w: usize, x: usize, xs: usize, blocks: i32): f32 {
  let val: f32 = 0;
  let b = 0;
  for (; b + 4 <= blocks; b += 4) {
    const wp = w + <usize>(b * 18);
    const xp = x + (<usize>(b * 32) << 1);
    const ival = f32x4.convert_i32x4_s(reduce4(q4Dot(wp, xp), q4Dot(wp + 18, xp + 64), q4Dot(wp + 36, xp + 128), q4Dot(wp + 54, xp + 192)));
    val = addLanes(val, f32x4.mul(f32x4.mul(ival, q4Scales4(wp)), v128.load(at(xs, b))));
  }
  for (; b < blocks; b++) {
    const wp = w + <usize>(b * 18);
    const a = q4Dot(wp, x + (<usize>(b * 32) << 1));
    const s = i32x4.add(a, i32x4.shuffle(a, a, 2, 3, 0, 1));
    const ival = i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
    val += (<f32>ival * q4Scale(wp)) * load<f32>(at(xs, b));
  }
  return val;
}

/** The Q4_0 matmul for outputs [i0, i1) of every input row (xq: i16, xs: f32 per 32 values, from QUANTIZE). */
function matmulQ40(out: usize, xq: usize, xs: usize, w: usize, cols: i32, d: i32, rows: i32, i0: i32, i1: i32): void {
  const blocks = cols / 32;
  const rowBytes = <usize>(blocks * 18);
  for (let i = i0; i < i1; i++) {
    const wi = w + <usize>i * rowBytes;
    let r = 0;
    for (; r + 2 <= rows; r += 2) {
      const xr = xq + (<usize>(r * cols) << 1);
      dotQ40x2(wi, xr, at(xs, r * blocks), xr + (<usize>cols << 1), at(xs, (r + 1) * blocks), blocks, at(out, r * d + i), <usize>d << 2);
    }
    if (r < rows) store<f32>(at(out, r * d + i), dotQ40(wi, xq + (<usize>(r * cols) << 1), at(xs, r * blocks), blocks));
  }
}

/**
 * RoPE on one row of `cols` values: pair (x[2p], x[2p+1]) turns by the angle
 * whose (cos, sin) is table[p % period] (computed by the host with Math.cos/sin).
 */
function rope(x: usize, cols: i32, table: usize, period: i32): void {
  for (let i = 0, p = 0; i + 1 < cols; i += 2, p++) {
    if (p == period) p = 0;
    const c = load<f32>(table + (<usize>p << 3)), s = load<f32>(table + (<usize>p << 3), 4);
    const v0 = load<f32>(at(x, i)), v1 = load<f32>(at(x, i + 1));
    store<f32>(at(x, i), v0 * c - v1 * s);
    store<f32>(at(x, i + 1), v0 * s + v1 * c);
  }
}

// ---------------------------------------------------------------------------
// The KV cache: f32, or f16 (half the memory). An f16 cache stores each key
// and value as the nearest f16 (round half to even, as IEEE does; past 65504
// infinity) and attention widens them exactly (widen4/widen1, as the f16
// matmul does), so attention over an f16 cache computes exactly what it
// computes over an f32 cache holding the rounded values.
// attentionHead<T> and scores4<T> take T = f32 or u16 (f16 bits).

/**
 * Four f32s to the bits of the nearest f16s, in the low halves of i32 lanes
 * (@rama/backend's f32ToF16, lane by lane, branch-free). With a = |x|'s bits:
 * - normal f16 (a >= 2^-14): rebias the exponent by 112 and drop 13 fraction
 *   bits, adding 0xfff plus the kept part's last bit first, so that more than
 *   half rounds up and exactly half goes to even (a carry reaches the
 *   exponent, up to 0x7c00 = inf for 65520 <= |x| < 2^16);
 * - subnormal or zero (a < 2^-14): |x| * 2^24 (exact: a power of two) counts
 *   units of 2^-24, and f32x4.nearest rounds it half to even;
 * - |x| >= 2^16 or inf: 0x7c00; NaN: 0x7e00; then the sign.
 */
@inline function f16Bits4(x: v128): v128 {
  const a = v128.and(x, i32x4.splat(0x7fffffff));
  const rebiased = i32x4.sub(a, i32x4.splat(0x38000000));
  const odd = v128.and(i32x4.shr_u(rebiased, 13), i32x4.splat(1));
  const normal = i32x4.shr_u(i32x4.add(rebiased, i32x4.add(i32x4.splat(0xfff), odd)), 13);
  const sub = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(a, f32x4.splat(16777216))));
  let h = v128.bitselect(normal, sub, i32x4.ge_s(a, i32x4.splat(0x38800000)));
  h = v128.bitselect(i32x4.splat(0x7c00), h, i32x4.ge_s(a, i32x4.splat(0x47800000)));
  h = v128.bitselect(i32x4.splat(0x7e00), h, i32x4.gt_s(a, i32x4.splat(0x7f800000)));
  return v128.or(h, i32x4.shr_u(v128.and(x, i32x4.splat(0x80000000)), 16));
}

/** One f32 to the bits of the nearest f16: f16Bits4 for one value. */
@inline function f16Bits1(x: f32): u32 {
  const b = reinterpret<u32>(x);
  const a = b & 0x7fffffff;
  let h: u32;
  if (a > 0x7f800000) h = 0x7e00;
  else if (a >= 0x47800000) h = 0x7c00;
  else if (a >= 0x38800000) h = (a - 0x38000000 + 0xfff + ((a - 0x38000000) >> 13 & 1)) >> 13;
  else h = <u32>(<i32>nearest<f32>(reinterpret<f32>(a) * 16777216));
  return h | (b >> 16 & 0x8000);
}

/** dst[i] = the f16 nearest src[i] (f32), for i in [s, e): KV rows into an f16 cache, eight values per store. */
function storeF16(dst: usize, src: usize, s: i32, e: i32): void {
  let i = s;
  for (; i + 8 <= e; i += 8) {
    const lo = f16Bits4(v128.load(at(src, i))), hi = f16Bits4(v128.load(at(src, i + 4)));
    v128.store(dst + (<usize>i << 1), i16x8.narrow_i32x4_u(lo, hi));
  }
  for (; i < e; i++) store<u16>(dst + (<usize>i << 1), <u16>f16Bits1(load<f32>(at(src, i))));
}

/** Four consecutive KV elements at byte p as f32x4: an f32 cache's as they are, an f16 one's widened exactly. */
@inline function kvLoad4<T>(p: usize): v128 {
  if (sizeof<T>() == 2) return widen4<u16>(i32x4.extend_low_i16x8_u(v128.load64_zero(p)));
  return v128.load(p);
}

/** One KV element at byte p as f32 (kvLoad4 for one). */
@inline function kvLoad1<T>(p: usize): f32 {
  if (sizeof<T>() == 2) return widen1<u16>(<u32>load<u16>(p));
  return load<f32>(p);
}

/**
 * s + the products of query elements i..i+3 with four positions' keys (lane p:
 * position p), added element by element in order. r0..r3 are the positions'
 * elements i..i+3, transposed in registers.
 */
@inline function addScores4(s: v128, r0: v128, r1: v128, r2: v128, r3: v128, qv: v128): v128 {
  const t0 = f32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = f32x4.shuffle(r2, r3, 0, 4, 1, 5);
  const t2 = f32x4.shuffle(r0, r1, 2, 6, 3, 7), t3 = f32x4.shuffle(r2, r3, 2, 6, 3, 7);
  s = f32x4.add(s, f32x4.mul(f32x4.shuffle(t0, t1, 0, 1, 4, 5), f32x4.shuffle(qv, qv, 0, 0, 0, 0)));
  s = f32x4.add(s, f32x4.mul(f32x4.shuffle(t0, t1, 2, 3, 6, 7), f32x4.shuffle(qv, qv, 1, 1, 1, 1)));
  s = f32x4.add(s, f32x4.mul(f32x4.shuffle(t2, t3, 0, 1, 4, 5), f32x4.shuffle(qv, qv, 2, 2, 2, 2)));
  return f32x4.add(s, f32x4.mul(f32x4.shuffle(t2, t3, 2, 3, 6, 7), f32x4.shuffle(qv, qv, 3, 3, 3, 3)));
}

/** s + the product of query element i with four positions' keys (the last headSize % 4 elements). */
@inline function addScores1<T>(s: v128, k0: usize, kvStride: usize, q: usize, i: i32): v128 {
  const ko = <usize>i * sizeof<T>();
  let kv = f32x4.splat(kvLoad1<T>(k0 + ko));
  kv = f32x4.replace_lane(kv, 1, kvLoad1<T>(k0 + kvStride + ko));
  kv = f32x4.replace_lane(kv, 2, kvLoad1<T>(k0 + 2 * kvStride + ko));
  kv = f32x4.replace_lane(kv, 3, kvLoad1<T>(k0 + 3 * kvStride + ko));
  return f32x4.add(s, f32x4.mul(kv, f32x4.splat(load<f32>(q + (<usize>i << 2)))));
}

/**
 * Scores of one query head against four consecutive positions' keys: lane p
 * is sum_i q[i] * k_p[i], added in order of i (run.c's loop), so four
 * positions' sequential sums run side by side. Keys are read four columns at
 * a time and transposed in registers. T: the cache's element (f32, or u16
 * for f16 bits); kvStride is in bytes.
 */
@inline function scores4<T>(q: usize, k0: usize, kvStride: usize, headSize: i32): v128 {
  const k1 = k0 + kvStride, k2 = k1 + kvStride, k3 = k2 + kvStride;
  let s = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= headSize; i += 4) {
    const ko = <usize>i * sizeof<T>();
    s = addScores4(s, kvLoad4<T>(k0 + ko), kvLoad4<T>(k1 + ko), kvLoad4<T>(k2 + ko), kvLoad4<T>(k3 + ko), v128.load(q + (<usize>i << 2)));
  }
  for (; i < headSize; i++) s = addScores1<T>(s, k0, kvStride, q, i);
  return s;
}

/**
 * scores4 of positions 0..3 and 4..7 from k0, in one loop, stored (divided by
 * `vscale`) at att: each lane's sum is a chain of dependent additions, so one
 * scores4 runs at the adder's latency; two independent chains overlap. Each
 * lane adds in scores4's order: the scores are bit-identical.
 */
@inline function scores8<T>(att: usize, q: usize, k0: usize, kvStride: usize, headSize: i32, vscale: v128): void {
  const k1 = k0 + kvStride, k2 = k1 + kvStride, k3 = k2 + kvStride;
  const k4 = k3 + kvStride, k5 = k4 + kvStride, k6 = k5 + kvStride, k7 = k6 + kvStride;
  let s = f32x4.splat(0), u = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= headSize; i += 4) {
    const ko = <usize>i * sizeof<T>();
    const qv = v128.load(q + (<usize>i << 2));
    s = addScores4(s, kvLoad4<T>(k0 + ko), kvLoad4<T>(k1 + ko), kvLoad4<T>(k2 + ko), kvLoad4<T>(k3 + ko), qv);
    u = addScores4(u, kvLoad4<T>(k4 + ko), kvLoad4<T>(k5 + ko), kvLoad4<T>(k6 + ko), kvLoad4<T>(k7 + ko), qv);
  }
  for (; i < headSize; i++) {
    s = addScores1<T>(s, k0, kvStride, q, i);
    u = addScores1<T>(u, k4, kvStride, q, i);
  }
  v128.store(att, f32x4.div(s, vscale));
  v128.store(att, f32x4.div(u, vscale), 16);
}

/**
 * One query head of query row r over positions 0..last, as run.c: scores with a
 * sequential f32 dot product (four positions per f32x4, one per lane: scores4),
 * softmax, then the weighted sum of values (four columns per f32x4).
 * `keys`/`values` point at the row's [seqLen, kvDim] block (its layer and KV slot),
 * of f32 (T = f32) or f16 (T = u16) elements.
 */
function attentionHead<T>(out: usize, q: usize, keys: usize, values: usize, last: i32, r: i32, h: i32,
  nHeads: i32, nKvHeads: i32, headSize: i32, att: usize): void {
  const dim = nHeads * headSize;
  const kvDim = nKvHeads * headSize;
  const eb = <usize>sizeof<T>(); // bytes per cache element
  const kvStride = <usize>kvDim * eb;
  const qh = at(q, r * dim + h * headSize);
  const kvOff = <usize>((h / (nHeads / nKvHeads)) * headSize) * eb;
  const kh = keys + kvOff, vh = values + kvOff;
  const scale: f32 = sqrt<f32>(<f32>headSize);
  const vscale = f32x4.splat(scale);
  const count = last + 1;

  let t = 0;
  for (; t + 8 <= count; t += 8) {
    scores8<T>(at(att, t), qh, kh + <usize>t * kvStride, kvStride, headSize, vscale);
  }
  for (; t + 4 <= count; t += 4) {
    v128.store(at(att, t), f32x4.div(scores4<T>(qh, kh + <usize>t * kvStride, kvStride, headSize), vscale));
  }
  for (; t < count; t++) {
    const k0 = kh + <usize>t * kvStride;
    let s: f32 = 0;
    for (let i = 0; i < headSize; i++) s += load<f32>(at(qh, i)) * kvLoad1<T>(k0 + <usize>i * eb);
    store<f32>(at(att, t), s / scale);
  }

  // softmax, as @rama/core's softmax (llama2.c's): max, exp(x - max) summed in order, divide.
  let mx = load<f32>(att);
  for (let j = 1; j < count; j++) {
    const v = load<f32>(at(att, j));
    if (v > mx) mx = v;
  }
  let sum: f32 = 0;
  for (let j = 0; j < count; j++) {
    const e = <f32>exp64(<f64>(load<f32>(at(att, j)) - mx));
    store<f32>(at(att, j), e);
    sum += e;
  }
  const vsum = f32x4.splat(sum);
  let j = 0;
  for (; j + 4 <= count; j += 4) v128.store(at(att, j), f32x4.div(v128.load(at(att, j)), vsum));
  for (; j < count; j++) store<f32>(at(att, j), load<f32>(at(att, j)) / sum);

  // out = sum_t att[t] * v[t], accumulated position by position.
  const oh = at(out, r * dim + h * headSize);
  const vecEnd = headSize & ~3;
  for (let c = 0; c < vecEnd; c += 16) {
    // up to 16 columns kept in registers across all positions
    const w = min(16, vecEnd - c);
    if (w == 16) {
      let o0 = f32x4.splat(0), o1 = f32x4.splat(0), o2 = f32x4.splat(0), o3 = f32x4.splat(0);
      for (let tt = 0; tt < count; tt++) {
        const a = f32x4.splat(load<f32>(at(att, tt)));
        const vp = vh + <usize>tt * kvStride + <usize>c * eb;
        o0 = f32x4.add(o0, f32x4.mul(a, kvLoad4<T>(vp)));
        o1 = f32x4.add(o1, f32x4.mul(a, kvLoad4<T>(vp + 4 * eb)));
        o2 = f32x4.add(o2, f32x4.mul(a, kvLoad4<T>(vp + 8 * eb)));
        o3 = f32x4.add(o3, f32x4.mul(a, kvLoad4<T>(vp + 12 * eb)));
      }
      const op = oh + (<usize>c << 2);
      v128.store(op, o0);
      v128.store(op, o1, 16);
      v128.store(op, o2, 32);
      v128.store(op, o3, 48);
    } else {
      for (let cc = c; cc < vecEnd; cc += 4) {
        let o0 = f32x4.splat(0);
        for (let tt = 0; tt < count; tt++) {
          const vp = vh + <usize>tt * kvStride + <usize>cc * eb;
          o0 = f32x4.add(o0, f32x4.mul(f32x4.splat(load<f32>(at(att, tt))), kvLoad4<T>(vp)));
        }
        v128.store(oh + (<usize>cc << 2), o0);
      }
    }
  }
  for (let i = vecEnd; i < headSize; i++) {
    let o0: f32 = 0;
    for (let tt = 0; tt < count; tt++) o0 += load<f32>(at(att, tt)) * kvLoad1<T>(vh + <usize>tt * kvStride + <usize>i * eb);
    store<f32>(at(oh, i), o0);
  }
}

/** out = silu(gate) * up over elements [s, e). */
function swiglu(out: usize, gate: usize, up: usize, s: i32, e: i32): void {
  for (let i = s; i < e; i++) {
    const g = load<f32>(at(gate, i));
    const sig: f32 = <f32>1 / (<f32>1 + <f32>exp64(-<f64>g));
    store<f32>(at(out, i), (g * sig) * load<f32>(at(up, i)));
  }
}

/** out = a + b over elements [s, e). */
function add(out: usize, a: usize, b: usize, s: i32, e: i32): void {
  let i = s;
  for (; i + 4 <= e; i += 4) v128.store(at(out, i), f32x4.add(v128.load(at(a, i)), v128.load(at(b, i))));
  for (; i < e; i++) store<f32>(at(out, i), load<f32>(at(a, i)) + load<f32>(at(b, i)));
}

/** Index of the largest value; the lowest index wins a tie. */
/** The largest value's index (the lowest wins a tie), or -1 when a value is NaN or infinite (a broken model). */
function argmax(x: usize, n: i32): i32 {
  let best = 0;
  let mx = load<f32>(x);
  for (let i = 0; i < n; i++) {
    const v = load<f32>(at(x, i));
    if ((reinterpret<u32>(v) & 0x7f800000) == 0x7f800000) return -1;
    if (v > mx) {
      mx = v;
      best = i;
    }
  }
  return best;
}
