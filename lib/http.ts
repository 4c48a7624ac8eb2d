/** HTTP plumbing: one error type, bounded body reads, JSON answers, and the one table that turns errors into statuses. */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { FencedError, OutsideHistoryError, UnknownBackupError, WritesRefusedError } from './backup/backups.js';
import type { Log } from './log.js';

/** An error that is the client's answer: its status and message are sent as they are. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: Record<string, string> = {}, readonly extra: Record<string, unknown> = {}) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The client went away before its request was whole: nothing to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super('client disconnected');
    this.name = 'ClientGoneError';
  }
}

/**
 * How much body a route takes: at most `bytes`; `narrow`, when given, sees each chunk until it picks a
 * smaller limit from the body's first bytes (undefined: not yet), so a request is refused as soon as its
 * kind is known, not once it is whole.
 */
export type BodyLimit = number | { bytes: number; narrow: (chunk: Buffer) => number | undefined };

const EMPTY = Buffer.alloc(0);

/** True when the request declares a body (a non-zero Content-Length, or chunked). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}

/** The headers of a refusal to a request whose body is not worth reading: close, rather than drain a declared 64 MiB for a minute. */
export function closeIfBody(req: IncomingMessage): Record<string, string> {
  return hasBody(req) ? { Connection: 'close' } : {};
}

/**
 * Collects the request body within `limit` and calls `done` once: with the body, or with a 413 HttpError
 * (checked against Content-Length first), or with ClientGoneError if the client leaves. Memory grows with
 * what has arrived, never with what is declared, and is let go as soon as the body is abandoned.
 */
export function collectBody(req: IncomingMessage, limit: BodyLimit, done: (err: Error | undefined, body?: Buffer) => void): void {
  let max = typeof limit === 'number' ? limit : limit.bytes;
  let narrow = typeof limit === 'number' ? undefined : limit.narrow;
  const header = req.headers['content-length'];
  const declared = header === undefined ? undefined : Number(header);
  if (declared !== undefined && declared > max) {
    done(tooLarge(max));
    return;
  }
  if (req.destroyed && !req.complete) {
    done(new ClientGoneError()); // it left while this request waited its turn behind a pipelined one
    return;
  }
  let chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  const finish = (err: Error | undefined, body?: Buffer) => {
    if (finished) return;
    finished = true;
    chunks = []; // an abandoned body's memory goes now, not when the socket does
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onClose);
    done(err, body);
  };
  const onData = (chunk: Buffer) => {
    if (narrow) {
      const narrowed = narrow(chunk);
      if (narrowed !== undefined) {
        narrow = undefined;
        max = narrowed;
        if (declared !== undefined && declared > max) {
          finish(tooLarge(max));
          return;
        }
      }
    }
    if (size + chunk.length > max) {
      finish(tooLarge(max));
      return;
    }
    chunks.push(chunk);
    size += chunk.length;
  };
  const onEnd = () => {
    finish(undefined, chunks.length === 1 ? chunks[0]! : chunks.length === 0 ? EMPTY : Buffer.concat(chunks, size));
  };
  const onClose = () => {
    if (!req.complete) finish(new ClientGoneError());
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('close', onClose);
  // An aborted request may also emit 'error'; 'close' reports it, and an unheard 'error' must not crash us.
  if (req.listenerCount('error') === 0) req.on('error', ignore);
}

function ignore(): void {}

/** The request body as a promise (see collectBody). */
export function readBody(req: IncomingMessage, limit: BodyLimit): Promise<Buffer> {
  return new Promise((resolve, reject) => collectBody(req, limit, (err, body) => (err ? reject(err) : resolve(body!))));
}

/** The request body parsed as JSON (at most `limit` bytes): 400 when empty or invalid. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const text = (await readBody(req, limit)).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, 'empty body');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `invalid JSON: ${(err as Error).message}`);
  }
}

function tooLarge(limit: number): HttpError {
  // The rest of the body is not read: close the connection rather than let it poison the next request.
  return new HttpError(413, `request body larger than ${limit} bytes`, { Connection: 'close' });
}

/** Sends `body` (an object, or JSON text already encoded) with `status`. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const length = Buffer.byteLength(text);
  // Without extra headers (every answer of the hot path) no object is spread.
  res.writeHead(status, headers === undefined
    ? { 'Content-Type': 'application/json', 'Content-Length': length, 'Cache-Control': 'no-store' }
    : { 'Content-Type': 'application/json', 'Content-Length': length, 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

/** A failure of the store behind the server (S3, the data folder) while serving a request: see httpErrorOf. */
export class UpstreamError extends Error {
  constructor(override readonly cause: unknown) {
    super('the backup store failed');
    this.name = 'UpstreamError';
  }
}

/** `promise`, with a rejection marked as the store's (UpstreamError) so the table answers it as a 502. */
export function upstream<T>(promise: Promise<T>): Promise<T> {
  return promise.catch((err: unknown) => {
    throw new UpstreamError(err);
  });
}

/**
 * The one table from errors to answers. An HttpError is its own answer; the backup module's refusals are
 * client errors; a marked store failure is a 502 and anything else a 500, both with `cause` set: the error
 * to log, whose message never reaches the client. node:http's parser errors (clientError) map here too.
 */
export function httpErrorOf(err: unknown): { answer: HttpError; cause?: unknown } {
  if (err instanceof HttpError) return { answer: err };
  const inner = err instanceof UpstreamError ? err.cause : err;
  if (inner instanceof HttpError) return { answer: inner };
  // Fenced (another server took over) or the log down: this server takes no write now, whatever the route.
  if (inner instanceof FencedError) return { answer: new HttpError(503, inner.message) };
  if (inner instanceof UnknownBackupError) return { answer: new HttpError(404, inner.message) };
  if (inner instanceof WritesRefusedError) return { answer: new HttpError(503, inner.message) };
  if (inner instanceof OutsideHistoryError) return { answer: new HttpError(400, inner.message) };
  if (err instanceof UpstreamError) {
    const name = inner instanceof Error ? inner.name : 'error';
    return { answer: new HttpError(502, `backup store failed (${name}); the server keeps serving and retries, see its log`), cause: inner };
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'HPE_HEADER_OVERFLOW') return { answer: new HttpError(431, 'request header fields too large') };
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { answer: new HttpError(408, 'request timeout') };
  if (typeof code === 'string' && code.startsWith('HPE_')) return { answer: new HttpError(400, 'bad request') };
  return { answer: new HttpError(500, 'internal error'), cause: err };
}

/** Answers `err` as `{"status":N,"error":"..."}` by httpErrorOf; every 5xx is logged here with its cause. */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, log: Log): void {
  if (err instanceof ClientGoneError) {
    res.destroy();
    return;
  }
  const { answer, cause } = httpErrorOf(err);
  if (answer.status >= 500) log.error('request_failed', { method: req.method, path: req.url?.split('?')[0], status: answer.status, err: cause });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (answer.headers.Connection === 'close') {
    // Once the answer is out the connection goes, gently: the client may still be sending the body we refused
    // (a 413 comes before it is read), and must get to read the answer. node:http ends such a connection
    // with socket.destroySoon(), which destroys it as soon as the answer is written: that is closeGently here.
    const socket = req.socket as typeof req.socket & { destroySoon?: () => void };
    socket.destroySoon = () => closeGently(socket);
    res.on('finish', () => closeGently(socket));
  }
  sendJson(res, answer.status, { status: answer.status, error: answer.message, ...answer.extra }, answer.headers);
}

/** Marks a socket closeGently has taken over. */
const CLOSING = Symbol('cubecache.closing');
/** True once closeGently has taken `socket` over: a request that still arrives on it is not to be served. */
export function isClosing(socket: Duplex): boolean {
  return (socket as Duplex & { [CLOSING]?: true })[CLOSING] === true;
}

/** How long a connection that is closing still reads, and drops, what its client sends (see closeGently). */
const LINGER_MS = 2000;

/**
 * Closes `socket` once what was written to it has gone out, gently, and for sure: a FIN first, then what the
 * client still sends (the rest of a refused body) is read and dropped until the client closes its side or
 * LINGER_MS pass, and then the socket is destroyed whatever the client does. Destroying it at once while a
 * body still arrives makes the kernel answer with an RST, which can throw the answer away in the client's
 * buffer before it is read; only ending it leaves a half-open socket, and the request's memory, to a
 * client that never closes.
 */
export function closeGently(socket: Duplex): void {
  const closing = socket as Duplex & { [CLOSING]?: true };
  if (socket.destroyed || closing[CLOSING]) return;
  closing[CLOSING] = true;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('close', () => clearTimeout(timer));
  socket.once('end', () => socket.destroy()); // the client closed its side: nothing more will come
  socket.end();
  socket.resume(); // read and drop (node:http's parser, when it reads the socket itself, drops the body too)
}

/** The answer to an error node:http's parser raised before any request existed, as raw bytes (by httpErrorOf); the connection closes after it. */
export function rawErrorAnswer(err: unknown): string {
  // Whatever the parser refused, the bytes came from the client: never a 5xx.
  const { answer: mapped } = httpErrorOf(err);
  const answer = mapped.status >= 500 ? new HttpError(400, 'bad request') : mapped;
  const body = JSON.stringify({ status: answer.status, error: answer.message });
  return `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}
