/**
 * The default thread count adapts: each program runs either on every thread
 * or on the caller's thread alone, whichever has been faster for programs of
 * its kind lately. On an idle machine that is every thread; when other
 * processes keep the cores busy, a thread that loses its core stalls the
 * others at every barrier (a step has one per op), and one thread is faster
 * (see BENCHMARKS.md, `pnpm bench --contention`).
 *
 * Timings are kept per kind of program (its op count and rows: a decoding
 * step repeats the same kind every token) as moving averages. The slower
 * choice is tried again once the faster one has run for PROBE_RATIO times the
 * slower one's last time, so probing costs at most ~1/PROBE_RATIO of the run
 * time however slow the other choice is, and a change of load is noticed
 * within a few hundred milliseconds.
 */

/** Every thread, or the caller's thread alone. */
export type ThreadMode = 'all' | 'solo';

const PROBE_RATIO = 32;
/** Weight of the newest timing in the moving average. */
const ALPHA = 0.25;
/** Timings of each choice kept before choosing (the first is dropped: warm-up, workers waking from a long sleep). */
const WARMUP = 3;

interface Kind {
  /** Moving average of a program's milliseconds, [all, solo]. */
  ms: [number, number];
  runs: [number, number];
  /** Milliseconds run with the faster choice since the slower one was last tried. */
  sinceProbe: number;
}

export class ThreadModeChooser {
  private kinds = new Map<string, Kind>();

  private kind(key: string): Kind {
    let k = this.kinds.get(key);
    if (!k) {
      k = { ms: [0, 0], runs: [0, 0], sinceProbe: 0 };
      this.kinds.set(key, k);
    }
    return k;
  }

  /** The choice for the next program of this kind. */
  pick(key: string): ThreadMode {
    const k = this.kind(key);
    // warm-up: alternate until both have enough timings
    if (k.runs[0] < WARMUP || k.runs[1] < WARMUP) return k.runs[0] <= k.runs[1] ? 'all' : 'solo';
    const best = k.ms[0] <= k.ms[1] ? 0 : 1;
    const other = 1 - best;
    return k.sinceProbe >= PROBE_RATIO * k.ms[other] ? index(other) : index(best);
  }

  /** Records how long a program of this kind took with `mode`. */
  record(key: string, mode: ThreadMode, ms: number): void {
    const k = this.kind(key);
    const i = mode === 'all' ? 0 : 1;
    const n = ++k.runs[i];
    if (n === 1) return;
    const warm = k.runs[0] >= WARMUP && k.runs[1] >= WARMUP;
    // A run of the slower choice is a probe: its average is stale (the load changed since), so the new time replaces it.
    const probe = warm && k.ms[i] > k.ms[1 - i];
    k.ms[i] = n === 2 || probe ? ms : k.ms[i] + ALPHA * (ms - k.ms[i]);
    if (!warm) return;
    if (probe) k.sinceProbe = 0;
    else k.sinceProbe += ms;
  }
}

function index(i: number): ThreadMode {
  return i === 0 ? 'all' : 'solo';
}
