/**
 * One model holds one sequence, so its generations run one at a time. This
 * decides who runs, and makes sure no usage pattern can hang the model.
 *
 * Policy:
 * - Generations run in the order they start (the first `next()` on their
 *   iterator, or `result()`); other work queued with `enqueue` (resetChat)
 *   takes its place in the same line.
 * - A running generation is *suspended* while its consumer holds a token and
 *   has not asked for the next one. If it stays suspended for `graceMs` while
 *   something else waits, it is preempted: it ends at once with reason
 *   `preempted` (its state is settled as if it stopped there), and the next in
 *   line runs. An abandoned iterator, or two iterators stepped in turn, can
 *   therefore never block the model forever; a consumer that keeps asking for
 *   tokens is never preempted.
 */

/** A generation (or queued action) as the scheduler sees it. */
export interface Turn {
  /** Called when the turn may run. */
  grant(): void;
  /** Ends a suspended turn now (settling its result); the scheduler then moves on. */
  preempt(): Promise<void>;
}

export class TurnScheduler {
  private running: Turn | undefined;
  private readonly waiting: Turn[] = [];
  /** When the running turn was suspended; undefined while it runs. */
  private suspendedSince: number | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly graceMs: number) {}

  /** Grants `turn` now if nothing runs, else queues it. */
  acquire(turn: Turn): void {
    if (this.running === undefined) {
      this.running = turn;
      turn.grant();
      return;
    }
    this.waiting.push(turn);
    this.armPreemption();
  }

  /** The turn finished (or was preempted): the next in line runs. */
  release(turn: Turn): void {
    if (this.running !== turn) return;
    this.clearSuspension();
    this.running = this.waiting.shift();
    this.running?.grant();
  }

  /** Runs `action` in line with the turns: now if nothing runs or waits, else when its turn comes. */
  enqueue(action: () => void): void {
    const turn: Turn = {
      grant: () => {
        action();
        this.release(turn);
      },
      preempt: async () => {},
    };
    this.acquire(turn);
  }

  /** The running turn handed a token to its consumer and waits for the next request. */
  suspend(turn: Turn): void {
    if (this.running !== turn) return;
    this.suspendedSince = Date.now();
    this.armPreemption();
  }

  /** The running turn's consumer asked for the next token. */
  resume(turn: Turn): void {
    if (this.running === turn) this.clearSuspension();
  }

  private armPreemption(): void {
    if (this.suspendedSince === undefined || this.waiting.length === 0 || this.timer !== undefined) return;
    const victim = this.running!;
    const wait = Math.max(0, this.suspendedSince + this.graceMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.running !== victim || this.suspendedSince === undefined) return;
      this.suspendedSince = undefined;
      void victim.preempt().finally(() => this.release(victim));
    }, wait);
  }

  private clearSuspension(): void {
    this.suspendedSince = undefined;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
