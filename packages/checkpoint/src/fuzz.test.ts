/**
 * Property-based tests: a mutated checkpoint (truncated, junk appended, bytes
 * flipped, header words that lie) must end in a RamaError naming the source
 * or in a valid load whose every tensor reads, from bytes, a Blob and a path
 * alike; never a raw exception, a hang, or an allocation past the file's size.
 *
 * Reproduce a failure with the seed (and path) fast-check prints:
 *   RAMA_FUZZ_SEED=<seed> RAMA_FUZZ_PATH=<path> npx vitest run src/fuzz.test.ts
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, RamaError } from '@rama/core';
import { applyMutations, fuzzParams, lyingInt32, missingMessage, mutationsArb, sharedFile, synthModel, trackAllocations, type Mutation } from '@rama/testkit';
import { MAGIC, MAX_LAYERS, openCheckpoint, parseHeader, type Checkpoint } from './index.js';

type Mode = 'bytes' | 'blob' | 'path';
type Format = 'v0' | 'v1' | 'v2';

interface Shape {
  dim: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  seq: number;
  shared: boolean;
  /** v2 only */
  gs: number;
}

/** A header for the shape, as llama2.c's export.py (v1, v2) or legacy run.c (v0) writes it. */
function header(fmt: Format, s: Shape): Uint8Array {
  const dims = [s.dim, s.hidden, s.layers, s.heads, s.kvHeads, fmt === 'v0' && !s.shared ? -s.vocab : s.vocab, s.seq];
  if (fmt === 'v0') return new Uint8Array(Int32Array.from(dims).buffer);
  const h = new Uint8Array(256);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setInt32(4, fmt === 'v1' ? 1 : 2, true);
  dims.forEach((v, i) => dv.setInt32(8 + 4 * i, v, true));
  h[36] = s.shared ? 1 : 0;
  if (fmt === 'v2') dv.setInt32(37, s.gs, true);
  return h;
}

/**
 * The file size the format table in README.md gives, written out
 * independently of header.ts so the test does not take the reader's word.
 */
function fileSize(fmt: Format, s: Shape): number {
  const L = s.layers;
  const kvDim = (s.kvHeads * s.dim) / s.heads;
  const mat = (n: number) => (fmt === 'v2' ? n + 4 * (n / s.gs) : 4 * n);
  const perLayer = 2 * mat(s.dim * s.dim) + 2 * mat(kvDim * s.dim) + 3 * mat(s.hidden * s.dim);
  const mats = mat(s.vocab * s.dim) * (s.shared ? 1 : 2) + L * perLayer;
  const norms = 4 * (2 * L * s.dim + s.dim);
  const freqs = fmt === 'v0' ? 4 * s.seq * (s.dim / s.heads) : 0;
  return (fmt === 'v0' ? 28 : 256) + norms + mats + freqs;
}

/** A valid checkpoint: the header, then weight bytes from a small LCG (their values do not matter to the reader). */
function makeCheckpoint(fmt: Format, s: Shape, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(fileSize(fmt, s));
  const h = header(fmt, s);
  out.set(h);
  let x = seed >>> 0;
  for (let i = h.length; i < out.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Random valid shapes, small enough for hundreds of cases: head size even, kv heads divide heads, v2 groups divide dim and hidden. */
const shapeArb: fc.Arbitrary<{ fmt: Format; shape: Shape; seed: number }> = fc
  .record({
    fmt: fc.constantFrom<Format>('v0', 'v1', 'v2'),
    heads: fc.integer({ min: 1, max: 4 }),
    halfHead: fc.integer({ min: 1, max: 4 }),
    kvPick: fc.nat(),
    hiddenMul: fc.integer({ min: 1, max: 6 }),
    gsPick: fc.nat(),
    layers: fc.integer({ min: 1, max: 2 }),
    vocab: fc.integer({ min: 1, max: 40 }),
    seq: fc.integer({ min: 1, max: 16 }),
    shared: fc.boolean(),
    seed: fc.nat(),
  })
  .map((r) => {
    const dim = r.heads * 2 * r.halfHead;
    const divisors = (n: number) => Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);
    const kvDivs = divisors(r.heads);
    const gsDivs = divisors(dim);
    const gs = r.fmt === 'v2' ? gsDivs[r.gsPick % gsDivs.length] : 1;
    const shape: Shape = {
      dim,
      hidden: r.fmt === 'v2' ? gs * r.hiddenMul : r.hiddenMul * 4 + (r.gsPick % 3),
      layers: r.layers,
      heads: r.heads,
      kvHeads: kvDivs[r.kvPick % kvDivs.length],
      vocab: r.vocab,
      seq: r.seq,
      shared: r.shared,
      gs,
    };
    return { fmt: r.fmt, shape, seed: r.seed };
  });

let dir: string;
let caseNo = 0;

/** Opens `bytes` as `mode` and reads every tensor; the source name is what messages must mention. */
async function openAndReadAll(bytes: Uint8Array<ArrayBuffer>, mode: Mode): Promise<{ name: string; open: () => Promise<Checkpoint>; run: () => Promise<Checkpoint> }> {
  let name: string;
  let open: () => Promise<Checkpoint>;
  if (mode === 'path') {
    name = join(dir, `case-${caseNo++ % 4}.bin`);
    writeFileSync(name, bytes);
    open = () => openCheckpoint(name, { chunkSize: 1 + (bytes.length % 4096) });
  } else if (mode === 'blob') {
    name = 'mutant-blob.bin';
    const blob = new Blob([bytes]);
    open = () => openCheckpoint(blob, { name, chunkSize: 1 + (bytes.length % 4096) });
  } else {
    name = 'mutant.bin';
    open = () => openCheckpoint(bytes, { name });
  }
  const run = async () => {
    const ck = await open();
    try {
      for (const n of ck.tensors.keys()) await ck.read(n);
      return ck;
    } finally {
      await ck.close();
    }
  };
  return { name, open, run };
}

/**
 * The property: a RamaError naming the source, or a valid load; and the
 * reader allocated no buffer bigger than the file, and no more in total than
 * the header buffer plus one copy of the file (every tensor read once).
 */
async function checkLoad(bytes: Uint8Array<ArrayBuffer>, mode: Mode): Promise<void> {
  const { name, run } = await openAndReadAll(bytes, mode);
  const budget = bytes.length + 256;
  const { settled, log } = await trackAllocations(run, budget);
  if (settled.status === 'rejected') {
    const e = settled.reason;
    if (!(e instanceof RamaError)) throw new Error(`not a RamaError: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, { cause: e });
    expect(e.message).toContain(name);
  } else {
    const ck = settled.value;
    expect(ck.fileSize).toBe(bytes.length);
    let sum = 0;
    for (const t of ck.tensors.values()) {
      expect(t.byteOffset + t.byteLength).toBeLessThanOrEqual(bytes.length);
      sum += t.byteLength;
    }
    expect(sum).toBeLessThanOrEqual(bytes.length);
  }
  expect(log.largest).toBeLessThanOrEqual(Math.max(bytes.length, 256));
  expect(log.total).toBeLessThanOrEqual(budget);
}

const modeArb = fc.constantFrom<Mode>('bytes', 'blob', 'path');
/** Header words of every format (v0's seven int32, v1/v2's magic, version, dims, shared byte and unaligned group size). */
const HEADER_OFFSETS = [0, 4, 8, 12, 16, 20, 24, 28, 32, 33, 36, 37, 40];

describe('fuzz: mutated checkpoints end in a RamaError or a valid load', () => {
  const bases: { label: string; bytes: Uint8Array<ArrayBuffer> }[] = [];
  let synthMissing = false;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rama-ckpt-fuzz-'));
    const tiny = '--dim 16 --hidden 32 --layers 2 --heads 4 --kv-heads 2 --vocab 24 --seq 8';
    for (const fmt of ['v0', 'v1', 'q80']) {
      for (const unshared of [false, true]) {
        const p = synthModel(`ckpt-fuzz-${fmt}${unshared ? '-unshared' : ''}.bin`, `${tiny} --format ${fmt}${unshared ? ' --unshared' : ''}`);
        if (!p) synthMissing = true;
        else bases.push({ label: `synth ${fmt}${unshared ? ' unshared' : ''}`, bytes: new Uint8Array(readFileSync(p)) });
      }
    }
    const real = sharedFile('models/stories260K.bin');
    if (real) bases.push({ label: 'stories260K.bin', bytes: new Uint8Array(readFileSync(real)) });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the random valid shapes load, tile the file and read back their bytes', async () => {
    await fc.assert(
      fc.asyncProperty(shapeArb, modeArb, async ({ fmt, shape, seed }, mode) => {
        const bytes = makeCheckpoint(fmt, shape, seed);
        const { open } = await openAndReadAll(bytes, mode);
        const ck = await open();
        try {
          for (const t of ck.tensors.values()) {
            const dst = new Uint8Array(t.byteLength);
            await ck.readInto(t, dst);
            if (Buffer.compare(dst, bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength)) !== 0) throw new Error(`${t.label}: readInto returned other bytes than the file's`);
          }
        } finally {
          await ck.close();
        }
        expect(ck.format).toBe(fmt);
        expect(ck.config).toMatchObject({ dim: shape.dim, hiddenDim: shape.hidden, nKvHeads: shape.kvHeads, vocabSize: shape.vocab, sharedClassifier: shape.shared });
        const byOffset = [...ck.tensors.values()].sort((a, b) => a.byteOffset - b.byteOffset);
        let end = fmt === 'v0' ? 28 : 256;
        for (const t of byOffset) {
          // v0 keeps its two unused RoPE tables between rms_final and wcls
          if (t.label === 'wcls' && fmt === 'v0') end += 4 * shape.seq * (shape.dim / shape.heads);
          expect(t.byteOffset, t.label).toBe(end);
          end += t.byteLength;
        }
        expect(end + (fmt === 'v0' && shape.shared ? 4 * shape.seq * (shape.dim / shape.heads) : 0)).toBe(bytes.length);
      }),
      { ...fuzzParams(200), timeout: 5000 },
    );
  });

  it('headers that lie consistently (the file size is what they imply) parse to a bounded tensor table', () => {
    // A valid small shape with one or two fields replaced by lies; the size is computed from the lying fields, so
    // only the header's own checks stand between such a crafted file and the tensor table.
    const fields = ['dim', 'hidden', 'layers', 'heads', 'kvHeads', 'vocab', 'seq', 'gs'] as const;
    const arb = fc
      .tuple(shapeArb, fc.array(fc.record({ field: fc.constantFrom(...fields), value: lyingInt32 }), { minLength: 1, maxLength: 2 }))
      .map(([{ fmt, shape }, lies]) => ({ fmt, shape: { ...shape, ...Object.fromEntries(lies.map((l) => [l.field, l.value])) } as Shape }));
    fc.assert(
      fc.property(arb, ({ fmt, shape }) => {
        const size = fileSize(fmt, shape);
        try {
          const layout = parseHeader(header(fmt, shape), Number.isSafeInteger(size) ? size : 1 << 30, 'lie.bin');
          expect(layout.byteLength).toBe(size);
          expect(layout.tensors.size).toBeLessThanOrEqual(9 * MAX_LAYERS + 3);
        } catch (e) {
          if (!(e instanceof FormatError)) throw e;
          expect(e.message).toMatch(/^lie\.bin/);
        }
      }),
      fuzzParams(500),
    );
  });

  it('mutations of synthetic, random-shaped and real checkpoints', async (ctx) => {
    if (synthMissing) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    // Bases are named (a file) or described (a shape and seed), so a counterexample prints short.
    const baseArb = fc.oneof(fc.constantFrom(...bases.map((b) => b.label)), shapeArb);
    const bytesOf = (b: string | { fmt: Format; shape: Shape; seed: number }) =>
      typeof b === 'string' ? bases.find((x) => x.label === b)!.bytes : makeCheckpoint(b.fmt, b.shape, b.seed);
    await fc.assert(
      fc.asyncProperty(baseArb, mutationsArb({ int32Offsets: HEADER_OFFSETS }), modeArb, async (base, mutations: Mutation[], mode) => {
        await checkLoad(applyMutations(bytesOf(base), mutations), mode);
      }),
      { ...fuzzParams(500), timeout: 5000 },
    );
  });
});
