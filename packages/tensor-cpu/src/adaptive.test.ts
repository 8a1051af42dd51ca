/**
 * The default thread count's choice between every thread and the caller's
 * alone, fed with made-up timings (what a busy or idle machine would show).
 */
import { describe, expect, it } from 'vitest';
import { ThreadModeChooser, type ThreadMode } from './wasm/adaptive.js';

/**
 * Runs `programs` programs of one kind whose time per mode `cost` gives (`prev`: the mode of the program before);
 * returns the milliseconds spent per mode and the choices.
 */
function simulate(chooser: ThreadModeChooser, programs: number, cost: (mode: ThreadMode, i: number, prev: ThreadMode) => number) {
  const spent = { all: 0, solo: 0 };
  const picks: ThreadMode[] = [];
  for (let i = 0; i < programs; i++) {
    const mode = chooser.pick('70:1');
    const ms = cost(mode, i, picks[i - 1] ?? 'all');
    chooser.record('70:1', mode, ms);
    spent[mode] += ms;
    picks.push(mode);
  }
  return { spent, picks };
}

describe('ThreadModeChooser', () => {
  it('tries both, then keeps the faster; probing the slower costs a few percent', () => {
    for (const [all, solo] of [[2, 2.5], [20, 2.5], [2, 200]]) {
      const { spent, picks } = simulate(new ThreadModeChooser(), 10_000, (m) => (m === 'all' ? all : solo));
      expect(picks.slice(0, 3)).toEqual(['all', 'all', 'solo']); // the first untimed
      const slower = all < solo ? 'solo' : 'all';
      const ideal = 10_000 * Math.min(all, solo);
      expect(spent.all + spent.solo, `all ${all} ms, solo ${solo} ms`).toBeLessThan(ideal * 1.05 + 4 * Math.max(all, solo));
      expect(picks.slice(3)).toContain(slower); // still probed after the warm-up
    }
  });

  it('follows a change of load within a few hundred milliseconds', () => {
    // idle machine: every thread 2 ms, alone 2.5 ms; then a busy process starts: every thread 20 ms; then it stops
    const phase = (i: number) => (i < 1000 || i >= 2000 ? 'idle' : 'busy');
    const { picks } = simulate(new ThreadModeChooser(), 3000, (m, i) => (m === 'solo' ? 2.5 : phase(i) === 'idle' ? 2 : 20));
    expect(picks.slice(950, 1000).filter((m) => m === 'all').length).toBeGreaterThanOrEqual(48);
    // busy: after at most a few slow programs, alone (~50 programs of 2.5 ms = 125 ms)
    expect(picks.slice(1050, 2000).filter((m) => m === 'solo').length).toBeGreaterThanOrEqual(900);
    // idle again: back to every thread once a probe sees it (probes come every 64 x 20 ms = 1.3 s of runs, ~510 programs)
    expect(picks.slice(2550, 3000).filter((m) => m === 'all').length).toBeGreaterThanOrEqual(440);
  });

  it('is not switched by one slow run', () => {
    // every thread 2 ms, but one run in 40 interrupted (10 ms); alone 2.6 ms
    const { spent } = simulate(new ThreadModeChooser(), 4000, (m, i) => (m === 'solo' ? 2.6 : i % 40 === 39 ? 10 : 2));
    expect(spent.solo).toBeLessThan(0.05 * (spent.all + spent.solo));
  });

  it('does not time the workers waking up', () => {
    // every thread 2 ms, alone 2.6 ms; but waking the workers after a program alone costs 15 ms (a VM's sleeping CPU)
    const { spent } = simulate(new ThreadModeChooser(), 4000, (m, _i, prev) => (m === 'solo' ? 2.6 : prev === 'solo' ? 17 : 2));
    expect(spent.solo).toBeLessThan(0.05 * (spent.all + spent.solo));
  });

  it('keeps kinds of programs apart', () => {
    const c = new ThreadModeChooser();
    for (let i = 0; i < 50; i++) {
      for (const [kind, all, solo] of [['70:1', 2, 3], ['70:32', 40, 30]] as const) {
        const mode = c.pick(kind);
        c.record(kind, mode, mode === 'all' ? all : solo);
      }
    }
    expect(c.pick('70:1')).toBe('all');
    expect(c.pick('70:32')).toBe('solo');
  });
});
