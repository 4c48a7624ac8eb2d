/** Forwarding a request to the leader and its answer back: a small reverse proxy for the write routes of a standby. */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { closeGently, HttpError } from './http.js';
import type { Log } from './log.js';

/** The header a forwarded request carries, so a server that does not lead never forwards it again. */
export const FORWARDED_HEADER = 'x-cubecache-forwarded';

/** What forward() needs besides the request. */
export interface ForwardOptions {
  /** The request's body when a handler already read it; absent, `req` itself is streamed. */
  body?: Buffer;
  /** An answer (or a body to send) that moves no byte for this long is dropped. */
  stallMs: number;
  /** How long a new connection to the leader may take. */
  connectTimeoutMs?: number;
  log: Log;
}

/** Connections to one leader at most: a standby's writers queue behind them rather than open one each. */
const MAX_SOCKETS = 128;
/** Idle connections kept per leader, closed after IDLE_MS (under node:http's 65 s keep-alive, and its hint). */
const MAX_FREE_SOCKETS = 32;
const IDLE_MS = 30_000;
/** Leaders this process keeps agents for: a new leader every takeover, so the oldest go. */
const MAX_AGENTS = 4;

/** Headers that describe one connection, not the message (RFC 9110, 7.6.1); Host becomes the target's (node:http sets it from the URL), Expect was answered here. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect']);

function ignore(): void {}

interface Upstream { agent: HttpAgent; request: typeof httpRequest; failing: boolean }
const upstreams = new Map<string, Upstream>();

/** The keep-alive agent for `origin`, made once. */
function upstreamOf(origin: string, https: boolean): Upstream {
  let upstream = upstreams.get(origin);
  if (upstream) return upstream;
  // Forgotten, not destroyed: a request still in flight to an old leader finishes, its idle sockets close after IDLE_MS.
  if (upstreams.size >= MAX_AGENTS) upstreams.delete(upstreams.keys().next().value!);
  const options = { keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: MAX_FREE_SOCKETS, timeout: IDLE_MS, scheduling: 'lifo' as const };
  upstream = https
    ? { agent: new HttpsAgent(options), request: httpsRequest as typeof httpRequest, failing: false }
    : { agent: new HttpAgent(options), request: httpRequest, failing: false };
  upstreams.set(origin, upstream);
  return upstream;
}

/** `headers` without hop-by-hop ones (those named in Connection too). */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = headers.connection ? headers.connection.toLowerCase().split(',').map((name) => name.trim()) : [];
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || name.startsWith('proxy-') || named.includes(name)) continue;
    out[name] = value;
  }
  return out;
}

/**
 * Sends `req` (method, path and query, end-to-end headers, its body: `options.body` or the stream) to the
 * server at `target` (an origin such as http://10.0.1.23:5000) with X-Cubecache-Forwarded: 1, and streams
 * its answer back to `res`. Resolves once the answer is out (or the client left). Rejects, with nothing sent,
 * with a 503 HttpError (Retry-After: 1) when the leader could not be reached or the connection failed before
 * the whole request went out (nothing changed), a 502 when it failed after that and before an answer (the
 * write may or may not have been applied). An answer that breaks off halfway destroys `res`.
 */
export function forward(req: IncomingMessage, res: ServerResponse, target: string, options: ForwardOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const url = new URL(req.url ?? '/', target);
    const upstream = upstreamOf(url.origin, url.protocol === 'https:');
    const headers = endToEnd(req.headers);
    headers[FORWARDED_HEADER] = '1';
    if (options.body !== undefined) headers['content-length'] = options.body.length;
    let sent = false; // the whole request went out: from here on the leader may have applied it
    let answered = false;
    let settled = false;
    const settle = (err?: HttpError) => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve();
    };

    const out: ClientRequest = upstream.request(url, { method: req.method, headers, agent: upstream.agent });
    out.on('socket', (socket) => {
      if (!socket.connecting) return;
      const timer = setTimeout(() => out.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), options.connectTimeoutMs ?? 2000);
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    });
    // A leader (or a client feeding the body) that moves nothing for stallMs: give up on the exchange.
    out.setTimeout(options.stallMs, () => out.destroy(Object.assign(new Error('stalled'), { code: 'ESTALLED' })));
    out.on('finish', () => { sent = true; });
    out.on('error', (err: NodeJS.ErrnoException) => {
      if (answered) return; // the answer's own stream reports a break; a refused rest of the body is no failure
      if (!upstream.failing) {
        upstream.failing = true; // once per failing stretch, not once per request
        options.log.warn('forward_failed', { leader: url.origin, method: req.method, path: url.pathname, code: err.code ?? err.message, sent });
      }
      if (res.destroyed) {
        settle();
        return;
      }
      const close: Record<string, string> = req.complete || options.body !== undefined ? {} : { Connection: 'close' };
      if (!sent) {
        settle(new HttpError(503, `the leader (${url.origin}) cannot be reached (${err.code ?? err.message}); nothing was changed, try again`, { 'Retry-After': '1', ...close }));
      } else {
        settle(new HttpError(502, `the leader (${url.origin}) closed the connection before answering (${err.code ?? err.message}): the write may or may not have been applied; read before retrying one that is not idempotent`, close));
      }
    });
    out.on('response', (answer: IncomingMessage) => {
      answered = true;
      upstream.failing = false;
      const back = endToEnd(answer.headers);
      if (options.body === undefined && !req.complete) {
        // The leader answered before taking the whole body (a 413, a 401): the rest is not read, and the
        // connection closes after the answer (node:http says Connection: close itself), gently (closeGently).
        req.unpipe(out);
        req.resume(); // what still arrives is dropped, not buffered, until the connection goes
        const socket = req.socket as typeof req.socket & { destroySoon?: () => void };
        socket.destroySoon = () => closeGently(socket);
        res.on('finish', () => closeGently(socket));
      }
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, back);
      answer.pipe(res);
      answer.on('error', ignore); // a break shows as an incomplete close, below
      // An answer broken off halfway cannot be mended: the client sees its connection drop.
      answer.on('close', () => {
        if (!answer.complete) res.destroy();
      });
    });
    // The client left (or its answer broke off): the exchange is dropped (a write already sent still happens).
    res.on('close', () => {
      if (!res.writableFinished) out.destroy();
      settle();
    });

    if (options.body !== undefined) {
      out.end(options.body);
    } else {
      req.on('error', () => out.destroy());
      req.on('close', () => {
        if (!req.complete) out.destroy(); // a body cut short must never reach the leader as whole
      });
      req.pipe(out);
    }
  });
}
