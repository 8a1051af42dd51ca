import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { byteLengthOf } from '@rama/backend';
import { FormatError, ArgumentError } from '@rama/core';
import { missingMessage, sharedFile, synthModel } from '@rama/testkit';
import { openCheckpoint, parseHeader, MAGIC, MAX_LAYERS, type Checkpoint, type Q80Data } from './index.js';

const GQA = '--dim 64 --hidden 192 --layers 2 --heads 8 --kv-heads 2 --vocab 512 --seq 64 --seed 7';

function dequantize({ q, scales }: Q80Data, gs: number): Float32Array {
  const out = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) out[i] = q[i] * scales[Math.floor(i / gs)];
  return out;
}

const layerNames = (L: number) =>
  Array.from({ length: L }, (_, l) =>
    ['rms_att', 'wq', 'wk', 'wv', 'wo', 'rms_ffn', 'w1', 'w2', 'w3'].map((s) => `layers.${l}.${s}`),
  ).flat();

/** A v1/v2 header for corruption tests. */
function akHeader(o: {
  version?: number;
  dims?: number[];
  shared?: number;
  gs?: number;
  magic?: number;
}): Uint8Array {
  const h = new Uint8Array(256);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, o.magic ?? MAGIC, true);
  dv.setInt32(4, o.version ?? 1, true);
  (o.dims ?? [64, 192, 2, 8, 2, 512, 64]).forEach((v, i) => dv.setInt32(8 + 4 * i, v, true));
  h[36] = o.shared ?? 1;
  if (o.gs !== undefined) dv.setInt32(37, o.gs, true);
  return h;
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of parts) (out.set(p, o), (o += p.byteLength));
  return out;
}

async function expectFormatError(p: Promise<unknown> | (() => unknown), ...patterns: RegExp[]): Promise<FormatError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a FormatError').toBeInstanceOf(FormatError);
  const fe = err as FormatError;
  expect(fe.code).toBe('E_FORMAT');
  for (const re of patterns) expect(fe.message).toMatch(re);
  return fe;
}

describe('real llama2.c models (v0)', () => {
  it('aidreams260K.bin', async (ctx) => {
    const p = sharedFile('models/aidreams260K.bin');
    if (!p) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const ck = await openCheckpoint(p);
    try {
      expect(ck.format).toBe('v0');
      expect(ck.source).toBe(p);
      expect(ck.config).toEqual({
        dim: 64, hiddenDim: 172, nLayers: 4, nHeads: 4, nKvHeads: 4, vocabSize: 512, seqLen: 128,
        headSize: 16, kvDim: 64, sharedClassifier: true, normEps: 1e-5, ropeTheta: 10000,
      });
      expect(ck.groupSize).toBeUndefined();
      expect(ck.tensors.size).toBe(2 + 9 * 4);
      expect(ck.tensors.has('wcls')).toBe(false);
      expect(ck.tensors.get('tok_embeddings')!.byteOffset).toBe(28);
      const fin = ck.tensors.get('rms_final')!;
      // after rms_final come the two freq_cis tables, [seq, headSize/2] each
      expect(fin.byteOffset + fin.byteLength + 4 * 128 * 16).toBe(ck.fileSize);
      const rms = (await ck.read('layers.0.rms_att')) as Float32Array;
      expect(rms).toBeInstanceOf(Float32Array);
      expect(rms.length).toBe(64);
      expect(rms.every(Number.isFinite)).toBe(true);
    } finally {
      await ck.close();
    }
  });

  it('stories260K.bin (grouped-query attention: 8 heads, 4 KV heads)', async (ctx) => {
    const p = sharedFile('models/stories260K.bin');
    if (!p) return ctx.skip(missingMessage('models/stories260K.bin'));
    const ck = await openCheckpoint(p);
    try {
      expect(ck.config).toMatchObject({
        dim: 64, hiddenDim: 172, nLayers: 5, nHeads: 8, nKvHeads: 4, vocabSize: 512, seqLen: 512,
        headSize: 8, kvDim: 32, sharedClassifier: true,
      });
      expect(ck.tensors.get('layers.4.wk')!.shape).toEqual([32, 64]);
      expect(ck.tensors.get('layers.4.w2')!.shape).toEqual([64, 172]);
      expect(ck.tensors.get('layers.4.w1')!.shape).toEqual([172, 64]);
      for (const e of ck.tensors.values()) expect(byteLengthOf(e)).toBe(e.byteLength);
    } finally {
      await ck.close();
    }
  });
});

describe('synthetic v0 / v1 / q80 with the same weights', () => {
  const cks: Record<string, Checkpoint> = {};
  let skipped = false;
  beforeAll(async () => {
    for (const fmt of ['v0', 'v1', 'q80'] as const) {
      for (const sh of ['unshared', 'shared'] as const) {
        const p = synthModel(`ckpt-gqa-${sh}-${fmt}.bin`, `${GQA} --format ${fmt}${sh === 'unshared' ? ' --unshared' : ''}`);
        if (!p) {
          skipped = true;
          return;
        }
        cks[`${fmt}-${sh}`] = await openCheckpoint(p);
      }
    }
  });
  afterAll(async () => {
    for (const c of Object.values(cks)) await c.close();
  });

  it('parses all three formats to the same config', (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    for (const sh of ['unshared', 'shared']) {
      const v0 = cks[`v0-${sh}`], v1 = cks[`v1-${sh}`], q = cks[`q80-${sh}`];
      expect(v0.format).toBe('v0');
      expect(v1.format).toBe('v1');
      expect(q.format).toBe('v2');
      expect(q.groupSize).toBe(64);
      expect(v0.config).toEqual(v1.config);
      expect(q.config).toEqual(v0.config);
      expect(v0.config).toMatchObject({ dim: 64, hiddenDim: 192, nLayers: 2, nHeads: 8, nKvHeads: 2, headSize: 8, kvDim: 16, vocabSize: 512, seqLen: 64 });
      expect(v0.config.sharedClassifier).toBe(sh === 'shared');
      const names = ['tok_embeddings', ...layerNames(2), 'rms_final', ...(sh === 'unshared' ? ['wcls'] : [])].sort();
      for (const c of [v0, v1, q]) expect([...c.tensors.keys()].sort()).toEqual(names);
    }
  });

  it('v0 and v1 give identical f32 tensors; q80 dequantizes to within half a step of them', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    for (const sh of ['unshared', 'shared']) {
      const v0 = cks[`v0-${sh}`], v1 = cks[`v1-${sh}`], q = cks[`q80-${sh}`];
      for (const [name, e0] of v0.tensors) {
        const e1 = v1.tensors.get(name)!, eq = q.tensors.get(name)!;
        expect(e1.shape).toEqual(e0.shape);
        expect(eq.shape).toEqual(e0.shape);
        const a = (await v0.read(name)) as Float32Array;
        const b = (await v1.read(name)) as Float32Array;
        expect(a).toBeInstanceOf(Float32Array);
        expect(b).toEqual(a);
        const r = await q.read(name);
        if (e0.shape.length === 1) {
          expect(eq.dtype).toBe('f32');
          expect(r).toEqual(a);
          continue;
        }
        expect(eq.dtype).toBe('q8_0');
        expect(eq.groupSize).toBe(64);
        expect(eq.byteLength).toBe(byteLengthOf(eq));
        const qd = r as Q80Data;
        expect(qd.q).toBeInstanceOf(Int8Array);
        expect(qd.scales.length).toBe(a.length / 64);
        const deq = dequantize(qd, 64);
        for (let i = 0; i < a.length; i++) {
          const step = qd.scales[Math.floor(i / 64)];
          if (!(Math.abs(deq[i] - a[i]) <= 0.5 * step * (1 + 1e-5))) {
            throw new Error(`${name}[${i}]: q80 ${deq[i]} vs v0 ${a[i]} differ by more than half a step ${step}`);
          }
        }
      }
    }
  });

  it('readInto fills caller memory with the standard layout; path, Blob and bytes agree', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const path = synthModel('ckpt-gqa-unshared-q80.bin', `${GQA} --format q80 --unshared`)!;
    const bytes = new Uint8Array(readFileSync(path));
    const sources = [
      await openCheckpoint(path, { chunkSize: 1000 }), // many small positioned reads
      await openCheckpoint(new Blob([bytes]), { chunkSize: 777 }),
      await openCheckpoint(bytes),
      await openCheckpoint(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
    ];
    try {
      expect(sources[1].source).toBe('<blob>');
      expect(sources[2].source).toBe('<buffer>');
      for (const name of ['tok_embeddings', 'layers.1.w2', 'rms_final', 'wcls']) {
        const e = sources[0].tensors.get(name)!;
        const want = bytes.subarray(e.byteOffset, e.byteOffset + e.byteLength);
        for (const s of sources) {
          // write into the middle of a bigger buffer, as a backend heap would
          const heap = new Uint8Array(e.byteLength + 16).fill(0xee);
          await s.readInto(s.tensors.get(name)!, heap.subarray(8, 8 + e.byteLength));
          expect(heap.subarray(8, 8 + e.byteLength)).toEqual(want);
          expect(heap[7]).toBe(0xee);
          expect(heap[8 + e.byteLength]).toBe(0xee);
        }
      }
      const e = sources[0].tensors.get('layers.0.wq')!;
      await expect(sources[0].readInto(e, new Uint8Array(e.byteLength - 1))).rejects.toBeInstanceOf(ArgumentError);
      await expect(sources[0].read('layers.9.wq')).rejects.toBeInstanceOf(ArgumentError);
    } finally {
      for (const s of sources) await s.close();
    }
    // A chunk size that cannot advance a read loop: before, a Blob read with chunkSize 0 spun forever on
    // microtasks (no timer could stop it). The path cases come first: code without the check fails there.
    for (const chunkSize of [0, -1, 0.5, NaN]) {
      await expect(openCheckpoint(path, { chunkSize })).rejects.toThrow(/chunkSize must be a positive integer/);
    }
    for (const chunkSize of [0, -1, 0.5, NaN]) {
      await expect(openCheckpoint(new Blob([bytes]), { chunkSize })).rejects.toThrow(ArgumentError);
    }
    await sources[0].close(); // twice is fine
    await expect(sources[0].read('rms_final')).rejects.toThrow(/closed/);
  });

  it('v0 "size tells": a vocab sign that disagrees with the file size follows the size', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    for (const sh of ['unshared', 'shared']) {
      const bytes = new Uint8Array(readFileSync(synthModel(`ckpt-gqa-${sh}-v0.bin`, `${GQA} --format v0${sh === 'unshared' ? ' --unshared' : ''}`)!));
      const dv = new DataView(bytes.buffer, bytes.byteOffset);
      dv.setInt32(20, -dv.getInt32(20, true), true); // flip the sign of vocab_size
      const ck = await openCheckpoint(bytes);
      expect(ck.config.vocabSize).toBe(512);
      expect(ck.config.sharedClassifier).toBe(sh === 'shared');
      expect(ck.tensors.has('wcls')).toBe(sh === 'unshared');
    }
  });
});

describe('malformed files give a FormatError naming the file', () => {
  let dir: string;
  let v0: Uint8Array, v1: Uint8Array, q80: Uint8Array;
  let skipped = false;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rama-ckpt-'));
    const p0 = synthModel('ckpt-gqa-unshared-v0.bin', `${GQA} --format v0 --unshared`);
    const p1 = synthModel('ckpt-gqa-unshared-v1.bin', `${GQA} --format v1 --unshared`);
    const pq = synthModel('ckpt-gqa-unshared-q80.bin', `${GQA} --format q80 --unshared`);
    if (!p0 || !p1 || !pq) {
      skipped = true;
      return;
    }
    v0 = new Uint8Array(readFileSync(p0));
    v1 = new Uint8Array(readFileSync(p1));
    q80 = new Uint8Array(readFileSync(pq));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Writes bytes to the temp dir and opens them by path. */
  const openBytes = (name: string, bytes: Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return openCheckpoint(p);
  };
  const patch = (bytes: Uint8Array, at: number, v: number) => {
    const b = bytes.slice();
    new DataView(b.buffer).setInt32(at, v, true);
    return b;
  };

  it('truncated and padded files', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const total = v1.byteLength.toLocaleString('en-US');
    await expectFormatError(openBytes('trunc-v1.bin', v1.subarray(0, v1.byteLength - 100)), /trunc-v1\.bin/, new RegExp(`implies ${total} bytes`), /truncated/);
    await expectFormatError(openBytes('trunc-v0.bin', v0.subarray(0, v0.byteLength - 4)), /trunc-v0\.bin/, /truncated/);
    await expectFormatError(openBytes('trunc-q80.bin', q80.subarray(0, q80.byteLength - 1)), /trunc-q80\.bin/, /group_size 64/);
    await expectFormatError(openBytes('long-v1.bin', concat(v1, new Uint8Array(3))), /long-v1\.bin/, /trailing/);
    await expectFormatError(openBytes('short-v1.bin', v1.subarray(0, 100)), /short-v1\.bin/, /256/);
    await expectFormatError(openBytes('short-v0.bin', v0.subarray(0, 20)), /short-v0\.bin/, /28-byte/);
    await expectFormatError(openBytes('empty.bin', new Uint8Array(0)), /empty\.bin/, /0 bytes/);
    await expectFormatError(openCheckpoint(join(dir, 'nonexistent.bin')), /nonexistent\.bin/, /ENOENT/);
  });

  it('wrong magic and unsupported versions', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const gguf = v1.slice();
    gguf.set([0x47, 0x47, 0x55, 0x46]); // "GGUF"
    await expectFormatError(openBytes('gguf.bin', gguf), /gguf\.bin/, /not a llama2\.c checkpoint/, /ak42/);
    await expectFormatError(openBytes('v3.bin', patch(v1, 4, 3)), /v3\.bin/, /version 3/);
    await expectFormatError(openBytes('text.bin', new TextEncoder().encode('hello, world, this is not a model file at all')), /not a llama2\.c checkpoint/);
  });

  it('header dimensions that lie, or are zero or negative', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    await expectFormatError(openBytes('lie-layers.bin', patch(v1, 16, 3)), /lie-layers\.bin/, /n_layers 3/, /implies/);
    await expectFormatError(openBytes('lie-hidden-v0.bin', patch(v0, 4, 200)), /hidden_dim 200/, /implies/);
    await expectFormatError(openBytes('zero-dim.bin', patch(v1, 8, 0)), /zero-dim\.bin/, /dim 0/, /positive/);
    await expectFormatError(openBytes('neg-seq.bin', patch(v1, 32, -5)), /seq_len -5/);
    await expectFormatError(openBytes('neg-vocab-v1.bin', patch(v1, 28, -512)), /vocab_size -512/);
    await expectFormatError(openBytes('zero-kv.bin', patch(v0, 16, 0)), /n_kv_heads 0/);
    await expectFormatError(openBytes('zero-dim-v0.bin', patch(v0, 0, 0)), /not a llama2\.c checkpoint/, /first int32 is 0/);
    await expectFormatError(openBytes('heads-div.bin', patch(v1, 20, 7)), /dim 64 is not divisible by n_heads 7/);
    await expectFormatError(openBytes('kv-div.bin', patch(v1, 24, 3)), /n_heads 8 is not a multiple of n_kv_heads 3/);
    await expectFormatError(openBytes('kv-more.bin', patch(v1, 24, 16)), /n_kv_heads 16/);
    // dim 64 / 32 heads = head size 2 (fine); 64 / 64 = 1 (odd)
    await expectFormatError(openBytes('odd-head.bin', patch(patch(v1, 20, 64), 24, 64)), /head size 1/, /even/);
    const badShared = v1.slice();
    badShared[36] = 7;
    await expectFormatError(openBytes('shared7.bin', badShared), /shared_classifier byte at offset 36 is 7/);
  });

  it('bad v2 group sizes', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    await expectFormatError(openBytes('gs0.bin', patch(q80, 37, 0)), /gs0\.bin/, /group_size 0/);
    await expectFormatError(openBytes('gsneg.bin', patch(q80, 37, -64)), /group_size -64/);
    await expectFormatError(openBytes('gs48.bin', patch(q80, 37, 48)), /group_size 48 does not divide dim 64/);
    // 32 divides 64 and 192 but changes the scale count: the size no longer matches
    await expectFormatError(openBytes('gs32.bin', patch(q80, 37, 32)), /group_size 32/, /implies/);
  });

  it('v2 files whose hidden_dim is not a multiple of group_size load, with the flat groups as in the file', async (ctx) => {
    // llama2.c's export.py picks group_size from dim alone and groups each tensor as one flat array:
    // here the rows of w2 ([64, 172]) straddle groups of 64.
    const args = '--dim 64 --hidden 172 --layers 1 --heads 8 --vocab 32 --seq 16';
    const qPath = synthModel('ckpt-h172-q80.bin', `${args} --format q80`);
    const fPath = synthModel('ckpt-h172-v1.bin', `${args} --format v1`);
    if (!qPath || !fPath) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const q = await openCheckpoint(qPath, { name: 'h172.bin' });
    const f = await openCheckpoint(fPath);
    try {
      expect(q.groupSize).toBe(64);
      const w2 = q.tensors.get('layers.0.w2')!;
      expect(w2).toMatchObject({ shape: [64, 172], dtype: 'q8_0', groupSize: 64, byteLength: 64 * 172 + 4 * 172 });
      // As the file has it, no backend takes it: its groups must be regrouped inside rows first (quant-q80's regroupQ80).
      expect(() => byteLengthOf(w2)).toThrow(/groups of 64 straddle its rows of 172/);
      // The same seed writes the same values in both formats: the flat groups dequantize to them within half a step.
      const data = (await q.read('layers.0.w2')) as Q80Data;
      expect(data.scales.length).toBe(172);
      const deq = dequantize(data, 64);
      const ref = (await f.read('layers.0.w2')) as Float32Array;
      for (let i = 0; i < ref.length; i++) expect(Math.abs(deq[i] - ref[i])).toBeLessThanOrEqual(data.scales[i >> 6] / 2 + 1e-7);
    } finally {
      await q.close();
      await f.close();
    }
  });

  it('a header claiming enormous dims on a small file fails in parseHeader, reading only the header', async () => {
    const head = akHeader({ dims: [1 << 30, 1 << 30, MAX_LAYERS, 1 << 10, 1 << 10, 1 << 30, 1 << 30] });
    const file = concat(head, new Uint8Array(4096));
    await expectFormatError(() => parseHeader(head, file.byteLength, 'huge.bin'), /huge\.bin/, /implies ~\S+ bytes but the file has 4,352/);
    const v0head = new Uint8Array(new Int32Array([1 << 20, 1 << 30, MAX_LAYERS, 1 << 10, 1 << 10, -(1 << 30), 1 << 30]).buffer);
    await expectFormatError(() => parseHeader(v0head, 28 + 100, 'huge-v0.bin'), /huge-v0\.bin/, /implies/);
    // Opened through a Blob that records every slice: only the header is ever read.
    const slices: [number, number][] = [];
    class RecordingBlob extends Blob {
      override slice(start?: number, end?: number, type?: string): Blob {
        slices.push([start ?? 0, end ?? this.size]);
        return super.slice(start, end, type);
      }
    }
    await expectFormatError(openCheckpoint(new RecordingBlob([file]), { name: 'huge-blob.bin' }), /huge-blob\.bin/);
    expect(slices).toEqual([[0, 256]]);
  });

  it('a header of millions of tiny layers whose size matches the file is refused, not built into a huge tensor table', () => {
    // dim 2, one head, vocab 1: a layer takes 104 bytes of file but ~2.4 KB of tensor table. Before MAX_LAYERS this
    // took 31 s and 2.4 GB of heap for a 104 MB file; past ~1.9 M layers the table's Map threw a RangeError.
    const v1 = (L: number) => akHeader({ dims: [2, 1, L, 1, 1, 1, 1] });
    const size = (L: number) => 256 + 104 * L + 16;
    const t0 = performance.now();
    expectFormatError(() => parseHeader(v1(1_000_000), size(1_000_000), 'deep.bin'), /^deep\.bin: v1 header has n_layers 1,000,000; at most 4,096/);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(parseHeader(v1(MAX_LAYERS), size(MAX_LAYERS), 'deep.bin').tensors.size).toBe(9 * MAX_LAYERS + 2);
    const v0 = new Uint8Array(Int32Array.from([2, 1, MAX_LAYERS + 1, 1, 1, 1, 1]).buffer);
    expectFormatError(() => parseHeader(v0, 28 + 104 * (MAX_LAYERS + 1) + 16 + 4, 'deep-v0.bin'), /n_layers 4,097/);
  });

  it('parseHeader is pure and agrees with openCheckpoint', async (ctx) => {
    if (skipped) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const layout = parseHeader(q80.subarray(0, 256), q80.byteLength, 'q.bin');
    const ck = await openCheckpoint(q80, { name: 'q.bin' });
    expect(layout.format).toBe('v2');
    expect(layout.headerSize).toBe(256);
    expect(layout.byteLength).toBe(q80.byteLength);
    expect(layout.groupSize).toBe(64);
    expect(layout.config).toEqual(ck.config);
    expect([...layout.tensors.entries()]).toEqual([...ck.tensors.entries()]);
    // tensors tile the file exactly, in file order
    let off = 256;
    for (const e of layout.tensors.values()) {
      expect(e.byteOffset).toBe(off);
      off += e.byteLength;
    }
    expect(off).toBe(q80.byteLength);
    const l0 = parseHeader(v0.subarray(0, 256), v0.byteLength, 'v0.bin');
    expect(l0.headerSize).toBe(28);
  });
});

describe('browser safety', () => {
  it('imports Node modules only dynamically', () => {
    for (const f of ['index.ts', 'header.ts', 'source.ts']) {
      const text = readFileSync(new URL(`./${f}`, import.meta.url), 'utf8');
      expect(text).not.toMatch(/^\s*import[^(]*from\s+['"](node:|fs|path)/m);
    }
  });
});
