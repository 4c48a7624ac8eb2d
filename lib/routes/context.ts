/** What route handlers work with (built once per app in createApp), and the Basic-auth gate every protected route passes first. */
import type { IncomingMessage } from 'node:http';
import type { Backups, WritePath } from '../backup/backups.js';
import type { Cube } from '../cube.js';
import { closeIfBody, HttpError } from '../http.js';
import { clientAddress, type LoginGuard } from '../login-guard.js';
import type { Log } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { RoleView } from '../role.js';
import type { Shape } from '../shape.js';

/** What handlers work with; built once per app. */
export interface Ctx {
  cube: Cube;
  /** The world's shape; undefined for a flat world, which refuses boxes and maps. */
  shape: Shape | undefined;
  backups: Backups;
  /** The one write path: every change to cells goes through writes.apply(); reads that must not show an unlogged value wait on writes.settled(). */
  writes: WritePath;
  metrics: Metrics;
  /** True when the Authorization header carries the configured credentials. */
  checkAuth: (header: string | undefined) => boolean;
  guard: LoginGuard;
  /** Proxies in front of the server whose X-Forwarded-For entries are trusted. */
  trustedProxies: number;
  startedAt: number;
  now: () => number;
  /** An answer whose client reads none of it for this long is dropped (a whole-world GET /cells must not hold a slot forever). */
  stallMs: number;
  /** This server's role: whether it takes writes itself, where they go otherwise, and replication's state. */
  role: RoleView;
  /** The app's log (forward.ts reports a leader it cannot reach there). */
  log: Log;
}


/** 401 unless the request carries the configured Basic credentials; 429 while its address is throttled for failed logins. */
export function requireAuth(req: IncomingMessage, ctx: Ctx): void {
  // While no address has failed logins on record (almost always), the address is needed only if this one fails.
  const address = ctx.guard.tracking ? clientAddress(req, ctx.trustedProxies) : undefined;
  const waitMs = address === undefined ? 0 : ctx.guard.blocked(address);
  if (waitMs > 0) {
    ctx.metrics.loginsThrottled++;
    throw new HttpError(429, 'too many failed logins from this address; try again later', { 'Retry-After': String(Math.ceil(waitMs / 1000)), ...closeIfBody(req) });
  }
  if (!ctx.checkAuth(req.headers.authorization)) {
    ctx.metrics.authFailures++;
    ctx.guard.fail(address ?? clientAddress(req, ctx.trustedProxies));
    throw new HttpError(401, 'authentication required', { 'WWW-Authenticate': 'Basic realm="cubecache", charset="UTF-8"', ...closeIfBody(req) });
  }
  if (address !== undefined) ctx.guard.succeed(address);
}
