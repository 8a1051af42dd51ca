#!/usr/bin/env node
/** The `rama` executable: runs main() and exits with its code once stdout is flushed. */
import { main } from './main.js';

const fail = (e: unknown) => {
  process.stderr.write(`rama: error: ${String((e as Error)?.message ?? e).replace(/\s*\n\s*/g, ' ')}\n`);
  if (process.env.RAMA_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
  process.exit(1);
};
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);
// `rama ... | head`: a closed pipe ends the program quietly.
process.stdout.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' ? process.exit(0) : fail(e)));

const code = await main(process.argv.slice(2));
// Exit explicitly (a backend's worker or device must not keep the process alive), after stdout drains.
process.stdout.write('', () => process.exit(code));
