/**
 * Test helper: runs the BUILT command (dist/rama.js) as a child process.
 * turbo builds it before `test`; for a local run: pnpm --filter @rama/cli build.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const RAMA = fileURLToPath(new URL('../dist/rama.js', import.meta.url));

/** No test may reach the real network: the default downloads and the Hub point at a closed local port unless a test says otherwise. */
export const NO_NETWORK = 'http://127.0.0.1:9';

/** What every run gets unless a test says otherwise: no network, no token, not offline, no debug output. */
const BASE_ENV = { RAMA_MODEL_BASE_URL: NO_NETWORK, HF_ENDPOINT: NO_NETWORK, HF_TOKEN: '', HF_HUB_OFFLINE: '', RAMA_DEBUG: '' };

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: { input?: string; env?: Record<string, string | undefined>; timeoutMs?: number } = {}): Promise<CliRun> {
  if (!existsSync(RAMA)) throw new Error(`${RAMA} is missing: build it first (pnpm --filter @rama/cli build)`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [RAMA, ...args], {
      env: { ...process.env, ...BASE_ENV, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 100_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** The JSON lines of stdout (every line must be JSON). */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** One step of a terminal session (see pty-session.py): wait for a pattern, type text, or wait for the end. */
export type PtyStep = ['expect', string, number] | ['send', string] | ['exit', number];

export interface PtyRun {
  /** Index of the step that failed, or null. */
  failed: number | null;
  why: string | null;
  status: number | null;
  output: string;
}

const PTY_SESSION = fileURLToPath(new URL('./pty-session.py', import.meta.url));

/** Whether python3 (with its pty module) can drive a terminal session here. */
export const havePty = (): boolean => spawnSync('python3', ['-c', 'import pty'], { stdio: 'ignore' }).status === 0;

/** Runs the built command on a pseudo-terminal, typing and waiting as `steps` say. */
export function runPty(steps: PtyStep[], args: string[], opts: { env?: Record<string, string | undefined> } = {}): Promise<PtyRun> {
  if (!existsSync(RAMA)) throw new Error(`${RAMA} is missing: build it first (pnpm --filter @rama/cli build)`);
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [PTY_SESSION, JSON.stringify(steps), '--', process.execPath, RAMA, ...args], {
      env: { ...process.env, ...BASE_ENV, ...opts.env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as PtyRun) : reject(new Error(`pty-session.py exited with ${code}: ${out}`))));
  });
}
