/**
 * The sessions requests run on: `parallel` sessions of one Llama (their steps
 * are batched together by the library), lent one per in-flight request, and
 * a bounded line of requests waiting for one.
 */
import type { Session } from '@rama/llama';

/** Why a request got no session: the line was full, it was cancelled while waiting, or the server is closing. */
export class PoolRefusal extends Error {
  constructor(readonly why: 'full' | 'aborted' | 'closing') {
    super(why);
  }
}

interface Waiter {
  resolve(s: Session): void;
  reject(e: PoolRefusal): void;
}

/** How many leading tokens two sequences share. */
export function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export class SessionPool {
  private readonly free: Session[];
  private readonly waiters: Waiter[] = [];
  private closing = false;
  /** When each session was last given back (a counter), for least-recently-used choices. */
  private readonly returned = new Map<Session, number>();
  /** The tokens each session's last request read (chat requests), to tell a continued conversation. */
  private readonly lastWant = new Map<Session, readonly number[]>();
  private clock = 0;

  constructor(readonly sessions: readonly Session[], private readonly maxQueue: number, private readonly onChange: () => void = () => {}) {
    this.free = [...sessions];
  }

  /**
   * The free session to lend for a request that will read `want`. Among the
   * sessions whose last request's tokens `want` begins with (a resent,
   * growing conversation: its earlier turns, with a reply, then a new
   * message; or the same conversation again), the one whose KV cache
   * (`session.tokens`) shares the most with it, so that the request reads
   * only its new tokens. Otherwise (a new conversation, a completion) the
   * session given back longest ago (never used ones first), so the caches of
   * recent conversations stay for their next turns rather than being
   * overwritten by a request that shares only a system prompt with them.
   * (The last request's tokens, not the cache's, decide whether a request
   * continues a conversation: a reply resent as text may encode to other
   * tokens than the model sampled, and the cache then holds only the
   * earlier prompt in common.)
   */
  private pick(want: readonly number[] | undefined): Session | undefined {
    if (this.free.length === 0) return undefined;
    let best = -1;
    let bestShared = 0;
    if (want) {
      for (let i = 0; i < this.free.length; i++) {
        const s = this.free[i];
        const last = this.lastWant.get(s);
        if (!last || last.length === 0 || commonPrefix(last, want) < last.length) continue;
        const shared = commonPrefix(s.tokens, want);
        if (shared > bestShared) {
          best = i;
          bestShared = shared;
        }
      }
    }
    if (best < 0) {
      best = 0;
      for (let i = 1; i < this.free.length; i++) if (this.lastReturned(this.free[i]) < this.lastReturned(this.free[best])) best = i;
    }
    const s = this.free.splice(best, 1)[0];
    this.lend(s, want);
    return s;
  }

  private lend(s: Session, want: readonly number[] | undefined): void {
    if (want) this.lastWant.set(s, want);
    else this.lastWant.delete(s);
  }

  private lastReturned(s: Session): number {
    return this.returned.get(s) ?? -1;
  }

  /** Requests waiting for a session. */
  get waiting(): number {
    return this.waiters.length;
  }

  /** Sessions lent out. */
  get busy(): number {
    return this.sessions.length - this.free.length;
  }

  /**
   * A free session (the one whose cache shares the longest prefix with
   * `want`, the tokens the request will read, when given), or one once it is
   * given back (first come, first served). Rejects with a PoolRefusal when
   * `maxQueue` requests already wait, when `signal` aborts first, or when the
   * pool closes.
   */
  acquire(signal: AbortSignal, want?: readonly number[]): Promise<Session> {
    if (this.closing) return Promise.reject(new PoolRefusal('closing'));
    if (signal.aborted) return Promise.reject(new PoolRefusal('aborted'));
    const s = this.pick(want);
    if (s) {
      this.onChange();
      return Promise.resolve(s);
    }
    if (this.waiters.length >= this.maxQueue) return Promise.reject(new PoolRefusal('full'));
    return new Promise<Session>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        this.onChange();
        reject(new PoolRefusal('aborted'));
      };
      const w: Waiter = {
        resolve: (s) => {
          signal.removeEventListener('abort', onAbort);
          this.lend(s, want);
          resolve(s);
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(w);
      this.onChange();
    });
  }

  /** Gives a session back: to the first waiter, else to the free list. */
  release(s: Session): void {
    this.returned.set(s, ++this.clock);
    const w = this.waiters.shift();
    if (w) w.resolve(s);
    else this.free.push(s);
    this.onChange();
  }

  /** Refuses every waiter and every later acquire (a draining server). */
  close(): void {
    this.closing = true;
    for (const w of this.waiters.splice(0)) w.reject(new PoolRefusal('closing'));
    this.onChange();
  }
}
