export { serve } from './server.js';
export type { ServeOptions, ServerHandle, CloseOptions } from './server.js';
export { parseArgs, runServe, USAGE } from './cli.js';
export type { ServeArgs } from './cli.js';
