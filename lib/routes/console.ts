/**
 * GET /console and its files: the operator console, a page that looks at the world through the same API
 * as curl (see lib/console/). Behind the same Basic auth as every route but the health check and the icon;
 * nothing it serves loads anything from elsewhere, and its Content-Security-Policy says so to the browser.
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { requireAuth, type Ctx } from './context.js';
import { HttpError } from '../http.js';

/** The page's files, next to this module's folder: lib/console from the sources, dist/lib/console once built (npm run build copies them). */
const FOLDER = new URL('../console/', import.meta.url);

/** What a path serves: the file, its type, and whether it needs the credentials (a browser asks for the icon on its own, without them). */
const FILES: ReadonlyMap<string, { file: string; type: string; open?: boolean }> = new Map([
  ['/console', { file: 'page.html', type: 'text/html; charset=utf-8' }],
  ['/console/console.js', { file: 'console.js', type: 'text/javascript; charset=utf-8' }],
  ['/console/console.css', { file: 'console.css', type: 'text/css; charset=utf-8' }],
  ['/favicon.ico', { file: 'favicon.ico', type: 'image/x-icon', open: true }],
]);

/** The paths the console serves (the listener routes each, for GET and HEAD, to serveConsole). */
export const CONSOLE_PATHS: readonly string[] = [...FILES.keys()];

/**
 * Only this server's own files, as scripts, styles, images and fetches; no inline script or style, no
 * frames either way, no forms posted anywhere. A page that cannot load another site's code cannot be made
 * to run it with the operator's credentials.
 */
const POLICY = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** GET or HEAD of one of CONSOLE_PATHS: the file, with the console's security headers. */
export async function serveConsole(req: IncomingMessage, res: ServerResponse, ctx: Ctx): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const entry = FILES.get(path);
  if (!entry) throw new HttpError(404, `no route ${path}`);
  if (!entry.open) requireAuth(req, ctx);
  // Read on each request (a few KiB, asynchronously): an edited page shows on reload, and nothing is held between requests.
  const body = await readFile(new URL(entry.file, FOLDER));
  res.writeHead(200, {
    'Content-Type': entry.type,
    'Content-Length': body.byteLength,
    // Revalidated on each load: after an upgrade the page and its script never come from two versions.
    'Cache-Control': 'no-cache',
    'Content-Security-Policy': POLICY,
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
