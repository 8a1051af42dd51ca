/** Download progress on stderr: a bar on a terminal, one line elsewhere. */

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * On a terminal: a bar redrawn in place at most ten times a second.
 * Elsewhere (a log, a pipe): one plain line when the download starts.
 */
export class ProgressBar {
  private last = 0;
  private drawn = -1;

  /** `from`: bytes already there (a resumed download). */
  constructor(
    private readonly file: string,
    url: string,
    private readonly total: number | undefined,
    private readonly out: ProgressStream | undefined,
    from = 0,
  ) {
    if (out && !out.isTTY) {
      const size = total ? ` (${formatBytes(total)})` : '';
      out.write(from > 0 ? `rama: resuming ${file} at ${formatBytes(from)}${total ? ` of ${formatBytes(total)}` : ''} from ${url}\n` : `rama: downloading ${file}${size} from ${url}\n`);
    }
  }

  update(received: number): void {
    if (!this.out?.isTTY) return;
    const now = Date.now();
    if (now - this.last < 100 && received !== this.total) return;
    this.last = now;
    this.draw(received);
  }

  done(received: number): void {
    if (!this.out?.isTTY) return;
    if (this.drawn !== received) this.draw(received);
    this.out.write('\n');
  }

  /** Ends the line the bar was drawn on, so an error message starts on a fresh one. */
  abandon(): void {
    if (this.out?.isTTY && this.drawn >= 0) this.out.write('\n');
  }

  private draw(received: number): void {
    const width = 30;
    let line: string;
    if (this.total) {
      const f = Math.min(1, received / this.total);
      const filled = Math.round(f * width);
      line = `${this.file} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}% ${formatBytes(received)} / ${formatBytes(this.total)}`;
    } else {
      line = `${this.file} ${formatBytes(received)}`;
    }
    this.out!.write(`\r${line}\x1b[K`);
    this.drawn = received;
  }
}

/** The fields of @rama/hub's progress events that the bars use. */
export interface ProgressEvent {
  file: string;
  url: string;
  loaded: number;
  total: number | undefined;
  resumedFrom: number;
  done: boolean;
}

/**
 * @rama/hub's onProgress as bars on `out`, one per file (a split model has
 * several); `abandon` ends an unfinished bar's line before an error message.
 */
export function progressReporter(out: ProgressStream | undefined): { onProgress: (p: ProgressEvent) => void; abandon: () => void } {
  const bars = new Map<string, ProgressBar>();
  return {
    onProgress(p) {
      let bar = bars.get(p.file);
      if (!bar) bars.set(p.file, (bar = new ProgressBar(p.file, p.url, p.total, out, p.resumedFrom)));
      if (p.done) {
        bar.done(p.loaded);
        bars.delete(p.file);
      } else bar.update(p.loaded);
    },
    abandon() {
      for (const bar of bars.values()) bar.abandon();
      bars.clear();
    },
  };
}
