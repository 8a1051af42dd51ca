#!/usr/bin/env node
/** The `rama-serve` executable: flags, load, serve; SIGTERM or SIGINT drains running requests, a second signal exits at once. */
import { createRequire } from 'node:module';
import { parseArgs, runServe, USAGE } from './cli.js';

const fail = (e: unknown, code = 1) => {
  const err = e as NodeJS.ErrnoException;
  let msg = String(err?.message ?? e).replace(/\s*\n\s*/g, ' ');
  if (err?.code === 'EADDRINUSE') msg = `the address is in use (${msg}): choose another --port`;
  if (err?.code === 'EACCES') msg = `not allowed to listen there (${msg}): choose a port above 1023`;
  process.stderr.write(`rama-serve: error: ${msg}\n`);
  if (process.env.RAMA_DEBUG) process.stderr.write(`${err?.stack}\n`);
  process.exit(code);
};
process.on('uncaughtException', (e) => fail(e));
process.on('unhandledRejection', (e) => fail(e));

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (e) {
  fail(e, 2);
}
if (args === 'help') {
  process.stdout.write(USAGE);
  process.exit(0);
} else if (args === 'version') {
  const { version } = createRequire(import.meta.url)('../package.json') as { version: string };
  process.stdout.write(`rama-serve ${version}\n`);
  process.exit(0);
} else if (args) {
  const { llama, handle } = await runServe(args);
  process.stderr.write(
    `rama-serve: listening on ${handle.url} (model ${args.modelName}, ${llama.config.seqLen} positions, parallel ${args.parallel}, queue ${args.queue}${args.apiKey ? ', API key required' : ''})\n`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      process.stderr.write(`rama-serve: ${signal} again: exiting now\n`);
      process.exit(1);
    }
    stopping = true;
    process.stderr.write(`rama-serve: ${signal}: draining (up to ${args.drainMs} ms)\n`);
    handle
      .close({ drainMs: args.drainMs })
      .then(() => {
        llama.dispose();
        process.stderr.write('rama-serve: stopped\n');
        process.exit(0);
      })
      .catch((e) => fail(e));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
