// Causal attention with our reference kernel: 4 positions, 2 query heads sharing 1 key/value head.
import { CpuBackend } from '@rama/tensor-cpu';

export async function tryIt() {
  const positions = 4, headSize = 4, nHeads = 2, nKvHeads = 1;
  const dim = nHeads * headSize, kvDim = nKvHeads * headSize;
  const fill = (n, f) => Float32Array.from({ length: n }, (_, i) => f(i));
  const q = fill(positions * dim, (i) => Math.sin(i));
  const k = fill(positions * kvDim, (i) => Math.cos(1.3 * i));
  const v = fill(positions * kvDim, (i) => (i % 5) - 2);

  const be = await CpuBackend.create({ kernels: 'scalar' });
  try {
    const run = async (keysData, valuesData) => {
      const t = (label, shape, data) => (data ? be.upload({ shape, dtype: 'f32', label }, data) : be.alloc({ shape, dtype: 'f32', label }));
      const [qt, kt, vt] = await Promise.all([t('q', [positions, dim], q), t('k', [positions, kvDim], keysData), t('v', [positions, kvDim], valuesData)]);
      const keys = await t('keys', [1, positions, kvDim]), values = await t('values', [1, positions, kvDim]); // [layers, seqLen, kvDim]
      const out = await t('out', [positions, dim]);
      // one step of 4 rows at positions 0..3, as a prompt runs: store k and v, then attend
      const step = be.begin({ positions: [0, 1, 2, 3] });
      step.storeKV(keys, 0, kt);
      step.storeKV(values, 0, vt);
      step.attention(out, qt, keys, values, 0, headSize);
      const o = Array.from(await step.read(out));
      for (const x of [qt, kt, vt, keys, values, out]) be.free(x);
      return o;
    };
    const out = await run(k, v);
    // change what position 3 holds: rows 0..2 cannot see it, so their outputs stay the same
    const k2 = k.slice(), v2 = v.slice();
    k2.fill(9, 3 * kvDim);
    v2.fill(9, 3 * kvDim);
    const changed = await run(k2, v2);
    for (let p = 0; p < positions; p++) {
      const same = out.slice(p * dim, (p + 1) * dim).every((x, i) => x === changed[p * dim + i]);
      console.log(`row ${p}: out = [${out.slice(p * dim, p * dim + 3).map((x) => x.toFixed(3)).join(', ')}, ...]  ${same ? 'unchanged' : 'changed'} when position 3 changes`);
    }
    return { q, k, v, out, changed, positions, headSize, nHeads, nKvHeads };
  } finally {
    be.dispose();
  }
}
