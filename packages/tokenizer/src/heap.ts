/**
 * A binary max-heap of merge candidates: higher score first, then lower left
 * position. Entries live in parallel typed arrays (no per-entry objects).
 */
export class PairHeap {
  readonly score: Float64Array;
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly a: Int32Array;
  readonly b: Int32Array;
  readonly id: Int32Array;
  private readonly heap: Int32Array;
  private size = 0;
  private entries = 0;

  constructor(capacity: number) {
    this.score = new Float64Array(capacity);
    this.left = new Int32Array(capacity);
    this.right = new Int32Array(capacity);
    this.a = new Int32Array(capacity);
    this.b = new Int32Array(capacity);
    this.id = new Int32Array(capacity);
    this.heap = new Int32Array(capacity);
  }

  push(score: number, left: number, right: number, a: number, b: number, id: number): void {
    const e = this.entries++;
    this.score[e] = score;
    this.left[e] = left;
    this.right[e] = right;
    this.a[e] = a;
    this.b[e] = b;
    this.id[e] = id;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(e, this.heap[parent])) break;
      this.heap[i] = this.heap[parent];
      i = parent;
    }
    this.heap[i] = e;
  }

  /** Removes and returns the best entry, or -1 when empty. */
  pop(): number {
    if (this.size === 0) return -1;
    const top = this.heap[0];
    const last = this.heap[--this.size];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= this.size) break;
      if (child + 1 < this.size && this.before(this.heap[child + 1], this.heap[child])) child++;
      if (!this.before(this.heap[child], last)) break;
      this.heap[i] = this.heap[child];
      i = child;
    }
    this.heap[i] = last;
    return top;
  }

  private before(x: number, y: number): boolean {
    return this.score[x] > this.score[y] || (this.score[x] === this.score[y] && this.left[x] < this.left[y]);
  }
}


/** The best merge of a pair, as `mergeByHeap`'s callback writes it: higher `score` merges first, into token `id`. */
export interface PairMerge {
  score: number;
  id: number;
}

/**
 * BPE's merge loop, shared by SentencePiece-style scores and byte-level
 * ranks: repeatedly merge the best adjacent pair (highest score, leftmost on
 * a tie) until none merges. The tokens are a linked list and the candidate
 * pairs sit in a PairHeap; a merge keeps the left token's position, so
 * position order is list order, and only the pairs beside it change: entries
 * made stale are skipped when popped. O(n log n). `best(a, b, into)` fills
 * `into` and returns true when the pair (a, b) merges.
 */
export function mergeByHeap(ids: ArrayLike<number>, best: (a: number, b: number, into: PairMerge) => boolean): number[] {
  const n = ids.length;
  if (n < 2) return Array.from(ids);
  const tok = Int32Array.from(ids);
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  const alive = new Uint8Array(n).fill(1);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap(3 * n);
  const found: PairMerge = { score: 0, id: 0 };
  const offer = (left: number): void => {
    if (left < 0) return;
    const right = next[left];
    if (right < 0) return;
    if (best(tok[left], tok[right], found)) heap.push(found.score, left, right, tok[left], tok[right], found.id);
  };
  for (let i = 0; i + 1 < n; i++) offer(i);
  for (let e = heap.pop(); e >= 0; e = heap.pop()) {
    const left = heap.left[e];
    const right = heap.right[e];
    // Skip entries whose pair no longer exists as it was.
    if (!alive[left] || next[left] !== right || tok[left] !== heap.a[e] || tok[right] !== heap.b[e]) continue;
    tok[left] = heap.id[e];
    alive[right] = 0;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    offer(prev[left]);
    offer(left);
  }
  const out: number[] = [];
  for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]); // position 0 is never merged away
  return out;
}
