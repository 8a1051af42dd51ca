/**
 * A minimal Prometheus registry: counters and gauges with labels, and
 * histograms, rendered in the text exposition format (version 0.0.4). Small
 * enough that the server needs no client library.
 */

type Labels = Record<string, string>;

const labelKey = (labels: Labels): string =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabel(labels[k])}"`)
    .join(',');

const escapeLabel = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

const fmt = (v: number): string => (Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN');

interface Metric {
  render(): string;
}

class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string, private readonly type: 'counter' | 'gauge' = 'counter') {}

  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }

  set(value: number, labels: Labels = {}): void {
    this.values.set(labelKey(labels), value);
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} ${this.type}\n`;
    // A metric without labels shows 0 before anything happened, so dashboards see it exists.
    if (this.values.size === 0) out += `${this.name} 0\n`;
    for (const [k, v] of this.values) out += `${this.name}${k ? `{${k}}` : ''} ${fmt(v)}\n`;
    return out;
  }
}

class Histogram implements Metric {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(readonly name: string, readonly help: string, private readonly buckets: readonly number[]) {
    this.counts = buckets.map(() => 0);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
  }

  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    this.buckets.forEach((b, i) => (out += `${this.name}_bucket{le="${fmt(b)}"} ${this.counts[i]}\n`));
    out += `${this.name}_bucket{le="+Inf"} ${this.count}\n${this.name}_sum ${fmt(this.sum)}\n${this.name}_count ${this.count}\n`;
    return out;
  }
}

/** The server's metrics. */
export class ServerMetrics {
  readonly requests = new Counter('rama_requests_total', 'HTTP requests answered, by endpoint and status (499: the client went away first).');
  readonly promptTokens = new Counter('rama_prompt_tokens_total', 'Prompt tokens read by the model (tokens already in a session\'s KV cache are not counted).');
  readonly completionTokens = new Counter('rama_completion_tokens_total', 'Tokens generated.');
  readonly queueDepth = new Counter('rama_queue_depth', 'Requests waiting for a free session.', 'gauge');
  readonly active = new Counter('rama_active_sequences', 'Requests holding a session (generating).', 'gauge');
  readonly slots = new Counter('rama_sessions', 'Sessions in the pool (the parallel option).', 'gauge');
  readonly rejected = new Counter('rama_queue_rejections_total', 'Requests refused with 429 because the queue was full.');
  readonly ttft = new Histogram(
    'rama_time_to_first_token_seconds',
    'From a generation request\'s arrival to its first generated token (queueing and prompt included).',
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  );
  readonly tokensPerSecond = new Histogram(
    'rama_tokens_per_second',
    'Decoding speed of each generation (tokens after the first, per second).',
    [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
  );
  readonly duration = new Histogram('rama_request_duration_seconds', 'Generation requests, arrival to the end of the response.', [
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
  ]);

  render(): string {
    const all: Metric[] = [
      this.requests, this.promptTokens, this.completionTokens, this.queueDepth, this.active, this.slots, this.rejected,
      this.ttft, this.tokensPerSecond, this.duration,
    ];
    return all.map((m) => m.render()).join('');
  }
}
