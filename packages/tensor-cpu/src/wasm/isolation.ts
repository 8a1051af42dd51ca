/**
 * What a browser page needs for the CPU backend's threads, said plainly when
 * it is missing: cross-origin isolation (COOP/COEP headers) for
 * SharedArrayBuffer, a Content Security Policy that allows blob: workers
 * (`worker-src`) and WebAssembly compilation (`script-src 'wasm-unsafe-eval'`).
 * The backend then runs on one thread (or on the scalar kernels) instead of
 * failing, and carries the message as its `notice`.
 */

const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';

/** A browser (or other web runtime), not Node. */
export const inBrowser = (): boolean => !isNode;

/** A browser's main thread (a window): there the backend defaults to one thread anyway. */
export const onBrowserMainThread = (): boolean => !isNode && typeof (globalThis as { document?: unknown }).document !== 'undefined';

const FIX_ISOLATION =
  'Serve the page, and the scripts of any worker it runs the model in, with the headers ' +
  '"Cross-Origin-Opener-Policy: same-origin" and "Cross-Origin-Embedder-Policy: require-corp" (or "credentialless") to use every core.';

/** No SharedArrayBuffer: the page is not cross-origin isolated. */
export function isolationNotice(): string {
  return (
    'The CPU backend runs on one thread: this page is not cross-origin isolated, so SharedArrayBuffer, ' +
    `which its worker threads share memory through, is unavailable. ${FIX_ISOLATION}`
  );
}

/** The browser refused the backend's blob: worker threads; `violations` are the CSP directives it reported. */
export function workersRefusedNotice(violations: readonly string[], detail?: string): string {
  const fix = 'Allow blob: workers, e.g. "worker-src \'self\' blob:" (without worker-src, script-src applies), to use every core.';
  if (violations.length) {
    return `The CPU backend runs on one thread: the page's Content Security Policy blocks its worker threads (blob: URL workers): ${violations.join('; ')}. ${fix}`;
  }
  return (
    `The CPU backend runs on one thread: the browser refused to start its worker threads (blob: URL workers)${detail ? ` (${detail})` : ''}; ` +
    `the usual cause is a Content Security Policy whose worker-src does not allow blob:. ${fix}`
  );
}

/** A CompileError from a Content Security Policy without 'wasm-unsafe-eval', as a notice; undefined for any other error. */
export function wasmBlockedNotice(e: unknown): string | undefined {
  const m = e instanceof Error ? e.message : '';
  if (!/Content Security Policy|unsafe-eval|wasm-eval/i.test(m)) return undefined;
  return (
    'The CPU backend cannot compile its WebAssembly kernels: the page\'s Content Security Policy does not allow it ' +
    `(add 'wasm-unsafe-eval' to script-src). Running the scalar TypeScript kernels instead, on one thread and much slower. (${m})`
  );
}

/** A CSP violation event, in a few words. */
export function describeViolation(ev: Event): string {
  const v = ev as Event & { effectiveDirective?: string; violatedDirective?: string; blockedURI?: string; originalPolicy?: string };
  const directive = v.effectiveDirective || v.violatedDirective || 'a directive';
  return `${directive} refused ${v.blockedURI || 'the worker'}${v.originalPolicy ? ` (policy: "${v.originalPolicy}")` : ''}`;
}

let probed: Promise<string | undefined> | undefined;

/**
 * Starts one throwaway blob: worker, as the thread pool does. Resolves to
 * undefined when it runs, or to a notice saying why it did not (once per
 * page: the answer does not change).
 */
export function probeBlobWorkers(): Promise<string | undefined> {
  probed ??= new Promise<string | undefined>((resolve) => {
    const violations: string[] = [];
    const target = globalThis as unknown as Partial<EventTarget>;
    const onViolation = (ev: Event) => violations.push(describeViolation(ev));
    target.addEventListener?.('securitypolicyviolation', onViolation);
    let url = '';
    let w: Worker | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const finish = (detail?: string) => {
      // A refusal's violation event may come just after the error event.
      setTimeout(() => {
        target.removeEventListener?.('securitypolicyviolation', onViolation);
        if (timer) clearTimeout(timer);
        w?.terminate();
        if (url) URL.revokeObjectURL(url);
        resolve(detail === undefined && !violations.length ? undefined : workersRefusedNotice(violations, detail));
      }, detail === undefined ? 0 : 50);
    };
    try {
      url = URL.createObjectURL(new Blob(['postMessage(1)'], { type: 'text/javascript' }));
      w = new Worker(url);
      w.onmessage = () => finish();
      w.onerror = (ev) => finish(ev.message || 'no reason given');
      timer = setTimeout(() => finish('it did not start within 10 s'), 10_000);
    } catch (e) {
      finish((e as Error).message ?? String(e));
    }
  });
  return probed;
}
