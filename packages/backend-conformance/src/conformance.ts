/**
 * One conformance suite for every Backend, in the manner of ggml's
 * test-backend-ops: each op case runs on the backend under test and on a
 * reference backend, and every output element must agree within the op's
 * stated bound (see cases.ts for the bounds and why).
 *
 *   describeBackendConformance('webgpu', () => WebGpuBackend.create(), () => CpuBackend.create());
 *
 * Both backends must accept steps of at least 6 rows (maxRows >= 6).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ArgumentError } from '@rama/core';
import { byteLengthOf, contiguousRows, registerDType, registeredDTypes, type Backend, type Tensor, type TensorDesc } from '@rama/backend';
import { conformanceCases, type ConformanceCase } from './cases.js';

// A type no backend has kernels for, so that the refusal check below always has one to try
// (also for a backend that supports every type Rama ships).
declare module '@rama/backend' {
  interface DTypes {
    /** The conformance suite's own type, which no backend supports. */
    conformance_q2: true;
  }
}
registerDType({
  name: 'conformance_q2',
  kind: 'quantized',
  blockSize: 16,
  bytesPerBlock: 6,
  layout: 'a type registered by the conformance suite only: blocks of 16 2-bit values and an f16 scale',
});

async function runCase(be: Backend, c: ConformanceCase): Promise<Record<string, Float32Array | Int32Array>> {
  const t: Record<string, Tensor> = {};
  try {
    for (const [name, spec] of Object.entries(c.tensors)) {
      t[name] = spec.data ? await be.upload(spec.desc, spec.data.slice()) : be.alloc(spec.desc);
    }
    for (const st of c.steps) {
      const step = be.begin('layout' in st ? st.layout : contiguousRows(st.pos, st.rows));
      st.run(step, t);
      step.submit();
    }
    const out: Record<string, Float32Array | Int32Array> = {};
    for (const name of Object.keys(c.outputs)) out[name] = await be.read(t[name]);
    return out;
  } finally {
    for (const x of Object.values(t)) be.free(x);
  }
}

/** Describes what differs, or returns undefined when every element is within its bound. */
export function compareOutput(
  name: string,
  got: Float32Array | Int32Array,
  want: Float32Array | Int32Array,
  bound: (i: number, want: number) => number,
): string | undefined {
  if (got.length !== want.length) return `${name}: ${got.length} elements, reference has ${want.length}`;
  const bad: string[] = [];
  let count = 0;
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    if (g === w || (Number.isNaN(g) && Number.isNaN(w))) continue; // equal (infinities too: their difference is NaN)
    const d = Math.abs(g - w);
    const b = bound(i, w);
    if (!(d <= b)) {
      count++;
      worst = Math.max(worst, b > 0 ? d / b : Infinity);
      if (bad.length < 5) bad.push(`[${i}] got ${g}, want ${w} (|diff| ${d.toExponential(3)} > bound ${b.toExponential(3)})`);
    }
  }
  if (!count) return undefined;
  return `${name}: ${count} of ${want.length} elements outside the bound (worst ${worst.toFixed(1)}x the bound):\n  ${bad.join('\n  ')}`;
}

/**
 * Describes (vitest) the whole suite for one backend: every case runs on the
 * backend `make` returns and on `makeReference`'s, and each output element
 * must agree within the case's bound; plus the dtype checks.
 */
export function describeBackendConformance(
  name: string,
  make: () => Promise<Backend>,
  makeReference: () => Promise<Backend>,
): void {
  describe(`backend conformance: ${name}`, () => {
    let be: Backend | undefined;
    let ref: Backend | undefined;
    beforeAll(async () => {
      be = await make();
      ref = await makeReference();
    });
    afterAll(() => {
      be?.dispose();
      ref?.dispose();
    });
    it('dtypes: supports f32 and i32; refuses upload and alloc of a registered type it does not support', async () => {
      const b = be!;
      expect(b.supports('f32')).toBe(true);
      expect(b.supports('i32')).toBe(true);
      expect(b.supports('conformance_q2')).toBe(false);
      for (const t of registeredDTypes().filter((d) => !b.supports(d.name))) {
        const grouped = t.blockSize === 'groupSize';
        const desc: TensorDesc = {
          label: `layers.0.w1 (${t.name})`,
          shape: [4, grouped ? 64 : 2 * (t.blockSize as number)],
          dtype: t.name,
          ...(grouped ? { groupSize: 32 } : {}),
        };
        const err = await b.upload(desc, new Uint8Array(byteLengthOf(desc))).then(
          (x) => (b.free(x), undefined),
          (e: unknown) => e,
        );
        expect(err, `upload of ${t.name}`).toBeInstanceOf(ArgumentError);
        expect((err as Error).message).toContain(desc.label);
        expect((err as Error).message).toContain(`dtype ${t.name}`);
        expect(() => b.alloc(desc), `alloc of ${t.name}`).toThrow(ArgumentError);
      }
    });
    for (const c of conformanceCases()) {
      it(`${c.op}: ${c.name}`, async (ctx) => {
        // a case of a type the backend does not store (a k-quant, say) checks only the backends that do
        if (!Object.values(c.tensors).every((t) => be!.supports(t.desc.dtype))) ctx.skip();
        const got = await runCase(be!, c);
        const want = await runCase(ref!, c);
        const problems = Object.entries(c.outputs)
          .map(([out, bound]) => compareOutput(out, got[out], want[out], bound))
          .concat((c.same ?? []).flatMap(([a, b]) => [
            compareOutput(`${a} vs ${b} on ${name}`, got[a], got[b], () => 0),
            compareOutput(`${a} vs ${b} on the reference`, want[a], want[b], () => 0),
          ]))
          .filter((p): p is string => p !== undefined);
        expect(problems.join('\n'), `${name} vs ${ref!.name}`).toBe('');
      });
    }
  });
}
