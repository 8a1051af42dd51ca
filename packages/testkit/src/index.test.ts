import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { comparableOutput, goldenExpectation, sharedDir, sharedFile, type GenerateGolden } from './index.js';

const saved = { shared: process.env.RAMA_SHARED, ci: process.env.CI };
afterEach(() => {
  process.env.RAMA_SHARED = saved.shared;
  process.env.CI = saved.ci;
  if (saved.shared === undefined) delete process.env.RAMA_SHARED;
  if (saved.ci === undefined) delete process.env.CI;
});

describe('sharedFile', () => {
  it('resolves under $RAMA_SHARED', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rama-shared-'));
    writeFileSync(join(dir, 'x.bin'), 'x');
    process.env.RAMA_SHARED = dir;
    expect(sharedDir()).toBe(dir);
    expect(sharedFile('x.bin')).toBe(join(dir, 'x.bin'));
  });
  it('returns undefined for a missing file locally, and throws under CI', () => {
    process.env.RAMA_SHARED = mkdtempSync(join(tmpdir(), 'rama-shared-'));
    process.env.CI = 'false';
    expect(sharedFile('missing.bin')).toBeUndefined();
    process.env.CI = 'true';
    expect(() => sharedFile('missing.bin')).toThrow(/missing under CI/);
  });
});

describe('golden comparison', () => {
  const g = { id: 'x', tokens: [1, 2, 3, 4], text: 'abc' } as GenerateGolden;
  it('compares everything for ordinary cases', () => {
    expect(comparableOutput(g, { tokens: [1, 2, 3, 4], text: 'abc' })).toEqual(goldenExpectation(g));
    expect(comparableOutput(g, { tokens: [1, 2, 3, 5], text: 'abc' })).not.toEqual(goldenExpectation(g));
    expect(comparableOutput(g, { tokens: [1, 2, 3, 4], text: 'abd' })).not.toEqual(goldenExpectation(g));
  });
  it('compares the exact prefix of a libm-bound case', () => {
    const bound = { ...g, id: 's15-shape-q80-topp-seed5', tokens: Array.from({ length: 50 }, (_, i) => i) };
    const ours = { tokens: [...bound.tokens.slice(0, 39), 999], text: 'different' };
    expect(comparableOutput(bound, ours)).toEqual(goldenExpectation(bound));
    ours.tokens[38] = 999;
    expect(comparableOutput(bound, ours)).not.toEqual(goldenExpectation(bound));
  });
});
