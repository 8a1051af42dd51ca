/**
 * The worker pool under stress: many short steps in a row, run on the WASM
 * backend with several threads and on the scalar reference, compared exactly.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { ArgumentError, contiguousRows, type Backend, type Tensor } from '@rama/backend';
import { CpuBackend } from './index.js';

describe('the worker pool', () => {
  // Workers inherit the parent's execArgv by default: there, their inline source was parsed as an ES module
  // and failed ("require is not defined in ES module scope").
  it('starts in a process run as `node --input-type=module -e` (the built package)', async () => {
    const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    expect(existsSync(dist), `${dist} is missing: run pnpm build`).toBe(true);
    const code = `
      import { CpuBackend } from ${JSON.stringify(pathToFileURL(dist).href)};
      const be = await CpuBackend.create({ threads: 2, maxRows: 1 });
      const a = await be.upload({ shape: [1, 64], dtype: 'f32', label: 'a' }, new Float32Array(64).fill(1.5));
      const b = be.alloc({ shape: [1, 64], dtype: 'f32', label: 'b' });
      const s = be.begin({ positions: [0] });
      s.add(b, a, a);
      s.submit();
      console.log(be.threads, [...new Set(await be.read(b))]);
      be.dispose();`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', code], { timeout: 60_000 });
    expect(stdout.trim()).toBe('2 [ 3 ]');
  });

  it('has at most one thread per hardware thread', async () => {
    const cores = availableParallelism();
    const tooMany = CpuBackend.create({ threads: cores + 1 });
    await expect(tooMany).rejects.toThrow(ArgumentError);
    await expect(tooMany).rejects.toThrow(`threads must be at most ${cores}, the hardware threads of this machine, got ${cores + 1}`);
    await expect(CpuBackend.create({ threads: 999 })).rejects.toThrow(`at most ${cores}`);
    const be = await CpuBackend.create({ threads: cores });
    expect(be.threads).toBe(cores);
    be.dispose();
  });

  // A step whose op count differs from the one before it once let a worker
  // that left the last barrier late run an op of the next step, after which
  // the barriers paired up the wrong ops. A thread that sleeps at a barrier
  // wakes late (tens of microseconds after the last one arrives: the main
  // thread has written the next step by then), so with barriers that sleep at
  // once (RAMA_BAR_SPIN=0) the old loop failed within the first 500
  // alternating steps, every time; with its default spin, within 2k-120k. The values are
  // small integers, so f32 sums are exact and a late or repeated add shows as
  // a whole chunk off by 1 or 2.
  it('alternating 1-op and 2-op steps on 2 threads match the scalar backend exactly', async () => {
    vi.stubEnv('RAMA_BAR_SPIN', '0');
    vi.resetModules(); // the spin is read when the module loads
    const { CpuBackend: SleepingCpuBackend } = await import('./index.js');
    vi.unstubAllEnvs();
    const STEPS = 30_000, CHECK_EVERY = 500, N = 256;
    const make = async (be: Backend) => ({
      be,
      one: await be.upload({ shape: [1, N], dtype: 'f32', label: 'one' }, new Float32Array(N).fill(1)),
      acc: be.alloc({ shape: [1, N], dtype: 'f32', label: 'acc' }),
      tmp: be.alloc({ shape: [1, N], dtype: 'f32', label: 'tmp' }),
    });
    const step = (r: { be: Backend; one: Tensor; acc: Tensor; tmp: Tensor }, i: number) => {
      const s = r.be.begin(contiguousRows(0, 1));
      if (i % 2 === 0) s.add(r.acc, r.acc, r.one);
      else {
        s.add(r.tmp, r.acc, r.one);
        s.add(r.acc, r.tmp, r.one);
      }
      s.submit();
    };
    const wasm = await make(await SleepingCpuBackend.create({ threads: 2, maxRows: 1 }));
    const ref = await make(await CpuBackend.create({ kernels: 'scalar', maxRows: 1 }));
    try {
      for (let i = 0; i < STEPS; i++) {
        step(wasm, i);
        step(ref, i);
        if ((i + 1) % CHECK_EVERY === 0) {
          const [got, want] = [await wasm.be.read(wasm.acc), await ref.be.read(ref.acc)];
          // one expect per check would cost more than the steps: compare first
          if (got.some((v, j) => v !== want[j])) expect(Array.from(got), `after step ${i}`).toEqual(Array.from(want));
        }
      }
    } finally {
      wasm.be.dispose();
      ref.be.dispose();
    }
  });
});
