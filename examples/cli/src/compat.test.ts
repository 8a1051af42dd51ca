/**
 * llama2.c's own command line, `run model.bin -t 0.8 -p 0.9 -s 42 -n 256
 * -i "..." -z tokenizer.bin`, given to the built rama: every generate golden
 * through these flags prints the golden's exact text (llama2.c's output).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { comparableOutput, generateGoldens, goldenExpectation, goldenModelPath, missingMessage, sharedFile } from '@rama/testkit';
import { parseCliArgs, UsageError } from './args.js';
import { jsonLines, runCli } from './run-cli.js';

const cache = mkdtempSync(join(tmpdir(), 'rama-compat-test-'));
afterAll(() => rmSync(cache, { recursive: true, force: true }));
const env = { RAMA_CACHE: cache };

describe("llama2.c's flags after a checkpoint", () => {
  it('map to the same options as Rama\'s own flags', () => {
    const compat = parseCliArgs(['m.bin', '-t', '0.8', '-p', '0.5', '-s', '42', '-n', '64', '-i', '-5 degrees', '-z', 'tok.bin', '-m', 'chat', '-y', 'Be brief.', '--json']);
    const own = parseCliArgs(['-m', 'm.bin', '-r', '0.8', '-l', '0.5', '--seed', '42', '-s', '64', '-p', '-5 degrees', '-t', 'tok.bin', '-o', 'chat', '--system', 'Be brief.', '--json']);
    expect(compat).toEqual(own);
    // -y outside chat is ignored, as llama2.c does.
    expect(parseCliArgs(['m.bin', '-y', 'x']).system).toBeUndefined();
  });

  it("Rama's short flags are refused there, naming llama2.c's", () => {
    expect(() => parseCliArgs(['m.bin', '-r', '0'])).toThrow(UsageError);
    expect(() => parseCliArgs(['m.bin', '-r', '0'])).toThrow('unknown flag -r after a checkpoint (llama2.c\'s flags: -t -p -s -n -i -z -m -y');
    expect(() => parseCliArgs(['m.bin', '-n', '1.5'])).toThrow('invalid value for -n/--step: "1.5" (expected an integer >= 0)');
    expect(() => parseCliArgs(['m.bin', 'extra'])).toThrow('unexpected argument "extra"');
  });

  it('a checkpoint that does not exist: the missing-file error, exit 1', async () => {
    const r = await runCli(['missing.bin', '-n', '5'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^rama: error: model file not found: missing.bin/);
  });

  for (const g of generateGoldens()) {
    it(`${g.id}: rama ${g.model} -t ${g.temperature} -p ${g.topp} -s ${g.seed} -n ${g.steps} -i ... -z ${g.tokenizer} prints the golden text`, async (ctx) => {
      const model = goldenModelPath(g);
      const tokenizer = sharedFile(`models/${g.tokenizer}`);
      if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
      const args = [model, '-t', String(g.temperature), '-p', String(g.topp), '-s', String(g.seed), '-n', String(g.steps), '-i', g.prompt, '-z', tokenizer];
      const want = goldenExpectation(g);
      if (want.text !== undefined) {
        const r = await runCli(args, { env });
        expect(r.code).toBe(0);
        expect(r.stdout).toBe(`${want.text}\n`);
        expect(r.stderr).toMatch(/^(achieved tok\/s: \d+(\.\d+)?\n)?$/);
      } else {
        // A golden whose last tokens sit on a rounding bound: its tokens, through --json.
        const r = await runCli([...args, '--json'], { env });
        expect(r.code).toBe(0);
        expect(comparableOutput(g, jsonLines(r.stdout).pop() as { tokens: number[]; text: string })).toEqual(want);
      }
    });
  }
});
