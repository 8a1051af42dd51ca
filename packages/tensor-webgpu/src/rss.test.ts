/**
 * Loading and disposing many backends must not leak: each of 100 backends
 * uploads a few MB of weights, runs a step, and is disposed; the process's
 * resident memory after the last must stay close to what it was after the
 * first few (Dawn frees destroyed buffers only after a later submit, which
 * dispose() does).
 */
import { expect, it } from 'vitest';
import { contiguousRows } from '@rama/backend';
import { WebGpuBackend } from './index.js';

const MB = 1 << 20;

async function cycle(i: number): Promise<void> {
  const be = await WebGpuBackend.create({ maxRows: 4, maxBindingSize: i % 2 ? 1 * MB : undefined });
  const w = await be.upload({ label: 'w', shape: [1024, 1024], dtype: 'f32' }, (dst) => void dst.fill(i & 0xff));
  const q = await be.upload({ label: 'q', shape: [1024, 1024], dtype: 'q8_0', groupSize: 64 }, new Uint8Array(1024 * 1024 + 4 * 16384));
  const x = be.alloc({ label: 'x', shape: [4, 1024], dtype: 'f32' });
  const y = be.alloc({ label: 'y', shape: [4, 1024], dtype: 'f32' });
  be.write(x, new Float32Array(4096).fill(1));
  const s = be.begin(contiguousRows(0, 4));
  s.matmul(y, x, w);
  s.matmul(x, y, q);
  s.submit();
  await be.read(x, 4);
  be.free(y);
  be.dispose();
}

it('100 backends of ~6 MB each: RSS stays bounded', async () => {
  for (let i = 0; i < 10; i++) await cycle(i);
  const before = process.memoryUsage().rss;
  const t0 = performance.now();
  for (let i = 10; i < 100; i++) await cycle(i);
  const grown = (process.memoryUsage().rss - before) / MB;
  console.log(`90 backends in ${((performance.now() - t0) / 1000).toFixed(1)} s; RSS grew ${grown.toFixed(1)} MiB`);
  // 90 cycles x 6 MB = 540 MB if nothing were freed.
  expect(grown).toBeLessThan(100);
}, 300_000);
