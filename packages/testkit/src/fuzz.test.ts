import { afterEach, describe, expect, it } from 'vitest';
import { AllocationLimitExceeded, fuzzParams, trackAllocations } from './fuzz.js';

describe('trackAllocations', () => {
  it('counts buffers JavaScript code creates, but not views of existing ones', async () => {
    const { settled, log } = await trackAllocations(() => {
      const a = new Uint8Array(100); // 100
      const b = new Float32Array(10); // 40
      new Uint8Array(a.buffer, 10, 20); // view: 0
      new Float32Array(b.buffer); // view: 0
      new ArrayBuffer(7); // 7
      Int32Array.from([1, 2, 3]); // 12
      new Float64Array([1, 2]); // 16
      new Uint16Array(new Set([1, 2, 3])); // 6, measured after construction
      return a.length;
    });
    expect(settled).toEqual({ status: 'fulfilled', value: 100 });
    expect(log).toEqual({ count: 6, total: 100 + 40 + 7 + 12 + 16 + 6, largest: 100 });
  });

  it('keeps instanceof working and restores the real constructors', async () => {
    const Real = Uint8Array;
    await trackAllocations(() => {
      expect(Uint8Array).not.toBe(Real);
      expect(new Uint8Array(1)).toBeInstanceOf(Uint8Array);
      expect(new Uint8Array(1)).toBeInstanceOf(Real);
      expect(Object.getPrototypeOf(new Uint8Array(1))).toBe(Real.prototype);
    });
    expect(Uint8Array).toBe(Real);
  });

  it('stops an allocation over the limit before it happens, and reports a thrown error', async () => {
    // A reader that trusts a size field from its input.
    const lyingReader = (bytes: Uint8Array) => new Uint8Array(new DataView(bytes.buffer).getUint32(0, true));
    const input = Uint8Array.of(0xff, 0xff, 0xff, 0x7f); // claims 2 GiB
    const { settled, log } = await trackAllocations(() => lyingReader(input), 1 << 20);
    expect(settled.status).toBe('rejected');
    expect((settled as PromiseRejectedResult).reason).toBeInstanceOf(AllocationLimitExceeded);
    expect(log.count).toBe(0);
  });

  it('does not nest', async () => {
    await trackAllocations(async () => {
      await expect(trackAllocations(() => 1)).rejects.toThrow(/does not nest/);
    });
  });
});

describe('fuzzParams', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of ['RAMA_FUZZ_SEED', 'RAMA_FUZZ_RUNS', 'RAMA_FUZZ_PATH']) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  });
  it('uses fixed defaults, and the environment when set', () => {
    delete process.env.RAMA_FUZZ_SEED;
    delete process.env.RAMA_FUZZ_RUNS;
    delete process.env.RAMA_FUZZ_PATH;
    expect(fuzzParams(50, 7)).toEqual({ seed: 7, numRuns: 50 });
    process.env.RAMA_FUZZ_SEED = '-12';
    process.env.RAMA_FUZZ_RUNS = '3';
    process.env.RAMA_FUZZ_PATH = '1:2';
    expect(fuzzParams(50, 7)).toEqual({ seed: -12, numRuns: 3, path: '1:2' });
    process.env.RAMA_FUZZ_SEED = 'abc';
    expect(() => fuzzParams(50)).toThrow(/RAMA_FUZZ_SEED must be an integer/);
  });
});
