// Temperature, top-k, top-p and min-p on a hand-made distribution over 5 tokens.
import { Sampler, softmax } from '@rama/sampler';

export function tryIt() {
  const logits = [2.0, 1.5, 1.0, 0.0, -1.0];
  const probs = (t) => {
    const p = Float32Array.from(logits, (l) => l / t);
    softmax(p, p.length);
    return Array.from(p, (x) => +x.toFixed(3));
  };
  const counts = (opts, n = 2000) => {
    const s = new Sampler(logits.length, { seed: 42, ...opts });
    const c = new Array(logits.length).fill(0);
    for (let i = 0; i < n; i++) c[s.sample(Float32Array.from(logits))]++;
    return c;
  };
  const out = {
    'p at T=0.5': probs(0.5),
    'p at T=1': probs(1),
    'p at T=2': probs(2),
    'greedy (T=0)': counts({ temperature: 0 }, 10),
    'T=1, top-p off': counts({ temperature: 1, topp: 0 }),
    'T=1, top-k=2': counts({ temperature: 1, topk: 2, topp: 0 }),
    'T=1, top-p=0.6': counts({ temperature: 1, topp: 0.6 }),
    'T=1, min-p=0.3': counts({ temperature: 1, minp: 0.3, topp: 0 }),
  };
  for (const [k, v] of Object.entries(out)) console.log(k.padEnd(16), v.join('  '));
  return out;
}
