/**
 * Property-based tests: a mutated tokenizer.bin (truncated, junk appended or
 * inserted, bytes flipped, lying max_token_length or piece lengths) must end
 * in a RamaError naming the source or in a tokenizer that encodes and decodes
 * (where encode may refuse with a RamaError, e.g. a vocab too small for byte
 * fallback); never a raw exception, a hang, or an allocation past the file's
 * size. From bytes and from a path alike.
 *
 * Reproduce a failure with the seed (and path) fast-check prints:
 *   RAMA_FUZZ_SEED=<seed> RAMA_FUZZ_PATH=<path> npx vitest run src/fuzz.test.ts
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RamaError } from '@rama/core';
import { applyMutations, fuzzParams, mutationsArb, sharedFile, trackAllocations, type Mutation } from '@rama/testkit';
import { TextStream, Tokenizer } from './index.js';
import { build, tiny } from './test-vocab.js';

type Mode = 'bytes' | 'path';

/** Offsets of max_token_length and of every entry's length field: where a lie changes the whole layout. */
function int32Fields(bin: Uint8Array): number[] {
  const dv = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const out = [0];
  for (let off = 4; off + 8 <= bin.length; off += 8 + dv.getInt32(off + 4, true)) out.push(off + 4);
  return out;
}

/** Small random vocabs: any pieces (empty, NUL, invalid UTF-8), any scores. */
const randomVocab: fc.Arbitrary<Uint8Array> = fc
  .record({
    maxLen: fc.integer({ min: 1, max: 16 }),
    entries: fc.array(
      fc.tuple(
        fc.oneof(fc.float({ noNaN: false }), fc.constantFrom(0, -1e10, 1e10)),
        fc.oneof(fc.uint8Array({ maxLength: 6 }).map((a) => [...a]), fc.constantFrom(' ', 'a', 'b', 'ab', '<0x41>', '<0x', '\u00e9')),
      ),
      { minLength: 1, maxLength: 40 },
    ),
  })
  .map(({ maxLen, entries }) => build(maxLen, entries as [number, number[] | string][]));

const TEXTS = ['Once upon a time', 'é🦙 \u0000 hidden', '', ' ', 'aaaaaaaaaaaaaaaa', 'ab ba <0x41>'];
const textArb = fc.oneof(fc.constantFrom(...TEXTS), fc.string({ unit: 'binary', maxLength: 16 }));

let dir: string;

/** What a loaded tokenizer must survive: encode (a RamaError is an answer), decode, every piece and score, a TextStream. */
function exercise(t: Tokenizer, text: string): void {
  expect(t.vocabSize).toBeGreaterThan(0);
  for (let id = 0; id < t.vocabSize; id++) {
    t.piece(id);
    t.score(id);
  }
  let ids: number[] = [];
  try {
    ids = t.encode(text, { bos: true, eos: true });
  } catch (e) {
    if (!(e instanceof RamaError)) throw e;
  }
  for (const id of ids) expect(id >= 0 && id < t.vocabSize, `id ${id} of ${t.vocabSize}`).toBe(true);
  t.decode(ids);
  const stream = new TextStream(t);
  for (let id = 0; id < t.vocabSize; id++) stream.push(id % 3 === 0 ? 1 : 0, id);
  stream.flush();
}

async function checkLoad(bytes: Uint8Array, mode: Mode, text: string): Promise<void> {
  let name: string;
  let load: () => Promise<Tokenizer> | Tokenizer;
  if (mode === 'path') {
    name = join(dir, 'case.bin');
    writeFileSync(name, bytes);
    load = () => Tokenizer.fromFile(name);
  } else {
    name = 'mutant.bin';
    load = () => Tokenizer.fromBytes(bytes, { source: name });
  }
  // fromBytes allocates its pieces, offsets and scores: at most the file's size together; fromFile reads the file first.
  const budget = (mode === 'path' ? 2 : 1) * bytes.length;
  const { settled, log } = await trackAllocations(load, budget);
  expect(log.largest).toBeLessThanOrEqual(bytes.length);
  expect(log.total).toBeLessThanOrEqual(budget);
  if (settled.status === 'rejected') {
    const e = settled.reason;
    if (!(e instanceof RamaError)) throw new Error(`not a RamaError: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, { cause: e });
    expect(e.message).toContain(name);
  } else {
    exercise(settled.value, text);
  }
}

describe('fuzz: mutated tokenizer files end in a RamaError or a working tokenizer', () => {
  /** Named bases, so a counterexample prints a name instead of the file's bytes. */
  const bases = new Map<string, Uint8Array>();
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rama-tok-fuzz-'));
    bases.set('tiny', tiny([[1, 'ab'], [2, 'abc'], [0.5, ' a']]));
    const real = sharedFile('models/tok512-aidreams.bin');
    if (real) bases.set('tok512-aidreams.bin', new Uint8Array(readFileSync(real)));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('random vocabs load and work', async () => {
    await fc.assert(
      fc.asyncProperty(randomVocab, textArb, async (bin, text) => exercise(Tokenizer.fromBytes(bin), text)),
      { ...fuzzParams(500), timeout: 5000 },
    );
  });

  it('mutations of real, synthetic and random vocabs', async () => {
    const baseArb = fc.oneof(fc.constantFrom(...bases.keys()), randomVocab);
    const bytesOf = (b: string | Uint8Array) => (typeof b === 'string' ? bases.get(b)! : b);
    const caseArb = baseArb.chain((base) => fc.tuple(fc.constant(base), mutationsArb({ int32Offsets: int32Fields(bytesOf(base)) })));
    await fc.assert(
      fc.asyncProperty(caseArb, fc.constantFrom<Mode>('bytes', 'path'), textArb, async ([base, mutations], mode, text) => {
        await checkLoad(applyMutations(bytesOf(base), mutations as Mutation[]), mode, text);
      }),
      { ...fuzzParams(500), timeout: 5000 },
    );
  });
});

describe('fuzz regressions (counterexamples fast-check found, kept as plain cases)', () => {
  it('a one-token vocab, encode with BOS (RAMA_FUZZ_SEED=2 RAMA_FUZZ_RUNS=5000: a TypeError in the merge)', () => {
    const t = Tokenizer.fromBytes(Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 32]));
    expect(() => exercise(t, ' ')).not.toThrow();
  });

  it('a two-token vocab, encode with EOS (RAMA_FUZZ_SEED=1 RAMA_FUZZ_RUNS=5000: id 2 returned from a vocab of 2)', () => {
    const t = Tokenizer.fromBytes(Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0]));
    expect(() => exercise(t, '')).not.toThrow();
  });
});
