/**
 * The default thread count adapts: each program runs either on every thread
 * or on the caller's thread alone, whichever has been faster for programs of
 * its kind lately. On an idle machine that is every thread; when other
 * processes keep the cores busy, a thread that loses its core stalls the
 * others at every barrier (a step has one per op), and one thread is faster
 * (see BENCHMARKS.md, `pnpm bench --contention`).
 *
 * Timings are kept per kind of program (its op count and rows: a decoding
 * step repeats the same kind every token). A choice's estimate is the median
 * of its last few timings: an interruption only ever adds time, and one slow
 * run must not switch the choice (switching back would wait for a probe).
 * The slower choice is tried again (a probe) once the faster one has run for
 * PROBE_RATIO times the slower one's estimate, so probing costs at most
 * ~1/PROBE_RATIO of the run time however slow the other choice is; a probe's
 * timing replaces the older ones (they predate the change of load it looks
 * for). A busier machine is noticed within a few programs, a quieter one
 * within about PROBE_RATIO slow programs' time.
 */

/** Every thread, or the caller's thread alone. */
export type ThreadMode = 'all' | 'solo';

const PROBE_RATIO = 32;
/** Timings kept per choice; the estimate is their median. */
const KEEP = 5;
/** Runs of each choice before choosing (the first timing is dropped: warm-up, workers waking from a long sleep). */
const WARMUP = 3;

interface Kind {
  /** The last timings (ms) of [all, solo]. */
  ms: [number[], number[]];
  runs: [number, number];
  /** Milliseconds run with the faster choice since the slower one was last tried. */
  sinceProbe: number;
}

export class ThreadModeChooser {
  private kinds = new Map<string, Kind>();

  private kind(key: string): Kind {
    let k = this.kinds.get(key);
    if (!k) {
      k = { ms: [[], []], runs: [0, 0], sinceProbe: 0 };
      this.kinds.set(key, k);
    }
    return k;
  }

  /** The choice for the next program of this kind. */
  pick(key: string): ThreadMode {
    const k = this.kind(key);
    // warm-up: alternate until both have enough timings
    if (!warm(k)) return k.runs[0] <= k.runs[1] ? 'all' : 'solo';
    const best = fasterIndex(k);
    return mode(k.sinceProbe >= PROBE_RATIO * median(k.ms[1 - best]) ? 1 - best : best);
  }

  /** Records how long a program of this kind took with `mode`. */
  record(key: string, m: ThreadMode, ms: number): void {
    const k = this.kind(key);
    const i = m === 'all' ? 0 : 1;
    if (++k.runs[i] === 1) return;
    if (warm(k) && i !== fasterIndex(k)) {
      k.ms[i] = [ms]; // a probe
      k.sinceProbe = 0;
      return;
    }
    k.ms[i].push(ms);
    if (k.ms[i].length > KEEP) k.ms[i].shift();
    if (warm(k)) k.sinceProbe += ms;
  }
}

function warm(k: Kind): boolean {
  return k.runs[0] >= WARMUP && k.runs[1] >= WARMUP;
}

function fasterIndex(k: Kind): number {
  return median(k.ms[0]) <= median(k.ms[1]) ? 0 : 1;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function mode(i: number): ThreadMode {
  return i === 0 ? 'all' : 'solo';
}
