/**
 * The built `rama` command end to end: every generate golden through --json,
 * the text mode's output, chat from piped stdin, and its error messages.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { comparableOutput, generateGoldens, goldenExpectation, goldenModelPath, missingMessage, sharedFile, synthModel } from '@rama/testkit';
import { havePty, jsonLines, runCli, runPty, type PtyRun, type PtyStep } from './run-cli.js';

const cache = mkdtempSync(join(tmpdir(), 'rama-cli-test-'));
afterAll(() => rmSync(cache, { recursive: true, force: true }));
const env = { RAMA_CACHE: cache };

const AIDREAMS = 'models/aidreams260K.bin';
const TOK512 = 'models/tok512-aidreams.bin';

/** One line on stderr, starting "rama: error: ", and no stack trace. */
function expectOneErrorLine(stderr: string): string {
  const lines = stderr.split('\n').filter((l) => l.length > 0);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^rama: error: /);
  expect(stderr).not.toContain('    at ');
  return lines[0];
}

describe('rama --json: generate goldens', () => {
  for (const g of generateGoldens()) {
    it(g.id, async (ctx) => {
      const model = goldenModelPath(g);
      const tokenizer = sharedFile(`models/${g.tokenizer}`);
      if (!model || !tokenizer) return ctx.skip(missingMessage(model ? `models/${g.tokenizer}` : `models/${g.model}`));
      const args = ['--json', '-m', model, '-t', tokenizer, '-p', g.prompt, '-s', String(g.steps)];
      args.push('-r', String(g.temperature), '-l', String(g.topp), '--seed', String(g.seed));
      const r = await runCli(args, { env });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const lines = jsonLines(r.stdout);
      const last = lines[lines.length - 1] as { tokens: number[]; text: string; tokens_per_second: number; stop_reason: string };
      expect(comparableOutput(g, last)).toEqual(goldenExpectation(g));
      expect(typeof last.tokens_per_second).toBe('number');
      expect(['steps', 'context', 'bos']).toContain(last.stop_reason);
    });
  }
});

describe('rama without -m: the built-in aidreams260K (models/, shipped in the package)', () => {
  const builtinModel = fileURLToPath(new URL('../models/aidreams260K.bin', import.meta.url));
  const builtinTokenizer = fileURLToPath(new URL('../models/tok512-aidreams.bin', import.meta.url));
  const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

  it('the shipped files are the published ones (sizes and SHA-256 as in models/LICENSE.md)', () => {
    const notice = readFileSync(fileURLToPath(new URL('../models/LICENSE.md', import.meta.url)), 'utf8');
    for (const path of [builtinModel, builtinTokenizer]) {
      const name = basename(path);
      const size = statSync(path).size.toLocaleString('en-US');
      expect(notice).toContain(`| \`${name}\` | ${size} | \`${sha256(path)}\` |`);
      const shared = sharedFile(`models/${name}`);
      if (shared) expect(sha256(shared)).toBe(sha256(path));
    }
    expect(sha256(builtinModel)).toBe('aa722d252ace805c9ff2264dce993df6843c8cec3d1a930d03e4c487f3db9028');
  });

  it("runs offline: the golden tokens, nothing downloaded or cached, RAMA_MODEL_BASE_URL unused", async (ctx) => {
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt');
    if (!g) return ctx.skip('skipped: goldens/generate.jsonl not found');
    const fresh = mkdtempSync(join(cache, 'offline-'));
    const offline = { RAMA_CACHE: fresh, RAMA_MODEL_BASE_URL: 'not a url' };
    const r = await runCli(['--json', '-p', g.prompt, '-s', String(g.steps), '-r', '0'], { env: offline });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const last = jsonLines(r.stdout).pop() as { tokens: number[]; text: string; model: { path: string; vocab_size: number } };
    expect(comparableOutput(g, last)).toEqual(goldenExpectation(g));
    expect(last.model.path).toBe(builtinModel);
    expect(readdirSync(fresh)).toEqual([]);
    // By name, the same model and tokenizer.
    const named = await runCli(['--json', '-m', 'aidreams260K', '-p', g.prompt, '-s', String(g.steps), '-r', '0'], { env: offline });
    expect(named.code).toBe(0);
    expect((jsonLines(named.stdout).pop() as { tokens: number[] }).tokens).toEqual(last.tokens);
  });

  it("the README's first command: pnpm rama -p \"I dreamed of\" -r 0 prints the golden text", async (ctx) => {
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt');
    if (!g) return ctx.skip('skipped: goldens/generate.jsonl not found');
    const r = await runCli(['-p', 'I dreamed of', '-r', '0'], { env });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^achieved tok\/s: \d+(\.\d+)?\n$/);
    // -s 256 runs to the model's seq_len (128): the golden's 100 positions come first.
    expect(r.stdout.startsWith(g.text)).toBe(true);
  });

  it('-m stories15M downloads stories15M.bin and the Llama 2 tokenizer (here: a closed port, so a download error)', async () => {
    const r = await runCli(['-m', 'stories15M', '-p', 'hi'], { env });
    expect(r.code).toBe(1);
    expect(expectOneErrorLine(r.stderr)).toMatch(/^rama: error: could not download stories15M\.bin from http:\/\/127\.0\.0\.1:9\/stories15M\.bin \(from RAMA_MODEL_BASE_URL\)/);
  });

  it('a -m that is neither a file nor a model name: says which names exist, exit 1', async () => {
    const r = await runCli(['-m', 'stories42M', '-p', 'hi'], { env });
    expect(r.code).toBe(1);
    expect(expectOneErrorLine(r.stderr)).toBe('rama: error: model file not found: stories42M (or a model name: aidreams260K, stories15M)');
  });
});

describe('rama: text mode', () => {
  it('prints exactly the golden text, a newline, and achieved tok/s on stderr', async (ctx) => {
    const g = generateGoldens().find((x) => x.id === 'aidreams-greedy-prompt');
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!g || !model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['-m', model, '-t', tokenizer, '-p', g.prompt, '-s', String(g.steps), '-r', '0'], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${g.text}\n`);
    expect(r.stderr).toMatch(/^achieved tok\/s: \d+(\.\d+)?\n$/);
  });

  it('-m file.gguf needs no -t: llama.cpp\'s greedy tokens for the prompt (refs/aidreams260K-f32.jsonl); -t beside it must be the same vocabulary', async (ctx) => {
    const model = sharedFile('gguf/aidreams260K-f32.gguf');
    const refs = sharedFile('gguf/refs/aidreams260K-f32.jsonl');
    if (!model || !refs) return ctx.skip(missingMessage('gguf/aidreams260K-f32.gguf'));
    const ref = JSON.parse(readFileSync(refs, 'utf8').split('\n')[0]) as { prompt: string; prompt_ids: number[]; gen_ids: number[] };
    const r = await runCli(['-m', model, '-p', ref.prompt, '-r', '0', '-s', String(ref.prompt_ids.length + ref.gen_ids.length - 1), '--json'], { env });
    expect(r.code).toBe(0);
    const last = jsonLines(r.stdout).at(-1) as { tokens: number[] };
    expect(last.tokens).toEqual([...ref.prompt_ids, ...ref.gen_ids]);
    // the vocabulary the file carries (tok512) is accepted; another (Llama 2's, 32000 tokens) is an error
    const tokenizer = sharedFile(TOK512);
    const llama2 = sharedFile('models/tokenizer.bin');
    if (!tokenizer || !llama2) return;
    const same = await runCli(['-m', model, '-t', tokenizer, '-p', ref.prompt, '-r', '0', '-s', String(ref.prompt_ids.length + ref.gen_ids.length - 1), '--json'], { env });
    expect(same.code).toBe(0);
    expect((jsonLines(same.stdout).at(-1) as { tokens: number[] }).tokens).toEqual([...ref.prompt_ids, ...ref.gen_ids]);
    const bad = await runCli(['-m', model, '-t', llama2, '-p', 'hi'], { env });
    expect(bad.code).toBe(1);
    expect(expectOneErrorLine(bad.stderr)).toMatch(/tokenizer/);
  });

  it('--json text is what the text mode prints (sampled, top-k/min-p/repeat-penalty on)', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const args = ['-m', model, '-t', tokenizer, '-p', 'The night', '-s', '40', '--seed', '11', '--top-k', '20', '--min-p', '0.05', '--repeat-penalty', '1.2', '--threads', '1'];
    const [text, json] = await Promise.all([runCli(args, { env }), runCli([...args, '--json'], { env })]);
    expect(text.code).toBe(0);
    expect(json.code).toBe(0);
    const last = jsonLines(json.stdout).pop() as { text: string; tokens: number[]; backend: { name: string }; model: { vocab_size: number } };
    expect(text.stdout).toBe(`${last.text}\n`);
    expect(last.text.startsWith('The night')).toBe(true);
    expect(last.tokens[0]).toBe(1);
    expect(last.tokens.length).toBe(41); // 40 positions: BOS plus one token out of each
    expect(last.backend.name).toBe('cpu');
    expect(last.model.vocab_size).toBe(512);
  });
});

describe('rama --kv-cache f16', () => {
  it('generates with an f16 KV cache and says so in --json; greedy, the tokens of the f32 cache on aidreams260K', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const args = ['-m', model, '-t', tokenizer, '-p', 'The night', '-s', '40', '-r', '0', '--json', '--threads', '1'];
    const [f16, f32] = await Promise.all([runCli([...args, '--kv-cache', 'f16'], { env }), runCli(args, { env })]);
    expect(f16.code).toBe(0);
    expect(f32.code).toBe(0);
    type Out = { tokens: number[]; model: { kv_cache_type: string } };
    const a = jsonLines(f16.stdout).pop() as unknown as Out;
    const b = jsonLines(f32.stdout).pop() as unknown as Out;
    expect(a.model.kv_cache_type).toBe('f16');
    expect(b.model.kv_cache_type).toBe('f32');
    expect(a.tokens).toEqual(b.tokens);
  });
});

describe('rama -o chat', () => {
  it('reads one turn per line of piped stdin and prints one JSON line per turn, continuing positions', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    // -s 100 leaves room for both turns in aidreams260K's 128 positions.
    const args = ['-o', 'chat', '--json', '-m', model, '-t', tokenizer, '-s', '100', '-r', '0', '--system', 'You dream.'];
    const r = await runCli(args, { env, input: 'Hello there\nWhat did you dream of?\n' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    type Turn = { turn: number; user: string; tokens: number[]; text: string; stop_reason: string; position: { start: number; end: number }; tokens_per_second: number };
    const turns = jsonLines(r.stdout) as unknown as Turn[];
    expect(turns).toHaveLength(2);
    expect(turns.map((t) => [t.turn, t.user])).toEqual([[1, 'Hello there'], [2, 'What did you dream of?']]);
    expect(turns[0].position.start).toBe(0);
    expect(turns[0].position.end).toBeGreaterThan(0);
    expect(turns[1].position.start).toBe(turns[0].position.end);
    expect(turns[1].position.end).toBeGreaterThan(turns[1].position.start);
    expect(turns[1].position.end).toBeLessThanOrEqual(100);
    for (const t of turns) expect(typeof t.tokens_per_second).toBe('number');
    // The second turn starts with a fed BOS (its [INST] prompt): only a sampled BOS ends a turn.
    expect(turns[1].stop_reason).not.toBe('bos');
    expect(turns[1].text.length).toBeGreaterThan(0);
  });

  it('text mode prints User:/Assistant: and stops at the step limit', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['-o', 'chat', '-m', model, '-t', tokenizer, '-s', '30', '--seed', '3'], { env, input: 'one\ntwo\nthree\n' });
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('User: one\nAssistant: ')).toBe(true);
    expect(r.stderr).toContain('reached the step limit (30 positions)');
    expect(r.stderr).toMatch(/achieved tok\/s: \d/);
  });

  it('a step limit of one position is "1 position"', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['-o', 'chat', '-m', model, '-t', tokenizer, '-s', '1'], { env, input: 'hi\n' });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('reached the step limit (1 position)\n');
  });
});

describe('rama -o chat on a terminal', () => {
  // Random weights and 4096 positions: a greedy reply that, unless stopped,
  // runs for tens of seconds to the end of the context, which ends the chat.
  const longReplies = () => synthModel('cli-chat-seq4096.bin', '--dim 256 --hidden 768 --layers 8 --heads 8 --vocab 512 --seq 4096');
  const args = (model: string, tokenizer: string) => ['-o', 'chat', '-m', model, '-t', tokenizer, '-s', '0', '-r', '0'];
  // Generous limits: each wait ends as soon as its text appears.
  const WAIT = 60;
  const replyUnderway: PtyStep = ['expect', 'Assistant: [\\s\\S]{20}', WAIT];
  const atPrompt: PtyStep = ['expect', 'User: ', WAIT];

  /** The steps and the session's output, when a step failed. */
  const explain = (r: PtyRun, steps: PtyStep[]) => (r.failed === null ? '' : `step ${r.failed} ${JSON.stringify(steps[r.failed])}: ${r.why}\n${r.output.slice(-2000)}`);

  it('Ctrl-C stops a reply and returns to the User: prompt, the chat goes on, and Ctrl-C at the prompt ends it', async (ctx) => {
    const tokenizer = sharedFile(TOK512);
    if (!tokenizer) return ctx.skip(missingMessage(TOK512));
    if (!havePty()) return ctx.skip('skipped: python3 with its pty module is needed to drive a terminal');
    const model = longReplies();
    if (!model) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const steps: PtyStep[] = [
      atPrompt, ['send', 'hello\r'], replyUnderway, ['send', '\x03'],
      atPrompt, ['send', 'again\r'], replyUnderway, ['send', '\x03'],
      atPrompt, ['send', '\x03'],
      ['exit', WAIT],
    ];
    const r = await runPty(steps, args(model, tokenizer), { env });
    expect(explain(r, steps)).toBe('');
    expect(r.status).toBe(0);
    expect(r.output).not.toContain('reached the step limit');
    expect(r.output).toMatch(/achieved tok\/s: \d/);
  });

  it('Ctrl-D at the prompt ends the chat', async (ctx) => {
    const tokenizer = sharedFile(TOK512);
    if (!tokenizer) return ctx.skip(missingMessage(TOK512));
    if (!havePty()) return ctx.skip('skipped: python3 with its pty module is needed to drive a terminal');
    const model = longReplies();
    if (!model) return ctx.skip(missingMessage('tools/synth-model.mjs'));
    const steps: PtyStep[] = [atPrompt, ['send', 'hello\r'], replyUnderway, ['send', '\x03'], atPrompt, ['send', '\x04'], ['exit', WAIT]];
    const r = await runPty(steps, args(model, tokenizer), { env });
    expect(explain(r, steps)).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('rama: errors', () => {
  it('a missing model file: names the file, exit 1', async () => {
    const r = await runCli(['-m', join(cache, 'nope.bin'), '-t', join(cache, 'nope-tok.bin')], { env });
    expect(r.code).toBe(1);
    expect(expectOneErrorLine(r.stderr)).toContain(join(cache, 'nope.bin'));
  });

  it('a missing tokenizer file: names the file, exit 1', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    if (!model) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['-m', model, '-t', join(cache, 'nope-tok.bin')], { env });
    expect(r.code).toBe(1);
    expect(expectOneErrorLine(r.stderr)).toContain(`tokenizer file not found: ${join(cache, 'nope-tok.bin')}`);
  });

  it("a tokenizer with the wrong vocabulary: the FormatError's message, exit 1", async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile('models/tokenizer.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/tokenizer.bin'));
    const r = await runCli(['-m', model, '-t', tokenizer, '-p', 'hi'], { env });
    expect(r.code).toBe(1);
    const line = expectOneErrorLine(r.stderr);
    expect(line).toContain(tokenizer);
    expect(line).toContain('32000');
    expect(line).toContain('512');
    expect(r.stdout).toBe('');
  });

  it('a corrupt model file: a clear message, exit 1', async (ctx) => {
    const tokenizer = sharedFile(TOK512);
    if (!tokenizer) return ctx.skip(missingMessage(TOK512));
    const r = await runCli(['-m', tokenizer, '-t', tokenizer], { env });
    expect(r.code).toBe(1);
    expectOneErrorLine(r.stderr);
  });

  const usage: [string, string[], RegExp][] = [
    ['-r abc', ['-r', 'abc'], /invalid value for -r\/--temperature: "abc"/],
    ['-r -1', ['-r', '-1'], /invalid value for -r\/--temperature: "-1" \(expected a number >= 0\)/],
    ['-s 1.5', ['-s', '1.5'], /invalid value for -s\/--step: "1.5" \(expected an integer >= 0\)/],
    ['--seed x', ['--seed', 'x'], /invalid value for --seed/],
    ['--threads 0', ['--threads', '0'], /invalid value for --threads: "0"/],
    ['--min-p 1', ['--min-p', '1'], /invalid value for --min-p/],
    ['-o talk', ['-o', 'talk'], /invalid value for -o\/--mode: "talk" \(expected generate, chat\)/],
    ['--backend tpu', ['--backend', 'tpu'], /invalid value for --backend: "tpu" \(expected cpu, webgpu, auto\)/],
    ['--kv-cache q8_0', ['--kv-cache', 'q8_0'], /invalid value for --kv-cache: "q8_0" \(expected f32, f16\)/],
    ['--model-url ftp://x', ['--model-url', 'ftp://x'], /invalid value for --model-url/],
    // Number() would take these; only plain decimal is a number here.
    ['-s 0x10', ['-s', '0x10'], /invalid value for -s\/--step: "0x10" \(expected an integer >= 0\)/],
    ['-s " 5"', ['-s', ' 5'], /invalid value for -s\/--step: " 5" \(expected an integer >= 0\)/],
    ['-s 1e2', ['-s', '1e2'], /invalid value for -s\/--step: "1e2" \(expected an integer >= 0\)/],
    ['--seed 0b1', ['--seed', '0b1'], /invalid value for --seed: "0b1"/],
    ['--threads 0o2', ['--threads', '0o2'], /invalid value for --threads: "0o2"/],
    ['-r 0x1', ['-r', '0x1'], /invalid value for -r\/--temperature: "0x1" \(expected a number >= 0\)/],
    ['-l "0.9 "', ['-l', '0.9 '], /invalid value for -l\/--topp: "0.9 "/],
    ['--min-p .5.', ['--min-p', '.5.'], /invalid value for --min-p: ".5."/],
    ['--model-url with a malformed %-escape', ['--model-url', 'http://127.0.0.1:9/%E0%A4%A.bin'], /invalid value for --model-url: "http:\/\/127.0.0.1:9\/%E0%A4%A.bin" \(expected an http\(s\) URL/],
    ['--tokenizer-url that is no URL', ['--tokenizer-url', 'tok.bin'], /invalid value for --tokenizer-url: "tok.bin" \(expected an http\(s\) URL/],
    ['an unknown flag', ['--frobnicate'], /unknown flag --frobnicate/],
    ['an unknown short flag', ['-x', '1'], /unknown flag -x/],
    ['a missing value', ['-m'], /flag -m\/--model needs a value/],
    ['a value for a switch', ['--json=yes'], /flag --json takes no value/],
    // A first argument that is no flag is a checkpoint (llama2.c's form: compat.test.ts); a later one is stray.
    ['a stray argument', ['-p', 'hi', 'model.bin'], /unexpected argument "model.bin"/],
    ['a stray argument after a checkpoint', ['model.bin', 'more.bin'], /unexpected argument "more.bin"/],
    ['--system without chat', ['--system', 'hi'], /--system needs --mode chat/],
  ];
  for (const [name, args, message] of usage) {
    it(`usage error, exit 2: ${name}`, async () => {
      const r = await runCli(args, { env });
      expect(r.code).toBe(2);
      expect(expectOneErrorLine(r.stderr)).toMatch(message);
      expect(r.stdout).toBe('');
    });
  }

  it('plain decimal numbers are accepted: signs, fractions, exponents where a real number is expected', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['--json', '-m', model, '-t', tokenizer, '-s', '+05', '-r', '.5', '-l', '9e-1', '--min-p', '0.', '--seed', '7'], { env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((jsonLines(r.stdout).pop() as { tokens: number[] }).tokens).toHaveLength(6);
  });

  // A bad address from the environment is named like a bad flag, not reported as a bare "Invalid URL" or "URI malformed".
  for (const value of ['not a url', 'ftp://127.0.0.1:9/m', 'http://127.0.0.1:9/%E0%A4%A']) {
    it(`usage error, exit 2: RAMA_MODEL_BASE_URL=${JSON.stringify(value)}`, async () => {
      const r = await runCli(['-m', 'stories15M', '-p', 'hi'], { env: { ...env, RAMA_MODEL_BASE_URL: value } });
      expect(r.code).toBe(2);
      expect(expectOneErrorLine(r.stderr)).toBe(`rama: error: invalid value for RAMA_MODEL_BASE_URL: ${JSON.stringify(value)} (expected an http(s) URL)`);
    });
  }

  it('RAMA_MODEL_BASE_URL is not checked when -m and -t make it unused', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['--json', '-m', model, '-t', tokenizer, '-s', '3'], { env: { ...env, RAMA_MODEL_BASE_URL: 'not a url' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});

describe('rama --backend webgpu/auto where there is no GPU adapter', () => {
  // A Vulkan loader told to load only a driver that does not exist finds none, as on a machine without a GPU.
  const noDriver = join(cache, 'no-such-driver.json');
  const noGpu = { ...env, VK_ICD_FILENAMES: noDriver, VK_DRIVER_FILES: noDriver, VK_ADD_DRIVER_FILES: '' };

  it("webgpu: stderr is exactly rama's one-line error (no driver or Dawn diagnostics), exit 1", async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['--backend', 'webgpu', '-m', model, '-t', tokenizer, '-p', 'hi', '-s', '5'], { env: noGpu });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^rama: error: WebGPU: no adapter found[^\n]*\n$/);
    expect(r.stdout).toBe('');
  });

  it('auto: runs on the CPU, and stderr carries only the tok/s line', async (ctx) => {
    const model = sharedFile(AIDREAMS);
    const tokenizer = sharedFile(TOK512);
    if (!model || !tokenizer) return ctx.skip(missingMessage(AIDREAMS));
    const r = await runCli(['--backend', 'auto', '-m', model, '-t', tokenizer, '-p', 'hi', '-s', '5', '-r', '0'], { env: noGpu });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^achieved tok\/s: \d+(\.\d+)?\n$/);
    const json = await runCli(['--json', '--backend', 'auto', '-m', model, '-t', tokenizer, '-p', 'hi', '-s', '5', '-r', '0'], { env: noGpu });
    expect(json.stderr).toBe('');
    expect((jsonLines(json.stdout).pop() as { backend: { name: string } }).backend.name).toBe('cpu');
  });
});

describe('rama --help / --version', () => {
  it('--help lists every flag on stdout, exit 0', async () => {
    const r = await runCli(['--help'], { env });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    for (const f of ['--model', '--tokenizer', '--prompt', '--step', '--temperature', '--topp', '--mode', '--q80', '--backend', '--seed', '--system', '--json', '--threads', '--top-k', '--min-p', '--repeat-penalty', '--kv-cache', '--model-url', '--tokenizer-url', '--version']) {
      expect(r.stdout).toContain(f);
    }
    expect((await runCli(['-h'], { env })).stdout).toBe(r.stdout);
  });

  it("--version prints package.json's version", async () => {
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await runCli(['--version'], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`rama ${version}\n`);
  });
});
