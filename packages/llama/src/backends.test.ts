/**
 * @rama/tensor-webgpu is an optional peer dependency of @rama/llama. When it is
 * not installed, backend "webgpu" must be a BackendError that says to install
 * it, and "auto" must run on the CPU.
 *
 * The package is installed in this workspace (a devDependency, for the other
 * tests), so its absence is made two honest ways: (1) createBackend is given
 * an importer that fails with the very error Node gives for a missing package
 * (taken from a real `import()` in a folder where nothing is installed), and
 * (2) the built @rama/llama is run in a child Node process whose module
 * resolution of @rama/tensor-webgpu (only) starts from such a folder, so the
 * real dynamic import inside dist/index.js fails as it would for a user.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BackendError } from '@rama/core';
import { isCI, missingMessage, sharedFile } from '@rama/testkit';
import { createBackend, isMissingPackage, WEBGPU_PACKAGE, type WebGpuModule } from './backends.js';

let empty: string;
beforeAll(() => (empty = mkdtempSync(join(tmpdir(), 'rama-no-webgpu-'))));
afterAll(() => rmSync(empty, { recursive: true, force: true }));

/** What Node's import() rejects with when a package is not installed: code and message, from a real import. */
function nodeMissingPackageError(pkg: string): Error {
  const out = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', `import(${JSON.stringify(pkg)}).then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`],
    { cwd: empty, encoding: 'utf8' },
  );
  const { code, message } = JSON.parse(out) as { code?: string; message?: string };
  expect(code).toBe('ERR_MODULE_NOT_FOUND');
  return Object.assign(new Error(message), { code });
}

describe('createBackend without @rama/tensor-webgpu', () => {
  const missing = (): Promise<WebGpuModule> => Promise.reject(nodeMissingPackageError(WEBGPU_PACKAGE));

  it('"webgpu" is a BackendError that says to install the package', async () => {
    const err = await createBackend('webgpu', { maxRows: 4, importWebGpu: missing }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toMatch(/needs the @rama\/tensor-webgpu package, which is not installed/);
    expect((err as Error).message).toMatch(/npm install @rama\/tensor-webgpu/);
    expect(((err as Error).cause as { code?: string }).code).toBe('ERR_MODULE_NOT_FOUND');
  });

  it('"auto" falls back to the CPU', async () => {
    const { backend, owned } = await createBackend('auto', { maxRows: 4, threads: 1, importWebGpu: missing });
    try {
      expect(owned).toBe(true);
      expect(backend.name).toBe('cpu');
    } finally {
      backend.dispose();
    }
  });

  it('a package that is there but fails to load is a BackendError too (so "auto" still runs), not "not installed"', async () => {
    const broken = () => Promise.reject(nodeMissingPackageError('webgpu')); // a dependency of the package missing
    const err = await createBackend('webgpu', { maxRows: 4, importWebGpu: broken }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toMatch(/^cannot load @rama\/tensor-webgpu: Cannot find package 'webgpu'/);
    const { backend } = await createBackend('auto', { maxRows: 4, threads: 1, importWebGpu: broken });
    expect(backend.name).toBe('cpu');
    backend.dispose();
  });

  it('isMissingPackage tells the package itself from what it imports', () => {
    expect(isMissingPackage(nodeMissingPackageError(WEBGPU_PACKAGE), WEBGPU_PACKAGE)).toBe(true);
    expect(isMissingPackage(nodeMissingPackageError('webgpu'), WEBGPU_PACKAGE)).toBe(false);
    expect(isMissingPackage(new Error('GPU adapter lost'), WEBGPU_PACKAGE)).toBe(false);
  });
});

describe('the built @rama/llama without @rama/tensor-webgpu (child process)', () => {
  const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'index.js');

  it('load with "webgpu" fails with the install hint; "auto" generates on the CPU', async (ctx) => {
    if (!existsSync(dist)) {
      if (isCI()) throw new Error(`${dist} is missing: the test task builds it first`);
      return ctx.skip('packages/llama/dist is not built (pnpm build)');
    }
    const model = sharedFile('models/aidreams260K.bin');
    const tokenizer = sharedFile('models/tok512-aidreams.bin');
    if (!model || !tokenizer) return ctx.skip(missingMessage('models/aidreams260K.bin'));
    // A resolve hook that looks for @rama/tensor-webgpu from an empty folder, as if it were not installed.
    const hook = `
      const empty = ${JSON.stringify(pathToFileURL(join(empty, 'x.mjs')).href)};
      export async function resolve(specifier, context, next) {
        if (specifier === ${JSON.stringify(WEBGPU_PACKAGE)} || specifier.startsWith(${JSON.stringify(`${WEBGPU_PACKAGE}/`)})) {
          return next(specifier, { ...context, parentURL: empty });
        }
        return next(specifier, context);
      }`;
    const script = `
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
      const { Llama } = await import(${JSON.stringify(pathToFileURL(dist).href)});
      const opts = { model: ${JSON.stringify(model)}, tokenizer: ${JSON.stringify(tokenizer)}, threads: 1 };
      const webgpu = await Llama.load({ ...opts, backend: 'webgpu' }).then(
        (l) => (l.dispose(), { ok: true }),
        (e) => ({ name: e.name, code: e.code, message: e.message }),
      );
      const llama = await Llama.load({ ...opts, backend: 'auto' });
      const r = await llama.generate('I dreamed', { steps: 4, temperature: 0 }).result();
      const auto = { backend: llama.backend.name, tokens: r.tokens.length };
      llama.dispose();
      console.log(JSON.stringify({ webgpu, auto }));
      process.exit(0);`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    const { webgpu, auto } = JSON.parse(out.trim().split('\n').pop()!);
    expect(webgpu).toMatchObject({ name: 'BackendError', code: 'E_BACKEND' });
    expect(webgpu.message).toMatch(/needs the @rama\/tensor-webgpu package, which is not installed/);
    expect(auto).toEqual({ backend: 'cpu', tokens: 5 });
  });
});
