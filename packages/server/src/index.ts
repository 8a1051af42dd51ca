export { serve } from './server.js';
export type { ServeOptions, ServerHandle, CloseOptions } from './server.js';
export { main, parseArgs, runServe, usage, USAGE } from './cli.js';
export type { MainIO, ServeArgs } from './cli.js';
