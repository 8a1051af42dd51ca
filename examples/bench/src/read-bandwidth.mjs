// Read bandwidth of this machine, two ways, each on every core at once:
// - native: memcmp of two equal buffers (glibc's memcmp uses the CPU's
//   widest loads, 32 bytes with AVX2), what a C decoder such as llama2.c
//   can reach;
// - WebAssembly: a loop of v128.load, 16 bytes, the widest load WebAssembly
//   has, the most a WebAssembly decoder can read at.
// Decoding reads every weight once per token, so weight bytes per token x
// tok/s, as a fraction of these, is how close a decoder runs to memory's
// limit. Where a core can keep only so many loads in flight, 16-byte loads
// reach less than 32-byte ones: the WebAssembly figure is then the lower.
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';

/**
 * A WebAssembly module with a memory of `pages` and `read(from, to)`: ORs
 * every 16 bytes of [from, to) into four v128 accumulators (64 bytes a turn)
 * and returns lane 0, so nothing can skip the loads. Written out by hand:
 * it is 100 bytes, and the bench then needs no WebAssembly toolchain.
 */
export function wasmReadModule(pages) {
  const leb = (n) => {
    const out = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      out.push(b);
    } while (n);
    return out;
  };
  const section = (id, bytes) => [id, ...leb(bytes.length), ...bytes];
  // local[l] = v128.or(local[l], v128.load offset=off (local 0))
  const orLoad = (l, off) => [0x20, l, 0x20, 0x00, 0xfd, 0x00, 0x04, off, 0xfd, 0x50, 0x21, l];
  const body = [
    0x01, 0x04, 0x7b, // locals 2..5: v128
    0x03, 0x40, // loop
    ...orLoad(2, 0), ...orLoad(3, 16), ...orLoad(4, 32), ...orLoad(5, 48),
    0x20, 0x00, 0x41, 0xc0, 0x00, 0x6a, 0x22, 0x00, // from = from + 64
    0x20, 0x01, 0x49, 0x0d, 0x00, 0x0b, // br_if (from < to); end
    0x20, 0x02, 0x20, 0x03, 0xfd, 0x50, 0x20, 0x04, 0xfd, 0x50, 0x20, 0x05, 0xfd, 0x50, // or them all
    0xfd, 0x1b, 0x00, 0x0b, // i32x4.extract_lane 0; end
  ];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [0x01, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]), // type (i32, i32) -> i32
    ...section(3, [0x01, 0x00]),
    ...section(5, [0x01, 0x00, ...leb(pages)]),
    ...section(7, [0x02, 0x04, ...Buffer.from('read'), 0x00, 0x00, 0x03, ...Buffer.from('mem'), 0x02, 0x00]),
    ...section(10, [0x01, ...leb(body.length), ...body]),
  ]);
}

/** Every core runs `worker` (a CommonJS body that answers each message once done), 5 rounds; best GB/s for `bytes` read per core. */
async function onEveryCore(code, workerData, bytes) {
  const workers = Array.from({ length: availableParallelism() }, () => new Worker(code, { eval: true, workerData, execArgv: [] }));
  const once = (w) => new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  try {
    await Promise.all(workers.map(once));
    let best = 0;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await Promise.all(workers.map((w) => (w.postMessage(0), once(w))));
      best = Math.max(best, (workers.length * bytes) / 1e9 / ((performance.now() - t0) / 1e3));
    }
    return best;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** GB/s of memcmp over two equal 128 MiB buffers per core (both are read), best of 5 rounds. */
export function nativeReadBandwidth() {
  const n = 128 * 2 ** 20;
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const a = Buffer.alloc(workerData, 7), b = Buffer.alloc(workerData, 7);
    parentPort.on('message', () => { Buffer.compare(a, b); parentPort.postMessage(0); });
    parentPort.postMessage(0);`;
  return onEveryCore(code, n, 2 * n);
}

/** GB/s of WebAssembly 16-byte loads over 256 MiB per core (each worker its own memory, written first), best of 5 rounds. */
export function wasmReadBandwidth() {
  const pages = 4097; // 256 MiB to read after the first 64 KiB page
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(workerData));
    new Uint8Array(exports.mem.buffer).fill(7); // untouched pages would all read the one zero page
    parentPort.on('message', () => { exports.read(65536, ${pages * 65536}); parentPort.postMessage(0); });
    parentPort.postMessage(0);`;
  return onEveryCore(code, wasmReadModule(pages), (pages - 1) * 65536);
}
