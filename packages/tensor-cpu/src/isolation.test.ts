/**
 * The browser notices (COOP/COEP, CSP) in Node: none is given there, and a
 * CompileError from a CSP is told from other errors. The browser behaviour
 * itself is tested in examples/web (headless Chromium with those headers).
 */
import { describe, expect, it } from 'vitest';
import type { Backend } from '@rama/backend';
import { CpuBackend } from './index.js';
import { isolationNotice, wasmBlockedNotice, workersRefusedNotice } from './wasm/isolation.js';

describe('isolation and CSP notices', () => {
  it('Node: no notice', async () => {
    const be: Backend = await CpuBackend.create({ threads: 1 });
    try {
      expect(be.notice).toBeUndefined();
    } finally {
      be.dispose();
    }
  });

  it('a CSP CompileError becomes a notice naming script-src \'wasm-unsafe-eval\'; other errors do not', () => {
    // Chromium's wording.
    const csp = new WebAssembly.CompileError(
      "WebAssembly.compile(): Refused to compile or instantiate WebAssembly module because 'wasm-eval' is not an allowed source of script in the following Content Security Policy directive: \"script-src 'self'\"",
    );
    expect(wasmBlockedNotice(csp)).toMatch(/add 'wasm-unsafe-eval' to script-src.*scalar TypeScript kernels/);
    expect(wasmBlockedNotice(new WebAssembly.CompileError('WebAssembly.compile(): expected magic word'))).toBeUndefined();
    expect(wasmBlockedNotice('no')).toBeUndefined();
  });

  it('the notices name what to add', () => {
    expect(isolationNotice()).toMatch(/"Cross-Origin-Opener-Policy: same-origin" and "Cross-Origin-Embedder-Policy: require-corp"/);
    expect(workersRefusedNotice(["worker-src refused blob"])).toMatch(/Content Security Policy blocks its worker threads .*worker-src refused blob.*worker-src 'self' blob:/);
    expect(workersRefusedNotice([], 'no reason given')).toMatch(/refused to start its worker threads .*\(no reason given\).*worker-src 'self' blob:/);
  });
});
