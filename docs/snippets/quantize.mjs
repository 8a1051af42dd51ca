// Q8_0: one f32 scale per group of 32 values, each value an int8 step of that scale.
import { quantizeWeights, dequantize } from '@rama/quant-q80';

export function tryIt() {
  const w = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 0.7) * (i < 32 ? 0.05 : 2));
  const q = quantizeWeights(w, 32);
  const back = dequantize(q);
  const groups = [0, 1].map((g) => {
    let err = 0;
    for (let i = g * 32; i < (g + 1) * 32; i++) err = Math.max(err, Math.abs(back[i] - w[i]));
    return { scale: q.scales[g], maxError: err };
  });
  console.log('int8 values of group 0:', Array.from(q.q.subarray(0, 8)).join(' '), '...');
  groups.forEach((g, i) => console.log(`group ${i}: scale ${g.scale.toExponential(3)}, largest error ${g.maxError.toExponential(3)}`));
  console.log(`bytes: f32 ${w.length * 4}, Q8_0 ${q.q.length + q.scales.length * 4}`);
  return { w, q, back, groups };
}
