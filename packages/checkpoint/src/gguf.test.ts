/**
 * The GGUF reader: files written here (every metadata type, nested arrays,
 * tensor infos, alignment) and llama.cpp's own (../shared/gguf) read back
 * exactly, from bytes, a Blob and a path, through small read windows; every
 * malformed or lying file is a FormatError naming the file and what is wrong,
 * without an allocation past the file's size; ggml blocks convert exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, RamaError } from '@rama/core';
import { applyMutations, fuzzParams, missingMessage, mutationsArb, sharedFile, trackAllocations, type Mutation } from '@rama/testkit';
import { GGML_TYPES, ggmlToF32, ggmlToQ80, openGGUF, type GGMLType, type GGUFFile, type GGUFValue } from './index.js';

// ---- a GGUF writer, from the spec (independent of the reader) ----

type V =
  | { t: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; v: number }
  | { t: 'u64' | 'i64'; v: bigint }
  | { t: 'bool'; v: boolean }
  | { t: 'str'; v: string }
  | { t: 'arr'; et: number; items: V[] };

const TYPE_ID = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9, u64: 10, i64: 11, f64: 12 } as const;

class Writer {
  private parts: number[] = [];
  u8(x: number) { this.parts.push(x & 0xff); }
  raw(b: Uint8Array) { for (const x of b) this.parts.push(x); }
  u32(x: number) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, x >>> 0, true); this.raw(b); }
  u64(x: number | bigint) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(x), true); this.raw(b); }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); this.raw(b); }
  value(v: V) {
    const dv = new DataView(new ArrayBuffer(8));
    const put = (n: number) => this.raw(new Uint8Array(dv.buffer, 0, n));
    switch (v.t) {
      case 'u8': return this.u8(v.v);
      case 'i8': return this.u8(v.v);
      case 'u16': dv.setUint16(0, v.v, true); return put(2);
      case 'i16': dv.setInt16(0, v.v, true); return put(2);
      case 'u32': dv.setUint32(0, v.v, true); return put(4);
      case 'i32': dv.setInt32(0, v.v, true); return put(4);
      case 'f32': dv.setFloat32(0, v.v, true); return put(4);
      case 'f64': dv.setFloat64(0, v.v, true); return put(8);
      case 'u64': dv.setBigUint64(0, v.v, true); return put(8);
      case 'i64': dv.setBigInt64(0, v.v, true); return put(8);
      case 'bool': return this.u8(v.v ? 1 : 0);
      case 'str': return this.str(v.v);
      case 'arr':
        this.u32(v.et);
        this.u64(v.items.length);
        for (const it of v.items) this.value(it);
    }
  }
  get length() { return this.parts.length; }
  bytes() { return Uint8Array.from(this.parts); }
}

interface TensorSpec { name: string; ne: number[]; type: number; data?: Uint8Array }

/** A GGUF v3 file (or `version`): metadata, tensor infos, padding, then the tensors' data, each aligned. */
function writeGGUF(kv: [string, V][], tensors: TensorSpec[], opts: { version?: number; alignment?: number } = {}): Uint8Array<ArrayBuffer> {
  const align = opts.alignment ?? 32;
  const w = new Writer();
  w.raw(new TextEncoder().encode('GGUF'));
  w.u32(opts.version ?? 3);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [k, v] of kv) {
    w.str(k);
    w.u32(TYPE_ID[v.t]);
    w.value(v);
  }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const type = GGML_TYPES.get(t.type)!;
    const bytes = (t.ne.reduce((a, b) => a * b, 1) / type.blockSize) * type.bytesPerBlock;
    offsets.push(off);
    off = Math.ceil((off + bytes) / align) * align;
  }
  tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.ne.length);
    for (const n of t.ne) w.u64(n);
    w.u32(t.type);
    w.u64(offsets[i]);
  });
  const head = w.bytes();
  const dataStart = Math.ceil(head.length / align) * align;
  const out = new Uint8Array(dataStart + off);
  out.set(head);
  tensors.forEach((t, i) => {
    const type = GGML_TYPES.get(t.type)!;
    const n = (t.ne.reduce((a, b) => a * b, 1) / type.blockSize) * type.bytesPerBlock;
    const data = t.data ?? Uint8Array.from({ length: n }, (_, j) => (j * 37 + i * 11) & 0xff);
    out.set(data.subarray(0, n), dataStart + offsets[i]);
  });
  return out;
}

const KV: [string, V][] = [
  ['general.architecture', { t: 'str', v: 'llama' }],
  ['general.name', { t: 'str', v: 'héllo ▁wörld 🦙' }],
  ['u8', { t: 'u8', v: 200 }],
  ['i8', { t: 'i8', v: -5 }],
  ['u16', { t: 'u16', v: 65000 }],
  ['i16', { t: 'i16', v: -300 }],
  ['u32', { t: 'u32', v: 4000000000 }],
  ['i32', { t: 'i32', v: -7 }],
  ['f32', { t: 'f32', v: 1e-5 }],
  ['f64', { t: 'f64', v: Math.PI }],
  ['u64 small', { t: 'u64', v: 123n }],
  ['u64 big', { t: 'u64', v: 2n ** 63n + 5n }],
  ['i64', { t: 'i64', v: -(2n ** 60n) }],
  ['bool', { t: 'bool', v: true }],
  ['empty string', { t: 'str', v: '' }],
  ['tokens', { t: 'arr', et: 8, items: ['<unk>', '▁the', '', '日本'].map((v) => ({ t: 'str', v }) as V) }],
  ['scores', { t: 'arr', et: 6, items: [0, -1.5, 2.25].map((v) => ({ t: 'f32', v }) as V) }],
  ['types', { t: 'arr', et: 5, items: [1, 6, -3].map((v) => ({ t: 'i32', v }) as V) }],
  ['u64s', { t: 'arr', et: 10, items: [1n, 2n ** 64n - 1n].map((v) => ({ t: 'u64', v }) as V) }],
  ['bools', { t: 'arr', et: 7, items: [true, false].map((v) => ({ t: 'bool', v }) as V) }],
  ['empty', { t: 'arr', et: 4, items: [] }],
  ['nested', { t: 'arr', et: 9, items: [{ t: 'arr', et: 8, items: [{ t: 'str', v: 'a' }] }, { t: 'arr', et: 2, items: [{ t: 'u16', v: 7 }] }] }],
];

const EXPECTED: Record<string, GGUFValue> = {
  'general.architecture': 'llama',
  'general.name': 'héllo ▁wörld 🦙',
  u8: 200, i8: -5, u16: 65000, i16: -300, u32: 4000000000, i32: -7, f32: Math.fround(1e-5), f64: Math.PI,
  'u64 small': 123, 'u64 big': 2n ** 63n + 5n, i64: -(2n ** 60n), bool: true, 'empty string': '',
  tokens: ['<unk>', '▁the', '', '日本'],
  scores: Float32Array.of(0, -1.5, 2.25),
  types: Int32Array.of(1, 6, -3),
  u64s: BigUint64Array.of(1n, 2n ** 64n - 1n),
  bools: Uint8Array.of(1, 0),
  empty: new Uint32Array(0),
  nested: [['a'], Uint16Array.of(7)],
};

const T = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q8_0: 8, Q6_K: 14, BF16: 30, I8: 24 };
const TENSORS: TensorSpec[] = [
  { name: 'a', ne: [64, 3], type: T.Q4_0 },
  { name: 'b', ne: [5], type: T.F32 },
  { name: 'c', ne: [256, 2, 1, 1], type: T.Q6_K },
  { name: 'd', ne: [3, 2], type: T.F16 },
];

let dir: string;
beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'rama-gguf-'))));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Mode = 'bytes' | 'blob' | 'path';
let caseNo = 0;
async function open(bytes: Uint8Array<ArrayBuffer>, mode: Mode, windowSize?: number): Promise<{ name: string; file: () => Promise<GGUFFile> }> {
  if (mode === 'path') {
    const name = join(dir, `case-${caseNo++ % 4}.gguf`);
    writeFileSync(name, bytes);
    return { name, file: () => openGGUF(name, { windowSize, chunkSize: 1 + (bytes.length % 999) }) };
  }
  const name = mode === 'blob' ? 'm.blob.gguf' : 'm.gguf';
  return { name, file: () => openGGUF(mode === 'blob' ? new Blob([bytes]) : bytes, { name, windowSize }) };
}

async function formatError(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const e = await openGGUF(bytes, { name: 'bad.gguf' }).then((f) => (f.close(), undefined), (err: unknown) => err);
  if (!(e instanceof FormatError)) throw new Error(`expected a FormatError, got ${String(e)}`);
  expect(e.message).toMatch(/^bad\.gguf: /);
  return e.message;
}

describe('GGUF: files written from the spec read back exactly', () => {
  for (const mode of ['bytes', 'blob', 'path'] as const) {
    for (const windowSize of [undefined, 5]) {
      it(`${mode}, window ${windowSize ?? 'default'}`, async () => {
        const bytes = writeGGUF(KV, TENSORS);
        const f = await (await open(bytes, mode, windowSize)).file();
        try {
          expect(f.version).toBe(3);
          expect(f.alignment).toBe(32);
          expect(Object.fromEntries(f.metadata)).toEqual(EXPECTED);
          expect([...f.metadata.keys()]).toEqual(KV.map(([k]) => k));
          expect([...f.tensors.keys()]).toEqual(['a', 'b', 'c', 'd']);
          const a = f.tensors.get('a')!;
          expect(a).toMatchObject({ ne: [64, 3], elements: 192, byteLength: 6 * 18 });
          expect(a.type.name).toBe('Q4_0');
          expect(f.tensors.get('c')!.byteLength).toBe(2 * 210);
          for (const t of f.tensors.values()) {
            expect(t.byteOffset % 32).toBe(0);
            const dst = new Uint8Array(t.byteLength);
            await f.readInto(t, dst);
            expect(Buffer.compare(dst, bytes.subarray(t.byteOffset, t.byteOffset + t.byteLength))).toBe(0);
          }
          const part = new Uint8Array(3);
          await f.readInto(a, part, 10);
          expect([...part]).toEqual([...bytes.subarray(a.byteOffset + 10, a.byteOffset + 13)]);
          await expect(f.readInto(a, new Uint8Array(2), a.byteLength - 1)).rejects.toThrow(/do not lie within/);
        } finally {
          await f.close();
        }
      });
    }
  }

  it('version 2, general.alignment 64, no tensors', async () => {
    const f = await openGGUF(writeGGUF([['general.alignment', { t: 'u32', v: 64 }]], TENSORS, { version: 2, alignment: 64 }));
    expect(f.version).toBe(2);
    expect(f.alignment).toBe(64);
    for (const t of f.tensors.values()) expect(t.byteOffset % 64).toBe(0);
    await f.close();
    const empty = await openGGUF(writeGGUF([], []));
    expect(empty.tensors.size).toBe(0);
    await empty.close();
  });
});

describe("GGUF: llama.cpp's files", () => {
  it('stories260K-q4_k_m: metadata, types, offsets', async (ctx) => {
    const p = sharedFile('gguf/stories260K-q4_k_m.gguf');
    if (!p) return ctx.skip(missingMessage('gguf/stories260K-q4_k_m.gguf'));
    const f = await openGGUF(p);
    try {
      expect(f.metadata.get('general.architecture')).toBe('llama');
      expect(f.metadata.get('llama.block_count')).toBe(5);
      expect(f.metadata.get('llama.attention.layer_norm_rms_epsilon')).toBe(Math.fround(1e-5));
      expect((f.metadata.get('tokenizer.ggml.tokens') as string[]).slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
      expect(f.metadata.get('tokenizer.ggml.scores')).toBeInstanceOf(Float32Array);
      expect(f.metadata.get('tokenizer.ggml.token_type')).toBeInstanceOf(Int32Array);
      expect(f.tensors.get('token_embd.weight')).toMatchObject({ ne: [64, 512], type: { name: 'Q5_0' } });
      expect(f.tensors.get('blk.0.ffn_down.weight')).toMatchObject({ ne: [172, 64], type: { name: 'F16' } });
      expect(f.tensors.size).toBe(3 + 5 * 9);
    } finally {
      await f.close();
    }
  });

  it('llama2vocab-tiny-f32 (32000 tokens): metadata is read through a small window, never the whole file', async (ctx) => {
    const p = sharedFile('gguf/llama2vocab-tiny-f32.gguf');
    if (!p) return ctx.skip(missingMessage('gguf/llama2vocab-tiny-f32.gguf'));
    const { settled, log } = await trackAllocations(() => openGGUF(p, { windowSize: 1 << 16 }), 1 << 20);
    if (settled.status === 'rejected') throw settled.reason;
    const f = settled.value;
    expect((f.metadata.get('tokenizer.ggml.tokens') as string[]).length).toBe(32000);
    expect(f.fileSize).toBeGreaterThan(17e6);
    expect(log.total).toBeLessThan(4 << 20);
    await f.close();
  });
});

describe('GGUF: malformed files are FormatErrors naming the file and the fault', () => {
  const good = () => writeGGUF(KV.slice(0, 3), TENSORS);
  const set32 = (b: Uint8Array<ArrayBuffer>, at: number, v: number) => (new DataView(b.buffer).setUint32(at, v, true), b);
  const set64 = (b: Uint8Array<ArrayBuffer>, at: number, v: bigint) => (new DataView(b.buffer).setBigUint64(at, v, true), b);

  it('not GGUF, version 1, big-endian, unknown versions', async () => {
    expect(await formatError(Uint8Array.from([1, 2, 3]))).toMatch(/too short/);
    expect(await formatError(new TextEncoder().encode('ak42xxxxxxxx'))).toMatch(/not a GGUF file/);
    expect(await formatError(set32(good(), 4, 1))).toMatch(/version 1, which is not supported/);
    expect(await formatError(set32(good(), 4, 0x03000000))).toMatch(/big-endian GGUF file .*not supported/);
    expect(await formatError(set32(good(), 4, 4))).toMatch(/version 4; versions 2 and 3/);
  });

  it('counts and lengths that lie: no allocation beyond the file', async () => {
    const cases: [Uint8Array<ArrayBuffer>, RegExp][] = [
      [set64(good(), 8, 2n ** 40n), /says it has 1099511627776 tensors/],
      [set64(good(), 16, 2n ** 40n), /metadata entries, more than/],
      [set64(good(), 16, 2n ** 63n), /metadata count is 9223372036854775808, larger than any file/],
      [set64(good(), 24, 2n ** 31n), /metadata key 0 is 2,147,483,648 bytes long/],
    ];
    // the tokens array's count (KV[15]) lies
    const w = writeGGUF([KV[15]], []);
    const countAt = 24 + 8 + 'tokens'.length + 4 + 4;
    cases.push([set64(w, countAt, 2n ** 35n), /metadata "tokens" says it has 34,359,738,368 elements/]);
    for (const [bytes, msg] of cases) {
      const { settled, log } = await trackAllocations(() => formatError(bytes), bytes.length + (1 << 20));
      if (settled.status === 'rejected') throw settled.reason;
      expect(settled.value).toMatch(msg);
      expect(log.largest).toBeLessThanOrEqual(Math.max(bytes.length, 64));
    }
  });

  it('tensor infos: unknown and unsupported types, dimensions, block sizes, offsets, the file end', async () => {
    const one = (t: Partial<TensorSpec>, kv: [string, V][] = []) => writeGGUF(kv, [{ name: 'w', ne: [32, 2], type: T.F32, ...t }]);
    const corrupt = (t: Partial<TensorSpec>, patch: (b: Uint8Array<ArrayBuffer>, infoAt: number) => void) => {
      const b = one(t);
      patch(b, 24 + 8 + 1); // the tensor info follows the header and the name "w"
      return b;
    };
    expect(await formatError(corrupt({}, (b, at) => set32(b, at + 4 + 16, 16)))).toMatch(/tensor "w" has ggml type IQ2_XXS, which is not supported/);
    expect(await formatError(corrupt({}, (b, at) => set32(b, at + 4 + 16, 99)))).toMatch(/tensor "w" has ggml type unknown type 99/);
    expect(await formatError(corrupt({}, (b, at) => set32(b, at, 5)))).toMatch(/tensor "w" has 5 dimensions; 1 to 4/);
    expect(await formatError(corrupt({}, (b, at) => set32(b, at, 0)))).toMatch(/tensor "w" has 0 dimensions/);
    expect(await formatError(corrupt({}, (b, at) => set64(b, at + 4, 0n)))).toMatch(/dimension 0 of size 0/);
    expect(await formatError(corrupt({ ne: [48, 2] }, (b, at) => set32(b, at + 4 + 16, T.Q8_0)))).toMatch(/Q8_0 with rows of 48, not a multiple of its block size 32/);
    expect(await formatError(corrupt({}, (b, at) => set64(b, at + 4 + 16 + 4, 4n)))).toMatch(/offset 4 is not a multiple of the alignment 32/);
    expect(await formatError(corrupt({}, (b, at) => set64(b, at + 4 + 16 + 4, 1024n)))).toMatch(/past the end/);
    expect(await formatError(corrupt({}, (b, at) => set64(b, at + 4 + 8, 2n ** 40n)))).toMatch(/more than the .*-byte file can hold/);
    expect(await formatError(one({}, [['general.alignment', { t: 'u32', v: 24 }]]))).toMatch(/general\.alignment is 24, expected a power of two/);
    expect(await formatError(writeGGUF([['k', { t: 'u8', v: 1 }], ['k', { t: 'u8', v: 2 }]], []))).toMatch(/the metadata key "k" twice/);
    expect(await formatError(writeGGUF([], [{ name: 'w', ne: [8], type: T.F32 }, { name: 'w', ne: [8], type: T.F32 }]))).toMatch(/two tensors named "w"/);
    const overlap = writeGGUF([], [{ name: 'a', ne: [16], type: T.F32 }, { name: 'b', ne: [16], type: T.F32 }]);
    set64(overlap, 24 + (8 + 1 + 4 + 8 + 4 + 8) + 8 + 1 + 4 + 8 + 4, 0n);
    expect(await formatError(overlap)).toMatch(/tensors "a" and "b" overlap/);
    const badUtf8 = writeGGUF([['s', { t: 'str', v: 'ab' }]], [], { alignment: 1 });
    badUtf8[badUtf8.length - 1] = 0xff;
    expect(await formatError(badUtf8)).toMatch(/metadata "s" is not valid UTF-8/);
    const badBool = writeGGUF([['b', { t: 'bool', v: true }]], [], { alignment: 1 });
    badBool[badBool.length - 1] = 2;
    expect(await formatError(badBool)).toMatch(/bool of value 2/);
    const badType = writeGGUF([['x', { t: 'u8', v: 1 }]], []);
    set32(badType, 24 + 8 + 1, 13);
    expect(await formatError(badType)).toMatch(/value type 13, not a GGUF type/);
  });

  it('nested arrays deeper than 8 are refused', async () => {
    let v: V = { t: 'u8', v: 1 };
    for (let i = 0; i < 10; i++) v = { t: 'arr', et: v.t === 'arr' ? 9 : 0, items: [v] };
    expect(await formatError(writeGGUF([['deep', v]], []))).toMatch(/nests arrays deeper than 8/);
  });

  it('every truncation of a valid file before the end of its last tensor is a FormatError', async () => {
    const bytes = writeGGUF(KV, TENSORS);
    const f = await openGGUF(bytes);
    const end = Math.max(...[...f.tensors.values()].map((t) => t.byteOffset + t.byteLength));
    await f.close();
    for (let n = 0; n < end; n += 7) {
      const msg = await formatError(bytes.slice(0, n));
      expect(msg).toMatch(/truncated|too short|past the end|before its data section|bytes left|bytes long/);
    }
  });
});

describe('fuzz: mutated GGUF files end in a RamaError or a valid load', () => {
  const modeArb = fc.constantFrom<Mode>('bytes', 'blob', 'path');
  it('mutations of a written file and of aidreams260K-q4_0.gguf', async () => {
    const bases: Uint8Array<ArrayBuffer>[] = [writeGGUF(KV, TENSORS), writeGGUF(KV.slice(10), TENSORS.slice(1), { version: 2 })];
    const real = sharedFile('gguf/aidreams260K-q4_0.gguf');
    if (real) bases.push(new Uint8Array(readFileSync(real)));
    // header words and the first key's length, where lies matter most
    const offsets = [4, 8, 12, 16, 20, 24, 28, 32, 40, 44, 48];
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: bases.length - 1 }), mutationsArb({ int32Offsets: offsets }), modeArb, fc.constantFrom(undefined, 13), async (b, muts: Mutation[], mode, windowSize) => {
        const bytes = applyMutations(bases[b], muts);
        const { name, file } = await open(bytes, mode, windowSize);
        const run = async () => {
          const f = await file();
          try {
            for (const t of f.tensors.values()) await f.readInto(t, new Uint8Array(t.byteLength));
            return f;
          } finally {
            await f.close();
          }
        };
        const budget = 2 * bytes.length + (1 << 20) + 4096;
        const { settled, log } = await trackAllocations(run, budget);
        if (settled.status === 'rejected') {
          const e = settled.reason;
          if (!(e instanceof RamaError)) throw new Error(`not a RamaError: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, { cause: e });
          expect(e.message).toContain(name);
        } else {
          for (const t of settled.value.tensors.values()) expect(t.byteOffset + t.byteLength).toBeLessThanOrEqual(bytes.length);
        }
        expect(log.largest).toBeLessThanOrEqual(Math.max(bytes.length, 1 << 20));
      }),
      { ...fuzzParams(300), timeout: 5000 },
    );
  });
});

// ---- conversions, against ggml's formulas written out per element ----

const f16 = (h: number): number => {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 1023;
  return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
};
const rnd = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (Math.imul(i + 1, 2654435761) ^ seed) >>> 24);
/** A random block with a finite f16 scale at `at`. */
function blocks(type: GGMLType, n: number, seed: number, scaleAt: number): Uint8Array {
  const b = rnd((n / type.blockSize) * type.bytesPerBlock, seed);
  for (let o = scaleAt; o < b.length; o += type.bytesPerBlock) b[o + 1] &= 0x3b; // exponent < 31
  return b;
}

/** ggml's dequantize_row_* for one block type, value by value, in f32. */
function reference(type: string, b: Uint8Array, n: number): Float32Array {
  const y = new Float32Array(n);
  const h = (i: number) => f16(b[i] | (b[i + 1] << 8));
  for (let blk = 0; blk < n / (type === 'Q6_K' ? 256 : 32); blk++) {
    if (type === 'Q8_0') {
      const o = blk * 34;
      for (let j = 0; j < 32; j++) y[blk * 32 + j] = Math.fround(((b[o + 2 + j] << 24) >> 24) * h(o));
    } else if (type === 'Q4_0') {
      const o = blk * 18;
      for (let j = 0; j < 16; j++) {
        y[blk * 32 + j] = Math.fround(((b[o + 2 + j] & 15) - 8) * h(o));
        y[blk * 32 + j + 16] = Math.fround(((b[o + 2 + j] >> 4) - 8) * h(o));
      }
    } else if (type === 'Q5_0') {
      const o = blk * 22;
      const qh = b[o + 2] | (b[o + 3] << 8) | (b[o + 4] << 16) | (b[o + 5] << 24);
      for (let j = 0; j < 16; j++) {
        const x0 = (b[o + 6 + j] & 15) | (((qh >> j) << 4) & 16);
        const x1 = (b[o + 6 + j] >> 4) | ((qh >> (j + 12)) & 16);
        y[blk * 32 + j] = Math.fround((x0 - 16) * h(o));
        y[blk * 32 + j + 16] = Math.fround((x1 - 16) * h(o));
      }
    } else {
      const o = blk * 210;
      const d = h(o + 208);
      for (let half = 0; half < 2; half++) {
        const ql = o + 64 * half, qh = o + 128 + 32 * half, sc = o + 192 + 8 * half, yy = blk * 256 + 128 * half;
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const s = (k: number) => Math.fround(d * ((b[sc + is + k] << 24) >> 24));
          y[yy + l] = Math.fround(s(0) * (((b[ql + l] & 15) | (((b[qh + l] >> 0) & 3) << 4)) - 32));
          y[yy + l + 32] = Math.fround(s(2) * (((b[ql + l + 32] & 15) | (((b[qh + l] >> 2) & 3) << 4)) - 32));
          y[yy + l + 64] = Math.fround(s(4) * (((b[ql + l] >> 4) | (((b[qh + l] >> 4) & 3) << 4)) - 32));
          y[yy + l + 96] = Math.fround(s(6) * (((b[ql + l + 32] >> 4) | (((b[qh + l] >> 6) & 3) << 4)) - 32));
        }
      }
    }
  }
  return y;
}

describe('ggml blocks convert exactly', () => {
  const type = (name: string) => [...GGML_TYPES.values()].find((t) => t.name === name)!;
  for (const [name, scaleAt, gs] of [['Q8_0', 0, 32], ['Q4_0', 0, 32], ['Q5_0', 0, 32], ['Q6_K', 208, 16]] as const) {
    it(`${name} to q8_0 (groups of ${gs}) and to f32: ggml's values, bit for bit`, () => {
      const n = 1024;
      const t = type(name);
      for (const seed of [1, 2, 3]) {
        const b = blocks(t, n, seed, scaleAt);
        const q = new Int8Array(n);
        const scales = new Float32Array(n / gs);
        ggmlToQ80(t, b, q, scales, n, 'x');
        const want = reference(name, b, n);
        const got = Float32Array.from(q, (v, i) => scales[(i / gs) | 0] * v);
        expect(Buffer.compare(Buffer.from(got.buffer), Buffer.from(want.buffer))).toBe(0);
        const f = new Float32Array(n);
        ggmlToF32(t, b, f, n, 'x');
        expect(Buffer.compare(Buffer.from(f.buffer), Buffer.from(want.buffer))).toBe(0);
      }
    });
  }

  it('F16 and BF16 widen exactly (every f16 value), F32 copies', () => {
    const all = Uint8Array.from({ length: 2 * 65536 }, (_, i) => (i & 1 ? (i >> 1) >> 8 : (i >> 1) & 0xff));
    const out = new Float32Array(65536);
    ggmlToF32(type('F16'), all, out, 65536, 'x');
    for (let h = 0; h < 65536; h++) if (!Object.is(out[h], f16(h)) && !(Number.isNaN(out[h]) && Number.isNaN(f16(h)))) throw new Error(`f16 ${h}: ${out[h]} vs ${f16(h)}`);
    ggmlToF32(type('BF16'), all, out, 65536, 'x');
    const u = new Uint32Array(out.buffer);
    for (let h = 0; h < 65536; h++) expect(u[h]).toBe((h << 16) >>> 0);
    const f32 = Float32Array.of(1.5, -2, 3e-9);
    const back = new Float32Array(3);
    ggmlToF32(type('F32'), new Uint8Array(f32.buffer), back, 3, 'x');
    expect(back).toEqual(f32);
  });

  for (const [name, scaleAt] of [['Q4_1', 0], ['Q5_1', 0], ['Q4_K', 0], ['Q5_K', 0]] as const) {
    it(`${name} to f32: ggml's values, bit for bit`, () => {
      const t = type(name);
      for (const seed of [1, 2]) {
        const n = 512;
        const b = blocks(t, n, seed, scaleAt);
        // the second f16 (m, dmin) finite too
        for (let o = 2; o < b.length; o += t.bytesPerBlock) b[o + 1] &= 0x3b;
        const f = new Float32Array(n);
        ggmlToF32(t, b, f, n, 'x');
        const want = affineReference(name, b, n);
        expect(Buffer.compare(Buffer.from(f.buffer), Buffer.from(want.buffer))).toBe(0);
      }
    });
  }

  it('other types are a FormatError naming the type', () => {
    expect(() => ggmlToF32(type('Q2_K'), new Uint8Array(84), new Float32Array(256), 256, 'f.gguf: tensor w')).toThrow(/f\.gguf: tensor w: ggml type Q2_K is not supported yet/);
    expect(() => ggmlToQ80(type('Q4_K'), new Uint8Array(144), new Int8Array(256), new Float32Array(8), 256, 'w')).toThrow(FormatError);
  });
});

/** ggml's dequantize_row_q4_1 / q5_1 / q4_K / q5_K, written out as in ggml-quants.c (f32 arithmetic). */
function affineReference(type: string, b: Uint8Array, n: number): Float32Array {
  const y = new Float32Array(n);
  const fr = Math.fround;
  const h = (i: number) => f16(b[i] | (b[i + 1] << 8));
  let k = 0;
  if (type === 'Q4_1' || type === 'Q5_1') {
    const size = type === 'Q4_1' ? 20 : 24;
    for (let o = 0; o < b.length; o += size) {
      const d = h(o), m = h(o + 2);
      const qh = type === 'Q5_1' ? b[o + 4] | (b[o + 5] << 8) | (b[o + 6] << 16) | (b[o + 7] << 24) : 0;
      const qs = o + (type === 'Q4_1' ? 4 : 8);
      for (let j = 0; j < 16; j++) {
        const xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
        y[k + j] = fr(fr(((b[qs + j] & 0x0f) | xh0) * d) + m);
        y[k + j + 16] = fr(fr(((b[qs + j] >> 4) | xh1) * d) + m);
      }
      k += 32;
    }
    return y;
  }
  const getScaleMin = (j: number, q: number): [number, number] =>
    j < 4 ? [b[q + j] & 63, b[q + j + 4] & 63] : [(b[q + j + 4] & 0xf) | ((b[q + j - 4] >> 6) << 4), (b[q + j + 4] >> 4) | ((b[q + j] >> 6) << 4)];
  const size = type === 'Q4_K' ? 144 : 176;
  for (let o = 0; o < b.length; o += size) {
    const d = h(o), min = h(o + 2), scales = o + 4;
    let ql = o + (type === 'Q4_K' ? 16 : 48);
    const qh = o + 16;
    let is = 0, u1 = 1, u2 = 2;
    for (let j = 0; j < 256; j += 64) {
      let [sc, m] = getScaleMin(is, scales);
      const d1 = fr(d * sc), m1 = fr(min * m);
      [sc, m] = getScaleMin(is + 1, scales);
      const d2 = fr(d * sc), m2 = fr(min * m);
      for (let l = 0; l < 32; l++) y[k++] = fr(fr(d1 * ((b[ql + l] & 0xf) + (type === 'Q5_K' && b[qh + l] & u1 ? 16 : 0))) - m1);
      for (let l = 0; l < 32; l++) y[k++] = fr(fr(d2 * ((b[ql + l] >> 4) + (type === 'Q5_K' && b[qh + l] & u2 ? 16 : 0))) - m2);
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
  return y;
}
