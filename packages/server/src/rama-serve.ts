#!/usr/bin/env node
/** The `rama-serve` executable: runs main() and exits with its code; a failure is one line on stderr (RAMA_DEBUG=1: the stack too). */
import { main } from './cli.js';

const fail = (e: unknown) => {
  const err = e as NodeJS.ErrnoException;
  let msg = String(err?.message ?? e).replace(/\s*\n\s*/g, ' ');
  if (err?.code === 'EADDRINUSE') msg = `the address is in use (${msg}): choose another --port`;
  if (err?.code === 'EACCES') msg = `not allowed to listen there (${msg}): choose a port above 1023`;
  process.stderr.write(`rama-serve: error: ${msg}\n`);
  if (process.env.RAMA_DEBUG) process.stderr.write(`${err?.stack}\n`);
  process.exit(1);
};
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

const code = await main(process.argv.slice(2)).catch(fail);
// Exit explicitly (a backend's worker or device must not keep the process alive), after stdout drains.
process.stdout.write('', () => process.exit(code ?? 1));
