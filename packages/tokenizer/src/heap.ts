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

