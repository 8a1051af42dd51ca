/**
 * Pipelining: on a backend whose steps run on a device queue, the batch
 * runner submits the next greedy step before the current one's ids are read
 * back (see batch.ts). The CPU runs steps at submit, so here it is wrapped to
 * say it does not, which makes the runner pipeline on it too: results must
 * stay exact (every golden, alone and beside seven other sessions that stop
 * at other times), and the recorded order must show a step submitted before
 * the previous one's ids came back. WebGPU pipelines by default.
 */
import { describe, expect, it } from 'vitest';
import {
  comparableOutput, generateGoldens, goldenExpectation, goldenModelPath, missingMessage, sharedFile, type BackendKind,
} from '@rama/testkit';
import type { Backend, Step } from '@rama/backend';
import { CpuBackend } from '@rama/tensor-cpu';
import { WebGpuBackend } from '@rama/tensor-webgpu';
import { Llama } from './index.js';

/** A backend that reports `executesAsync` as asked, and logs each step's submit and when its reads resolve. */
function recording(inner: Backend, executesAsync: boolean): { backend: Backend; log: string[] } {
  const log: string[] = [];
  let steps = 0;
  const wrapStep = (step: Step, k: number): Step =>
    new Proxy(step, {
      get(target, key) {
        if (key === 'submit') return () => (target.submit(), log.push(`submit ${k}`));
        if (key === 'read') return (t: Parameters<Step['read']>[0], n?: number) => target.read(t, n).then((r) => (log.push(`read ${k}`), r));
        const v = Reflect.get(target, key, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
  const backend = new Proxy(inner, {
    get(target, key) {
      if (key === 'executesAsync') return executesAsync;
      if (key === 'begin') return (rows: Parameters<Backend['begin']>[0]) => wrapStep(target.begin(rows), steps++);
      const v = Reflect.get(target, key, target);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { backend, log };
}

/** Whether some step was submitted before the ids of the step before it were read back. */
const ranAhead = (log: string[]): boolean => log.some((e, i) => e.startsWith('submit ') && log.indexOf(`read ${Number(e.slice(7)) - 1}`) > i);

const others = ['Once', 'The dog', 'A long time ago in a land', 'Lily', 'Tom and Ben', 'Sun', 'One day'];

const variants: { name: string; kind: BackendKind; make: () => Promise<Backend>; othersSteps: number; executesAsync: boolean }[] = [
  { name: 'cpu told it runs asynchronously', kind: 'cpu', make: () => CpuBackend.create({ maxRows: 32, threads: 1 }), othersSteps: 1 << 20, executesAsync: true },
  { name: 'webgpu', kind: 'webgpu', make: () => WebGpuBackend.create({ maxRows: 32 }), othersSteps: 12, executesAsync: true },
];

for (const v of variants) {
  describe(`pipelined greedy decoding (${v.name})`, () => {
    const greedy = generateGoldens().filter((g) => g.temperature === 0 && (v.kind === 'cpu' || !g.model.startsWith('s15')));
    for (const g of greedy) {
      it(`${g.id}: alone and beside 7 greedy sessions, exact, with steps run ahead`, async (ctx) => {
        const model = goldenModelPath(g);
        const tokenizer = sharedFile(`models/${g.tokenizer}`);
        if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
        const inner = await v.make();
        const { backend, log } = recording(inner, v.executesAsync);
        const llama = await Llama.load({ model, tokenizer, backend, sessions: 9 }); // the default session and eight more
        try {
          const opts = { steps: g.steps, temperature: 0 };
          const alone = await llama.generate(g.prompt, opts).result();
          expect(comparableOutput(g, alone, v.kind)).toEqual(goldenExpectation(g, v.kind));
          expect(ranAhead(log)).toBe(true);
          // Steps run ahead were used, not dropped: about one step per position (two per token if dropped).
          expect(log.filter((e) => e.startsWith('submit')).length).toBeLessThanOrEqual(alone.tokens.length + 1);

          // The others alone (their reference), then all eight together: they stop at other times, so
          // steps run ahead are dropped and rows join and leave.
          const sessions = Array.from({ length: 8 }, () => llama.session());
          const otherOpts = (i: number) => ({ steps: Math.min(v.othersSteps, Math.max(3, (g.steps || 64) - 5 * i)), temperature: 0 });
          const solo = [];
          for (const [i, p] of others.entries()) solo.push((await sessions[i + 1].generate(p, otherOpts(i)).result()).tokens);
          const together = await Promise.all([
            sessions[0].generate(g.prompt, opts).result(),
            ...others.map((p, i) => sessions[i + 1].generate(p, otherOpts(i)).result()),
          ]);
          expect(comparableOutput(g, together[0], v.kind)).toEqual(goldenExpectation(g, v.kind));
          expect(together.slice(1).map((r) => r.tokens)).toEqual(solo);
        } finally {
          llama.dispose();
          inner.dispose();
        }
      });
    }
  });
}

describe('pipelining', () => {
  it('is off where steps run at submit: no step is submitted before the previous ids are back', async (ctx) => {
    const model = sharedFile('models/aidreams260K.bin');
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    const inner = await CpuBackend.create({ threads: 1 });
    const { backend, log } = recording(inner, false);
    const llama = await Llama.load({ model, tokenizer, backend });
    try {
      const r = await llama.generate('I dreamed of', { steps: 40, temperature: 0 }).result();
      expect(r.generatedTokens).toBeGreaterThan(10);
      expect(log.filter((e) => e.startsWith('submit')).length).toBeGreaterThan(10);
      expect(ranAhead(log)).toBe(false);
    } finally {
      llama.dispose();
      inner.dispose();
    }
  });
});
