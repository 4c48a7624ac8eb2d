/**
 * The one request listener: the route table and the Host rule, pipelined requests of a connection run in
 * order, and each request's metrics and log line recorded where its answer is sent. Every route runs the
 * same way, through a callback (`done`), so the hot path (POST /request) makes no promise and no route
 * has a second dispatch of its own.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { crossSiteRefusal } from './cross-site.js';
import { readCells, writeCells } from './routes/cells.js';
import { listBackups, restore, s3dump } from './routes/backups.js';
import { CONSOLE_PATHS, serveConsole } from './routes/console.js';
import { requireAuth, type Ctx } from './routes/context.js';
import { healthcheck, metrics, stats } from './routes/health.js';
import { history, rollback } from './routes/history.js';
import { toLeader } from './routes/leader.js';
import { map } from './routes/map.js';
import { request } from './routes/request.js';
import { closeIfBody, HttpError, isClosing, sendError } from './http.js';
import type { Log } from './log.js';
import { clientAddress } from './login-guard.js';

/** A route's handler: answers `req` and then calls `done` once, with the error to answer if it threw one. */
type Handler = (req: IncomingMessage, res: ServerResponse, ctx: Ctx, done: (err?: unknown) => void) => void;

/** An async handler as a Handler. */
function viaPromise(handler: (req: IncomingMessage, res: ServerResponse, ctx: Ctx) => Promise<void>): Handler {
  return (req, res, ctx, done) => {
    handler(req, res, ctx).then(() => done(), done);
  };
}

/**
 * A write route as a Handler that, on a server that does not lead, checks the credentials and the login
 * throttle here (the leader would see every client as this server's address) and then sends the request on
 * (routes/leader.ts). POST /request decides itself, once it knows whether the body writes.
 */
function leaderOnly(handler: Handler): Handler {
  return (req, res, ctx, done) => {
    if (ctx.role.kind === 'leader') {
      handler(req, res, ctx, done);
      return;
    }
    try {
      requireAuth(req, ctx);
    } catch (err) {
      done(err);
      return;
    }
    toLeader(req, res, ctx, () => handler(req, res, ctx, done), done);
  };
}

/** path → method → handler. Wrong methods get 405 with Allow; unknown paths 404. */
const ROUTES = new Map<string, Map<string, Handler>>([
  ['/request', new Map([['POST', request]])],
  ['/s3dump', new Map([['POST', leaderOnly(viaPromise(s3dump))]])],
  ['/healthcheck', new Map([['GET', viaPromise(healthcheck)], ['HEAD', viaPromise(healthcheck)]])],
  ['/backups', new Map([['GET', viaPromise(listBackups)]])],
  ['/restore', new Map([['POST', leaderOnly(viaPromise(restore))]])],
  ['/history', new Map([['GET', viaPromise(history)]])],
  ['/rollback', new Map([['POST', leaderOnly(viaPromise(rollback))]])],
  ['/cells', new Map([['GET', viaPromise(readCells)], ['PUT', leaderOnly(viaPromise(writeCells))]])],
  ['/stats', new Map([['GET', viaPromise(stats)]])],
  ['/metrics', new Map([['GET', viaPromise(metrics)]])],
  ['/map.png', new Map([['GET', viaPromise(map)]])],
  ...CONSOLE_PATHS.map((path): [string, Map<string, Handler>] => [path, new Map([['GET', viaPromise(serveConsole)], ['HEAD', viaPromise(serveConsole)]])]),
]);

/** What the listener needs besides the handlers' ctx. */
export interface ListenerOptions {
  ctx: Ctx;
  log: Log;
  logRequests: boolean;
  /** Called when a request arrives and when its response has closed (the app's in-flight count). */
  opened: () => void;
  closed: () => void;
}

/** The request running on a connection, so a pipelined one waits for it. */
const RUNNING = Symbol('cubecache.running');

/** One request's turn on its connection; the next request's start is kept only if it has to wait. */
class Turn {
  finished = false;
  private next: (() => void) | undefined;

  finish(): void {
    this.finished = true;
    const next = this.next;
    this.next = undefined;
    next?.();
  }

  /** Runs `start` when this turn has finished (at once if it has). */
  then(start: () => void): void {
    if (this.finished) start();
    else this.next = start;
  }
}

/** The request listener for node:http's createServer (see the file comment). */
export function createListener(options: ListenerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { ctx, log } = options;
  return (req, res) => {
    // The connection is closing after an answer that said so: the client was told, and what it sent after
    // is not served (RFC 9112, 9.6), only drained until the socket goes.
    if (isClosing(req.socket)) {
      req.resume();
      return;
    }
    options.opened();
    const started = performance.now();
    // Pipelined requests on one connection run in order: a read must not overtake an earlier write still
    // waiting for its body. Almost always nothing is running on the connection, and the request runs at once.
    const socket = req.socket as typeof req.socket & { [RUNNING]?: Turn };
    const before = socket[RUNNING];
    const turn = new Turn();
    socket[RUNNING] = turn;
    // 'close' comes once: `on` spares the wrapper `once` builds.
    res.on('close', () => {
      if (socket[RUNNING] === turn) socket[RUNNING] = undefined;
      options.closed();
    });
    const path = pathOf(req.url);
    const done = (err?: unknown) => {
      if (err !== undefined) sendError(req, res, err, log);
      const seconds = (performance.now() - started) / 1000;
      // The route a URL names, or "other": metric labels stay a small fixed set whatever clients send.
      const route = ROUTES.has(path) ? path : 'other';
      ctx.metrics.observe(route, res.statusCode, seconds);
      if (options.logRequests) {
        log.info('request', { method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1e4) / 10, client: clientAddress(req, ctx.trustedProxies) });
      }
      turn.finish();
    };
    const run = () => {
      let handler: Handler;
      try {
        handler = route(req, path);
      } catch (err) {
        done(err);
        return;
      }
      handler(req, res, ctx, done);
    };
    if (before && !before.finished) before.then(run);
    else run();
  };
}

/** The path of a request URL: without its query. */
function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}

/** The handler for `req` (whose URL's path is `path`), or the HttpError that answers it: a 400 for HTTP/1.1 without Host, 404, 405, a 403 for a write a browser made for another site. */
function route(req: IncomingMessage, path: string): Handler {
  // node:http would refuse a missing Host with a bare 400 (requireHostHeader); this one is JSON like every error.
  if (req.headers.host === undefined && req.httpVersionMinor >= 1) throw new HttpError(400, 'an HTTP/1.1 request needs a Host header', { Connection: 'close' });
  const methods = ROUTES.get(path);
  if (!methods) throw new HttpError(404, `no route ${path}`);
  const handler = methods.get(req.method ?? '');
  if (!handler) throw new HttpError(405, `method ${req.method} not allowed on ${path}`, { Allow: [...methods.keys()].join(', ') });
  // Every method but GET and HEAD can write (POST /request, PUT /cells, /restore, /rollback, /s3dump): checked here, once for all.
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    const refused = crossSiteRefusal(req.headers);
    if (refused) throw new HttpError(403, refused, closeIfBody(req));
  }
  return handler;
}
