#!/usr/bin/env node
// The consumer test: Rama as someone who installs it from npm gets it.
//
// Packs every publishable package (`pnpm pack`, whose prepack builds it with
// turbo: its dependencies first, cached outputs reused), checks
// each tarball (metadata, LICENSE, every export target, source and declaration
// maps, no workspace: ranges), then installs the tarballs into fresh apps in a
// temporary folder, outside the workspace:
//   - app-npm (npm) and app-pnpm (pnpm, no build scripts allowed): @rama/llama
//     alone, the CPU-only case. node_modules must stay under 2 MiB and hold no
//     WebGPU (@rama/tensor-webgpu is an optional peer). The README's example
//     (examples/consumer/app) typechecks with skipLibCheck false under
//     module NodeNext and under moduleResolution bundler, runs with node and
//     gives the tokens the workspace's CLI gives; require('@rama/llama') from
//     CommonJS works or says to use import.
//   - app-web (npm): @rama/llama + @rama/tensor-webgpu + @rama/cli, Vite and
//     TypeScript from the registry. The browser example (examples/consumer/web)
//     typechecks without @types/node and without adding @webgpu/types by hand,
//     Vite builds it, and `npx rama` runs the model shipped inside @rama/cli.
// Last, `pnpm publish -r --dry-run` and `npm publish --dry-run` of each tarball
// must succeed.
//
// Needs the npm registry. Without it the test is skipped, except under CI=true,
// where it fails. `--keep` keeps the temporary folder (it is also kept when a
// step fails, and its path printed).
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ci = process.env.CI === 'true' || process.env.CI === '1';
const keep = process.argv.includes('--keep');
const MAX_CPU_INSTALL = 2 * 1024 * 1024;
const TYPESCRIPT = 'typescript@~5.9.3';
const TYPES_NODE = '@types/node@^20.19.0';
const VITE = 'vite@^7.3.0';

const started = Date.now();
const timings = [];
const log = (m) => console.log(`consumer: ${m}`);

// Children get a clean environment: none of the npm_* variables that `pnpm run` sets.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
Object.assign(env, { npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', NO_UPDATE_NOTIFIER: '1' });

function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? root, env: { ...env, ...opts.env }, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: opts.timeoutMs ?? 600_000 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(' ')} (in ${relative(root, opts.cwd ?? root) || '.'}) exited with ${r.status ?? r.signal}:\n${output.slice(-6000)}`);
  }
  return { status: r.status, stdout: r.stdout ?? '', output };
}

async function step(name, fn) {
  const t = Date.now();
  log(`${name} ...`);
  const result = await fn();
  const s = (Date.now() - t) / 1000;
  timings.push([name, s]);
  log(`${name}: ok (${s.toFixed(1)} s)`);
  return result;
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const readJson = (path) => JSON.parse(readFileSync(path, 'utf8'));

/** Bytes of every file under `dir` (links not followed). */
function duBytes(dir) {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += duBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

// ---------------------------------------------------------------------------

const reach = spawnSync('npm', ['ping'], { env, encoding: 'utf8', timeout: 60_000 });
if (reach.status !== 0) {
  const why = `the npm registry is not reachable (npm ping: ${(reach.stderr || reach.stdout || '').trim().split('\n').pop()})`;
  if (ci) {
    console.error(`consumer: FAILED: ${why}`);
    process.exit(1);
  }
  log(`skipped: ${why}`);
  process.exit(0);
}

const tmp = mkdtempSync(join(tmpdir(), 'rama-consumer-'));
const tarballs = join(tmp, 'tarballs');
mkdirSync(tarballs);
let failed = false;

try {
  // The publishable packages: every workspace package that is not private.
  const workspace = ['packages', 'examples'].flatMap((d) =>
    readdirSync(join(root, d))
      .map((n) => join(root, d, n))
      .filter((p) => existsSync(join(p, 'package.json'))),
  );
  // RAMA_CONSUMER_EXCLUDE (names, comma-separated) leaves out a package being written, for a local run.
  const excluded = (process.env.RAMA_CONSUMER_EXCLUDE ?? '').split(',').filter(Boolean);
  if (excluded.length) log(`leaving out ${excluded.join(', ')} (RAMA_CONSUMER_EXCLUDE)`);
  const publishable = workspace
    .map((dir) => ({ dir, pkg: readJson(join(dir, 'package.json')) }))
    .filter(({ pkg }) => !pkg.private && !excluded.includes(pkg.name));
  check(publishable.length >= 10, `expected at least 10 publishable packages, found ${publishable.map((p) => p.pkg.name)}`);
  const tgzOf = (name) => join(tarballs, `${name.replace(/^@/, '').replace('/', '-')}-${publishable.find((p) => p.pkg.name === name).pkg.version}.tgz`);

  await step(`pack ${publishable.length} packages (prepack: turbo run build)`, () => {
    // One at a time: each prepack is turbo (dependencies first, then cached outputs).
    for (const { dir } of publishable) sh('pnpm', ['pack', '--pack-destination', tarballs], { cwd: dir });
    for (const { pkg } of publishable) check(existsSync(tgzOf(pkg.name)), `no tarball for ${pkg.name}`);
  });

  await step('check the tarballs', () => {
    const rootLicense = readFileSync(join(root, 'LICENSE'), 'utf8');
    check(/^MIT License\n\nCopyright \(c\) 2026 The Rama authors\n/.test(rootLicense), 'the root LICENSE is not MIT, Copyright (c) 2026 The Rama authors');
    for (const { dir, pkg: source } of publishable) {
      const x = join(tmp, 'unpacked', source.name);
      mkdirSync(x, { recursive: true });
      execFileSync('tar', ['xzf', tgzOf(source.name), '-C', x]);
      const p = join(x, 'package');
      const files = readdirSync(p, { recursive: true, encoding: 'utf8' }).filter((f) => statSync(join(p, f)).isFile());
      const has = (f) => files.includes(f);
      const pkg = readJson(join(p, 'package.json'));
      const where = `${pkg.name} (${relative(root, dir)})`;
      check(has('LICENSE') && readFileSync(join(p, 'LICENSE'), 'utf8') === rootLicense, `${where}: LICENSE missing or not the root's`);
      check(has('README.md'), `${where}: README.md missing`);
      check(pkg.license === 'MIT', `${where}: license is ${pkg.license}`);
      check(pkg.repository?.url && pkg.repository?.directory === relative(root, dir), `${where}: repository.directory should be ${relative(root, dir)}`);
      check(pkg.homepage && pkg.bugs?.url && pkg.keywords?.length, `${where}: homepage, bugs or keywords missing`);
      check(pkg.engines?.node === '>=20', `${where}: engines.node is ${pkg.engines?.node}`);
      check(pkg.publishConfig?.access === 'public', `${where}: publishConfig.access should be public`);
      for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies']) {
        for (const [dep, range] of Object.entries(pkg[field] ?? {})) check(!String(range).startsWith('workspace:'), `${where}: ${field} ${dep} is ${range}`);
      }
      check(!files.some((f) => /\.test\.ts$/.test(f)), `${where}: ships test files`);
      // Every export target, in every condition (the @rama/source one too), is in the tarball.
      const targets = [];
      for (const entry of Object.values(pkg.exports ?? {})) for (const t of typeof entry === 'string' ? [entry] : Object.values(entry)) targets.push(t);
      for (const t of Object.values(pkg.bin ?? {})) targets.push(t);
      for (const t of targets) check(has(t.replace(/^\.\//, '')), `${where}: export target ${t} is not in the tarball`);
      // Source maps and declaration maps, and the sources they point at.
      for (const f of files.filter((f) => /^dist\/.*\.(js|d\.ts)$/.test(f))) {
        check(has(`${f}.map`), `${where}: ${f} has no ${f}.map`);
        const map = readJson(join(p, `${f}.map`));
        for (const s of map.sources) check(has(join(dirname(f), s)) || map.sourcesContent?.length, `${where}: ${f}.map points at ${s}, not in the tarball`);
      }
      if (pkg.name === '@rama/cli') {
        for (const f of ['models/aidreams260K.bin', 'models/tok512-aidreams.bin', 'models/LICENSE.md']) check(has(f), `${where}: ${f} missing`);
      }
    }
    log(`  ${publishable.length} tarballs: ${publishable.map(({ pkg }) => `${pkg.name} ${(statSync(tgzOf(pkg.name)).size / 1024).toFixed(0)} KiB`).join(', ')}`);
  });

  // Tarballs stand in for the registry: each @rama package resolves to its tarball.
  const overrides = Object.fromEntries(publishable.map(({ pkg }) => [pkg.name, `file:${tgzOf(pkg.name)}`]));
  const cpuOverrides = Object.fromEntries(Object.entries(overrides).filter(([n]) => n !== '@rama/tensor-webgpu' && n !== '@rama/cli'));
  const models = join(tmp, 'unpacked', '@rama/cli', 'package', 'models');

  // The workspace's CLI on the same prompt: what the packed build must reproduce.
  const expected = JSON.parse(sh(process.execPath, [join(root, 'examples/cli/dist/rama.js'), '--json', '-p', 'I dreamed of', '-s', '40', '-r', '0', '--threads', '1']).stdout.trim().split('\n').pop());

  /** A fresh app with the README's example and the models. */
  const newApp = (name, pkg) => {
    const dir = join(tmp, name);
    cpSync(join(root, 'examples/consumer/app'), dir, { recursive: true });
    cpSync(models, join(dir, 'models'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `rama-consumer-${name}`, private: true, type: 'module', ...pkg }, null, 2));
    return dir;
  };

  const cpuSizeCheck = (dir, tool) => {
    const nm = join(dir, 'node_modules');
    for (const absent of ['@rama/tensor-webgpu', 'webgpu', '@webgpu/types', '@rama/cli']) check(!existsSync(join(nm, absent)), `${tool}: ${absent} was installed for a CPU-only app`);
    if (tool === 'pnpm') {
      const store = readdirSync(join(nm, '.pnpm'));
      check(!store.some((e) => e.startsWith('webgpu@') || e.startsWith('@rama+tensor-webgpu@')), `pnpm: WebGPU packages in node_modules/.pnpm: ${store.join(', ')}`);
    }
    const bytes = duBytes(nm);
    log(`  ${tool}: node_modules of a CPU-only app (@rama/llama and its dependencies): ${bytes} bytes (${(bytes / 1024).toFixed(0)} KiB; limit ${MAX_CPU_INSTALL / 1024} KiB)`);
    check(bytes < MAX_CPU_INSTALL, `${tool}: node_modules is ${bytes} bytes, over ${MAX_CPU_INSTALL}`);
    return bytes;
  };

  const typecheckAndRun = (dir, tool) => {
    sh('npx', ['--no-install', 'tsc', '-p', 'tsconfig.bundler.json'], { cwd: dir });
    sh('npx', ['--no-install', 'tsc', '-p', 'tsconfig.nodenext.json'], { cwd: dir });
    const out = JSON.parse(sh(process.execPath, ['out/main.js'], { cwd: dir }).stdout.trim().split('\n').pop());
    check(out.text.startsWith('I dreamed of') && JSON.stringify(out.tokens) === JSON.stringify(expected.tokens), `${tool}: the example's tokens ${JSON.stringify(out.tokens)} are not the CLI's ${JSON.stringify(expected.tokens)}`);
    check(typeof out.reply === 'string' && out.reply.length > 0, `${tool}: empty chat reply`);
    log(`  ${tool}: ${JSON.stringify(out.text.slice(0, 60))}... (${out.tokens.length} tokens, as the workspace CLI)`);
    log(`  ${tool}: ${sh(process.execPath, ['src/require.cjs'], { cwd: dir }).stdout.trim()}`);
  };

  const npmSize = await step('npm: a CPU-only app installs @rama/llama', () => {
    const { ['@rama/llama']: _, ...rest } = cpuOverrides; // npm refuses an override of a direct dependency
    const dir = newApp('app-npm', { overrides: rest });
    sh('npm', ['install', '--no-audit', '--no-fund', overrides['@rama/llama']], { cwd: dir });
    return cpuSizeCheck(dir, 'npm');
  });

  await step('npm: typecheck (NodeNext, bundler; skipLibCheck false), run, require()', () => {
    const dir = join(tmp, 'app-npm');
    sh('npm', ['install', '--no-audit', '--no-fund', '--save-dev', TYPESCRIPT, TYPES_NODE], { cwd: dir });
    typecheckAndRun(dir, 'npm');
  });

  const pnpmSize = await step('pnpm: a CPU-only app installs @rama/llama (no build scripts allowed)', () => {
    const dir = newApp('app-pnpm', { dependencies: { '@rama/llama': overrides['@rama/llama'] } });
    writeFileSync(join(dir, 'pnpm-workspace.yaml'), `overrides:\n${Object.entries(cpuOverrides).map(([n, s]) => `  '${n}': '${s}'\n`).join('')}`);
    const r = sh('pnpm', ['install', '--no-frozen-lockfile'], { cwd: dir, allowFail: true });
    check(r.status === 0 && !r.output.includes('ERR_PNPM_IGNORED_BUILDS'), `pnpm install failed (${r.status}):\n${r.output.slice(-4000)}`);
    return cpuSizeCheck(dir, 'pnpm');
  });

  await step('pnpm: typecheck (NodeNext, bundler; skipLibCheck false), run, require()', () => {
    const dir = join(tmp, 'app-pnpm');
    sh('pnpm', ['add', '--save-dev', TYPESCRIPT, TYPES_NODE], { cwd: dir });
    typecheckAndRun(dir, 'pnpm');
  });

  await step('npm: a browser app with WebGPU and the CLI; typecheck, Vite build, npx rama', () => {
    const dir = join(tmp, 'app-web');
    cpSync(join(root, 'examples/consumer/web'), dir, { recursive: true });
    cpSync(models, join(dir, 'public'), { recursive: true });
    const direct = ['@rama/llama', '@rama/tensor-webgpu', '@rama/cli'];
    const rest = Object.fromEntries(Object.entries(overrides).filter(([n]) => !direct.includes(n)));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'rama-consumer-web', private: true, type: 'module', overrides: rest }, null, 2));
    sh('npm', ['install', '--no-audit', '--no-fund', overrides['@rama/llama'], overrides['@rama/tensor-webgpu'], overrides['@rama/cli']], { cwd: dir });
    sh('npm', ['install', '--no-audit', '--no-fund', '--save-dev', TYPESCRIPT, VITE], { cwd: dir });
    check(!existsSync(join(dir, 'node_modules/@types/node')), 'the browser app got @types/node');
    // @webgpu/types comes with @rama/tensor-webgpu: the app does not add it.
    sh('npx', ['--no-install', 'tsc', '-p', 'tsconfig.json'], { cwd: dir });
    sh('npx', ['--no-install', 'vite', 'build', '--logLevel', 'warn'], { cwd: dir });
    const assets = readdirSync(join(dir, 'dist/assets'));
    check(existsSync(join(dir, 'dist/index.html')) && assets.some((a) => a.endsWith('.js')), `vite build wrote no page: ${assets}`);
    check(existsSync(join(dir, 'dist/aidreams260K.bin')), 'vite build did not copy the model from public/');
    log(`  vite: ${assets.map((a) => `${a} ${(statSync(join(dir, 'dist/assets', a)).size / 1024).toFixed(0)} KiB`).join(', ')}`);
    // The CLI from its package: the built-in model, no download, no network.
    const cli = sh('npx', ['--no-install', 'rama', '--json', '-p', 'I dreamed of', '-s', '40', '-r', '0', '--threads', '1'], { cwd: dir, env: { RAMA_MODEL_BASE_URL: 'http://127.0.0.1:9', RAMA_CACHE: join(tmp, 'rama-cache') } });
    const last = JSON.parse(cli.stdout.trim().split('\n').pop());
    check(JSON.stringify(last.tokens) === JSON.stringify(expected.tokens), `npx rama gave ${JSON.stringify(last.tokens)}, not ${JSON.stringify(expected.tokens)}`);
    check(last.model.path.includes(join('node_modules', '@rama', 'cli', 'models')), `npx rama ran ${last.model.path}`);
    check(!existsSync(join(tmp, 'rama-cache')), 'npx rama downloaded something');
    log(`  npx rama: the built-in model from ${relative(dir, last.model.path)}`);
  });

  await step('publish dry run: pnpm publish -r --dry-run, npm publish --dry-run of each tarball', () => {
    // The pack above ran the scripts; these check what would be published, as pnpm and as npm see it.
    const r = sh('pnpm', ['publish', '-r', '--dry-run', '--no-git-checks', '--ignore-scripts']);
    for (const { pkg } of publishable) check(r.output.includes(`${pkg.name}@${pkg.version}`), `pnpm publish -r --dry-run did not list ${pkg.name}@${pkg.version}:\n${r.output}`);
    // npm takes seconds per call, mostly waiting: all at once.
    return Promise.all(
      publishable.map(
        ({ pkg }) =>
          new Promise((resolve, reject) => {
            execFile('npm', ['publish', '--dry-run', '--access', 'public', '--ignore-scripts', tgzOf(pkg.name)], { cwd: tmp, env, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
              const output = `${stdout}${stderr}`;
              if (error || !output.includes(`${pkg.name}@${pkg.version}`)) reject(new Error(`npm publish --dry-run ${pkg.name}: ${error?.message ?? ''}\n${output.slice(-4000)}`));
              else resolve();
            });
          }),
      ),
    );
  });

  const total = (Date.now() - started) / 1000;
  log(`passed in ${total.toFixed(0)} s; CPU-only install: ${npmSize} bytes with npm, ${pnpmSize} with pnpm`);
  for (const [name, s] of timings) log(`  ${s.toFixed(1).padStart(6)} s  ${name}`);
} catch (e) {
  failed = true;
  console.error(`consumer: FAILED: ${e.message}`);
  console.error(`consumer: the apps and tarballs are kept in ${tmp}`);
  process.exitCode = 1;
} finally {
  if (!failed && !keep) rmSync(tmp, { recursive: true, force: true });
  else if (!failed) log(`kept ${tmp}`);
}
