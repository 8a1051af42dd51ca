/**
 * `rama serve`: @rama/server's command inside the rama CLI, with the built-in
 * model when no -m is given. Runs the BUILT command (dist/rama.js).
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { Llama } from '@rama/llama';
import { BUILTIN_MODEL } from './models.js';
import { RAMA, runCli } from './run-cli.js';

describe('rama serve', () => {
  it('--help is the server\'s usage under the name "rama serve"; a bad flag is one line, exit 2', async () => {
    const help = await runCli(['serve', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: rama serve -m MODEL -t TOKENIZER/);
    expect(help.stdout).toContain('POST /v1/chat/completions');
    const bad = await runCli(['serve', '--port', 'eighty']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^rama serve: error: .*--port/);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    const top = await runCli(['--help']);
    expect(top.stdout).toContain('rama serve [options]');
  });

  it('serves the built-in model: /health, a greedy completion equal to the library\'s, and SIGTERM drains and exits 0', async () => {
    const child = spawn(process.execPath, [RAMA, 'serve', '--port', '0', '--parallel', '2'], { env: { ...process.env, RAMA_DEBUG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      for (let t = 0; t < 600 && !/listening on (http:\S+)/.test(stderr); t++) await new Promise((r) => setTimeout(r, 50));
      const url = /listening on (http:\S+)/.exec(stderr)?.[1];
      expect(url, stderr).toBeDefined();
      expect(stderr).toMatch(/^rama serve: listening on .*\(model aidreams260K, /);
      expect((await fetch(`${url}/health`)).status).toBe(200);

      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'I dreamed of', max_tokens: 20, temperature: 0 }),
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { choices: { text: string }[] };
      // The library's greedy continuation of the same prompt, 20 tokens.
      const llama = await Llama.load({ model: BUILTIN_MODEL.model, tokenizer: BUILTIN_MODEL.tokenizer });
      let direct = '';
      try {
        for await (const t of llama.generate('I dreamed of', { temperature: 0, maxTokens: 20 })) if (!t.prompt) direct += t.text;
      } finally {
        llama.dispose();
      }
      expect(direct.length).toBeGreaterThan(20);
      expect(body.choices[0].text).toBe(direct);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/rama serve: SIGTERM: draining/);
    expect(stderr).toMatch(/rama serve: stopped/);
  });
});
