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
 * `ratio` times the slower one's estimate, so probing costs at most ~1/ratio
 * of the run time however slow the other choice is; a probe's timing replaces
 * the older ones (they predate the change of load it looks for). The ratio
 * starts at MIN_RATIO when the choice changes (a burst of load passes soon:
 * switch back soon) and doubles with every probe that confirms the choice, up
 * to MAX_RATIO. A busier machine is noticed within a few programs.
 *
 * The first program on every thread after one on the caller's alone is not
 * timed: the workers were asleep, and waking them (a sleeping virtual CPU
 * too) took up to ~15 ms in a VM, which made every thread look slow for good.
 * A probe of every thread is therefore two programs, the second one timed.
 */

/** Every thread, or the caller's thread alone. */
export type ThreadMode = 'all' | 'solo';

const MIN_RATIO = 8;
const MAX_RATIO = 64;
/** Timings kept per choice; the estimate is their median. */
const KEEP = 7;
/** Timings of each choice before choosing (after the kind's first run, untimed: page faults, workers starting). */
const WARM = 1;

interface Kind {
  /** The last timings (ms) of [all, solo]. */
  ms: [number[], number[]];
  runs: number;
  timed: [number, number];
  /** Milliseconds run with the faster choice since the slower one was last tried. */
  sinceProbe: number;
  /** Probe once sinceProbe reaches ratio times the slower choice's estimate. */
  ratio: number;
  /** The last run on every thread was not timed (workers waking): run on every thread again. */
  retime: boolean;
}

export class ThreadModeChooser {
  private kinds = new Map<string, Kind>();
  /** The mode of the last program (of any kind): after 'solo', the workers are asleep. */
  private last: ThreadMode = 'all';

  private kind(key: string): Kind {
    let k = this.kinds.get(key);
    if (!k) {
      k = { ms: [[], []], runs: 0, timed: [0, 0], sinceProbe: 0, ratio: MIN_RATIO, retime: false };
      this.kinds.set(key, k);
    }
    return k;
  }

  /** The choice for the next program of this kind. */
  pick(key: string): ThreadMode {
    const k = this.kind(key);
    // warm-up: every thread first (so that only the first run waits for the workers), then alone
    if (k.retime || k.timed[0] < WARM) return 'all';
    if (k.timed[1] < WARM) return 'solo';
    const best = fasterIndex(k);
    return mode(k.sinceProbe >= k.ratio * median(k.ms[1 - best]) ? 1 - best : best);
  }

  /** Records how long a program of this kind took with `m`. */
  record(key: string, m: ThreadMode, ms: number): void {
    const k = this.kind(key);
    const i = m === 'all' ? 0 : 1;
    const cold = m === 'all' && this.last === 'solo';
    this.last = m;
    if (k.runs++ === 0) return;
    k.retime = cold;
    if (cold) return;
    k.timed[i]++;
    if (!warm(k)) {
      k.ms[i].push(ms);
      return;
    }
    const before = fasterIndex(k);
    if (i !== before) {
      k.ms[i] = [ms]; // a probe
      k.sinceProbe = 0;
    } else {
      k.ms[i].push(ms);
      if (k.ms[i].length > KEEP) k.ms[i].shift();
      k.sinceProbe += ms;
    }
    if (fasterIndex(k) !== before) {
      k.ratio = MIN_RATIO;
      k.sinceProbe = 0;
    } else if (i !== before) k.ratio = Math.min(2 * k.ratio, MAX_RATIO);
  }
}

function warm(k: Kind): boolean {
  return k.timed[0] >= WARM && k.timed[1] >= WARM;
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
