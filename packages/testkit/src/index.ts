/**
 * Where tests find the project's shared data (../shared beside the repo root,
 * or $RAMA_SHARED). A missing file skips the test locally with a message that
 * says what is missing, and fails it under CI=true, where it must be present.
 */
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest folder above this file holding pnpm-workspace.yaml. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('testkit: cannot find the repository root (pnpm-workspace.yaml)');
    dir = up;
  }
  return dir;
}

export function sharedDir(): string {
  return process.env.RAMA_SHARED ? resolve(process.env.RAMA_SHARED) : resolve(repoRoot(), '..', 'shared');
}

export const isCI = (): boolean => process.env.CI === 'true' || process.env.CI === '1';

/**
 * Resolves a path under shared/. Returns undefined when it is missing locally
 * (call `skip(reason)` with `missingMessage`), and throws under CI.
 */
export function sharedFile(rel: string): string | undefined {
  const p = join(sharedDir(), rel);
  if (existsSync(p)) return p;
  if (isCI()) throw new Error(`shared data missing under CI: ${p} (set RAMA_SHARED or provide ../shared)`);
  return undefined;
}

export function missingMessage(rel: string): string {
  return `skipped: shared file ${join(sharedDir(), rel)} not found (set RAMA_SHARED to the shared/ folder)`;
}

export interface GenerateGolden {
  id: string;
  model: string;
  model_sha256: string;
  synth_args?: string;
  tokenizer: string;
  prompt: string;
  steps: number;
  temperature: number;
  topp: number;
  seed: number;
  reference: string;
  prompt_tokens: number[];
  logits_pos0_top10: [number, number][];
  logits_last_prompt_top10: [number, number][];
  tokens: number[];
  text: string;
}

export interface EncodeGolden {
  tokenizer: string;
  text: string;
  bos: boolean;
  eos: boolean;
  tokens: number[];
}

function readJsonl<T>(rel: string): T[] {
  const p = sharedFile(rel);
  if (!p) return [];
  return readFileSync(p, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T);
}

export const generateGoldens = (): GenerateGolden[] => readJsonl<GenerateGolden>('goldens/generate.jsonl');
export const encodeGoldens = (): EncodeGolden[] => readJsonl<EncodeGolden>('goldens/encode.jsonl');

/** Folder for generated test and benchmark models (ignored by git). */
export function cacheDir(...parts: string[]): string {
  const dir = join(repoRoot(), '.cache', ...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * Writes (once, cached by name) a model with shared/tools/synth-model.mjs.
 * `args` are the tool's arguments as in a golden's `synth_args`.
 */
export function synthModel(name: string, args: string): string | undefined {
  const tool = sharedFile('tools/synth-model.mjs');
  if (!tool) return undefined;
  const out = join(cacheDir('models'), name);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync(process.execPath, [tool, ...args.split(/\s+/).filter(Boolean), '--out', tmp], { stdio: 'ignore' });
    renameSync(tmp, out);
  }
  return out;
}

/** The model file a generate golden names: shared/models/<model> or a synthesized one (sha256 checked). */
export function goldenModelPath(g: GenerateGolden): string | undefined {
  if (!g.synth_args) return sharedFile(`models/${g.model}`);
  const p = synthModel(g.model, g.synth_args);
  if (p && sha256File(p) !== g.model_sha256) {
    throw new Error(`${g.id}: synthesized ${p} has a different sha256 than the golden expects (synth tool changed?)`);
  }
  return p;
}

/**
 * Golden cases whose tail is decided by the last bit of a transcendental
 * function, so they are checked exactly up to the first token that bit decides.
 *
 * - cpu: llama2.c's goldens come from glibc's expf/sinf/cosf, which are not
 *   correctly rounded (their last bit differs from a correctly rounded result
 *   for about 1% of RoPE angles and 0.06% of exp arguments). JavaScript has no
 *   access to glibc's libm and its code cannot be copied into this project.
 *   Evidence: llama2.c's own runq.c, rebuilt with correctly rounded
 *   cos/sin/exp, produces our CPU output token for token, and leaves the golden
 *   at the same token.
 * - webgpu: WGSL's exp is not correctly rounded either, and the fused
 *   attention kernel's online softmax rescales partial sums, so the WebGPU
 *   backend's probabilities differ from the CPU's in the last bits.
 */
export type BackendKind = 'cpu' | 'webgpu';

export const ROUNDING_BOUND_GOLDENS: Readonly<Record<string, Readonly<Record<BackendKind, number>>>> = {
  // temperature 1.0 over a near-uniform synthetic distribution: a sample flips on the last bit of a probability
  's15-shape-q80-topp-seed5': { cpu: 39, webgpu: 24 },
};

/** What a golden case expects on a backend: all of `tokens` and `text`, or the exact prefix of a rounding-bound case. */
export function goldenExpectation(g: GenerateGolden, backend: BackendKind = 'cpu'): { tokens: number[]; text?: string } {
  const bound = ROUNDING_BOUND_GOLDENS[g.id]?.[backend];
  return bound ? { tokens: g.tokens.slice(0, bound) } : { tokens: g.tokens, text: g.text };
}

/** The part of an output that a golden's expectation covers on that backend. */
export function comparableOutput(g: GenerateGolden, out: { tokens: number[]; text: string }, backend: BackendKind = 'cpu'): { tokens: number[]; text?: string } {
  const bound = ROUNDING_BOUND_GOLDENS[g.id]?.[backend];
  return bound ? { tokens: out.tokens.slice(0, bound) } : { tokens: out.tokens, text: out.text };
}

export { specialPaths, releaseFifo, settleWithin, type SpecialPaths, type Outcome } from './special-files.js';
export { fuzzParams, trackAllocations, AllocationLimitExceeded, type FuzzParams, type AllocationLog } from './fuzz.js';
export { applyMutations, mutationsArb, lyingInt32, type Mutation, type MutationOptions } from './mutate.js';

/**
 * A small deterministic PRNG (mulberry32): numbers in [0, 1), so random
 * schedules in tests can be replayed from their seed. (The conformance suite
 * in @rama/backend-conformance has its own copy: a published package cannot
 * depend on this private one.)
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
export { startFakeHub, type FakeHub, type FakeHubRepo, type FakeHubRequest, type CdnBehaviour } from './fake-hub.js';
