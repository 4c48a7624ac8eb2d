/** The application: a world, its backups and one HTTP server (its listener is lib/listener.ts): wiring and lifecycle. */
import { once } from 'node:events';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { basicChecker, type Credentials } from './auth.js';
import { Backups, type BackupsOptions, type FinalBackup, type RestoredFrom } from './backup/backups.js';
import { capConnections } from './connections.js';
import { Cube } from './cube.js';
import type { Ctx } from './routes/context.js';
import { closeGently, HttpError, rawErrorAnswer, sendError } from './http.js';
import type { Log } from './log.js';
import { createListener } from './listener.js';
import { LoginGuard } from './login-guard.js';
import { Metrics } from './metrics.js';
import type { RoleView } from './role.js';
import { cellsOf, type Shape } from './shape.js';
import { advertiseUrl } from './advertise.js';
import { networkInterfaces } from 'node:os';
import type { BlobStore } from './store.js';

export interface AppOptions {
  cells: number;
  /** The world's dimensions and index order (its product must be `cells`); undefined: a flat world, no boxes or maps. */
  shape?: Shape;
  /** The Basic credentials; `previousPassword` is accepted too while a password rotation is in progress. */
  auth: Credentials & { previousPassword?: string };
  store: BlobStore;
  /** Key prefix of this world's backups ('' or ending in '/'). */
  prefix: string;
  legacyKey: string;
  backupRetain: number;
  /** Milliseconds between scheduled snapshots; 0 turns them off. */
  backupIntervalMs: number;
  /** Milliseconds between shipments of changes to the store; 0 (the default here) turns shipping off. */
  shipIntervalMs?: number;
  /** PUTs a month shipping may use (0: no bound). */
  putBudget?: number;
  /** The write-ahead log; undefined keeps changes in memory until they are shipped or snapshotted. */
  wal?: BackupsOptions['wal'];
  log: Log;
  /** How long close() lets requests in flight finish before it drops their connections. */
  drainMs?: number;
  /** Proxies in front of the server whose X-Forwarded-For entries are trusted (0: use the socket address). */
  trustedProxies?: number;
  /** Open connections at most; more are refused at once. */
  maxConnections?: number;
  /** Log one line per request (off by default: it is the hot path). */
  logRequests?: boolean;
  /** Failed logins from one address within a minute before it gets 429 for a minute; 0 turns throttling off. */
  maxLoginFailures?: number;
  /**
   * Runs a full garbage collection (server.ts passes `gc` when node runs with --expose-gc). Called after a
   * restore or a backup: their large temporary buffers would otherwise stay resident on an idle server.
   */
  collectGarbage?: () => void;
  /** Slow-client limits in ms: all headers, a whole request, an idle keep-alive connection. */
  timeouts?: { headersMs?: number; requestMs?: number; keepAliveMs?: number };
  now?: () => number;
  /** This server's role (the standby's machinery); undefined: it always leads (soloRole). */
  role?: RoleView;
  /** Where the other server reaches this one (ADVERTISE_URL); undefined: derived once listening (lib/advertise.ts). */
  advertiseUrl?: string;
  /** REPLICATION and REPLICATION_TIMEOUT_MS. */
  replication?: { mode: 'sync' | 'async'; timeoutMs: number };
}

export type { FinalBackup } from './backup/backups.js';

export interface App {
  server: Server;
  cube: Cube;
  backups: Backups;
  /** Restores the world, then listens; rejects (e.g. EADDRINUSE, RestoreError) without serving. */
  start(port: number, host?: string): Promise<AddressInfo & { restoredFrom: RestoredFrom }>;
  /** Stops accepting, lets requests in flight finish, stops the loops, ships (or snapshots) what the store lacks, closes the log. */
  close(): Promise<FinalBackup>;
}

/** Builds an app with fresh state; nothing listens or touches the store until start(). */
export function createApp(options: AppOptions): App {
  const now = options.now ?? Date.now;
  const log = options.log;
  if (options.shape && cellsOf(options.shape) !== options.cells) throw new RangeError(`shape ${options.shape.x}x${options.shape.y}x${options.shape.z} does not hold ${options.cells} cells`);
  const cube = new Cube(options.cells);
  const backups = new Backups({
    store: options.store, cube, prefix: options.prefix, legacyKey: options.legacyKey,
    retain: options.backupRetain, intervalMs: options.backupIntervalMs, shipIntervalMs: options.shipIntervalMs ?? 0,
    putBudget: options.putBudget, wal: options.wal, log, now, collectGarbage: options.collectGarbage,
    replication: options.replication,
    authorization: `Basic ${Buffer.from(`${options.auth.user}:${options.auth.password}`).toString('base64')}`,
  });
  const metrics = new Metrics();
  const guard = new LoginGuard({ maxFailures: options.maxLoginFailures ?? 20, windowMs: 60_000, blockMs: 60_000, now });

  const trustedProxies = options.trustedProxies ?? 0;
  const ctx: Ctx = {
    cube, shape: options.shape, backups, writes: backups.writes, metrics, checkAuth: basicChecker(options.auth), guard, trustedProxies, startedAt: now(), now,
    stallMs: options.timeouts?.requestMs ?? 60_000, role: options.role ?? backups.role, log,
  };

  let inFlight = 0;
  const drained = new EventTarget();
  const listener = createListener({
    ctx, log, logRequests: options.logRequests ?? false,
    opened: () => { inFlight++; },
    closed: () => { if (--inFlight === 0) drained.dispatchEvent(new Event('drained')); },
  });
  // Check the timeouts every second (Node's default is every 30 s, which lets a slow client linger).
  // node:http would refuse a missing Host with a bare 400; the listener refuses it with a JSON one.
  const server = createServer({ connectionsCheckingInterval: 1000, requireHostHeader: false }, listener);
  // A client that half-closes after its request (printf ... | nc does) can still read: by default node:http ends
  // the connection at the client's FIN, and an answer that waits for the log (a write's) would be lost though
  // the write was applied. Half-open, node:http sends the answers still owed, then closes (its socketOnEnd).
  // The property is node:http's own (undocumented but read since Node 0.x), missing from @types/node.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  // A malformed Expect header, answered in JSON like every other error.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    sendError(req, res, new HttpError(417, `unsupported Expect: ${String(req.headers.expect).slice(0, 100)}`), log);
  });
  // Slow or stuck clients must not hold sockets: headers within 10 s (also a silent new connection's limit,
  // against a working keep-alive one's 65 s), a whole request (a 64 MiB PUT /cells included) within 60 s, an
  // answer that stops moving within 60 s (handlers' stallMs). EB's nginx keeps idle upstream connections up
  // to 60 s, hence 65 s keep-alive.
  server.headersTimeout = options.timeouts?.headersMs ?? 10_000;
  server.requestTimeout = options.timeouts?.requestMs ?? 60_000;
  server.keepAliveTimeout = options.timeouts?.keepAliveMs ?? 65_000;
  capConnections(server, options.maxConnections ?? 1024, server.headersTimeout);
  server.on('clientError', answerClientError);
  // A standby's stream (GET /replication with Upgrade): the one request that is not an HTTP exchange.
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const path = (req.url ?? '/').split('?')[0];
    let refused: { status: number; error: string } | undefined;
    if (path !== '/replication' || String(req.headers.upgrade).toLowerCase() !== 'cubecache-replication') refused = { status: 400, error: 'no upgrade is offered here' };
    else if (!ctx.checkAuth(req.headers.authorization)) refused = { status: 401, error: 'authentication required' };
    else refused = backups.acceptReplication(req, socket, head);
    if (refused) {
      const body = JSON.stringify({ status: refused.status, error: refused.error }); // as every error answer (http.ts)
      socket.end(`HTTP/1.1 ${refused.status} ${STATUS_CODES[refused.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    }
  });

  let closing: Promise<FinalBackup> | undefined;
  let started = false;

  return {
    server,
    cube,
    backups,
    async start(port, host) {
      const restoredFrom = await backups.restore();
      started = true;
      options.collectGarbage?.(); // the restore's buffers are garbage now: give them back before serving
      server.listen(port, host);
      await Promise.race([
        once(server, 'listening'),
        once(server, 'error').then(([err]) => { throw err; }),
      ]);
      // Accept failures (EMFILE under a connection flood) arrive as 'error': log them, never crash on them.
      server.on('error', (err) => log.error('server_error', { err }));
      const address = server.address() as AddressInfo;
      backups.begin(options.advertiseUrl ?? advertiseUrl(host ?? '0.0.0.0', address.port, networkInterfaces()));
      metrics.resetLoopDelay(); // the restore's stall is not one a client saw
      log.info('listening', { address: address.address, port: address.port, role: backups.role.kind, cells: cube.cells, store: options.store.location, prefix: options.prefix });
      return { ...address, restoredFrom };
    },
    close() {
      closing ??= (async () => {
        log.info('shutdown_started', { inFlight });
        // Handed over while still listening: writes that arrive meanwhile are forwarded to the new leader.
        if (started) await backups.handover();
        const closed = server.listening ? once(server, 'close') : Promise.resolve();
        server.close();
        if (inFlight > 0) {
          const deadline = AbortSignal.timeout(options.drainMs ?? 10_000);
          await Promise.race([once(drained, 'drained'), once(deadline, 'abort')]);
        }
        server.closeAllConnections();
        await closed;
        const final = started ? await backups.finish() : ({ outcome: 'unchanged' } as const);
        metrics.close();
        log.info('shutdown_finished', { finalBackup: final.outcome });
        return final;
      })();
      return closing;
    },
  };
}

/** Requests node:http's parser refuses (malformed, headers too large, too slow) still get a JSON error. */
function answerClientError(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  // As node:http itself does: answer only on a connection that has sent nothing yet, so an answer can never
  // land in the middle of an earlier pipelined response.
  if (!socket.writable || err.code === 'ECONNRESET' || (socket as { bytesWritten?: number }).bytesWritten !== 0) {
    socket.destroy();
    return;
  }
  // Then closed for sure: a timed-out request's client may never close its side, and would keep the socket
  // and the body that had arrived (a PUT /cells of 6 of 20 MiB, say) for as long as it lives.
  socket.write(rawErrorAnswer(err));
  closeGently(socket);
}

