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

export class SessionPool {
  private readonly free: Session[];
  private readonly waiters: Waiter[] = [];
  private closing = false;

  constructor(readonly sessions: readonly Session[], private readonly maxQueue: number, private readonly onChange: () => void = () => {}) {
    this.free = [...sessions];
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
   * A free session, or one once it is given back (first come, first served).
   * Rejects with a PoolRefusal when `maxQueue` requests already wait, when
   * `signal` aborts first, or when the pool closes.
   */
  acquire(signal: AbortSignal): Promise<Session> {
    if (this.closing) return Promise.reject(new PoolRefusal('closing'));
    if (signal.aborted) return Promise.reject(new PoolRefusal('aborted'));
    // The most recently used session first: its KV cache is likeliest to hold a resent conversation's prefix.
    const s = this.free.pop();
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
