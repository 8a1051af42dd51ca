/**
 * What the browser tests share: Debian's Chromium with WebGPU on SwiftShader,
 * and a static server for the built pages (vite build's dist/) plus model
 * files, with the headers a test asks for.
 */
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless Chromium with WebGPU on SwiftShader (NOTES.md: no Vulkan/ANGLE flags, they hang the GPU process here). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
};

export interface ServeOptions {
  /** COOP/COEP, as vite.config.ts sends them (default true). */
  isolation?: boolean;
  /** A Content-Security-Policy header. */
  csp?: string;
  /** Told every path asked for, in order. */
  onRequest?: (path: string) => void;
}

/**
 * Serves `dist` (index.html at /) and `files` by path: a file on disk (its
 * path) or bytes in memory. Listens on 127.0.0.1, a free port.
 */
export function servePage(dist: string, files: Record<string, string | Uint8Array>, opts: ServeOptions = {}): Promise<Server> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    opts.onRequest?.(path);
    const headers = {
      ...(opts.isolation === false ? {} : { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' }),
      ...(opts.csp ? { 'Content-Security-Policy': opts.csp } : {}),
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    };
    let file = files[path];
    if (file instanceof Uint8Array) {
      res.writeHead(200, { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': file.length }).end(file);
      return;
    }
    if (!file) {
      const p = normalize(join(dist, path === '/' ? 'index.html' : path));
      if (p.startsWith(dist + sep) && existsSync(p) && statSync(p).isFile()) file = p;
    }
    if (!file) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end('not found');
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Content-Length': statSync(file).size });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => ok(server));
  });
}
