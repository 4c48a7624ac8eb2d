/** HTTP plumbing: one error type, bounded body reads, JSON answers, and the one place a status is chosen. */
import type { IncomingMessage, ServerResponse } from 'node:http';
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
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** Answers `err` as `{"status":N,"error":"..."}`: an HttpError as it is; anything else a 500 whose cause goes to the log only. */
export function sendError(req: IncomingMessage, res: ServerResponse, err: unknown, log: Log): void {
  if (err instanceof ClientGoneError) {
    res.destroy();
    return;
  }
  let status = 500;
  let message = 'internal error';
  let headers: Record<string, string> = {};
  let extra: Record<string, unknown> = {};
  if (err instanceof HttpError) {
    ({ status, message, headers, extra } = err);
  } else {
    log.error('request_failed', { method: req.method, path: req.url?.split('?')[0], err });
  }
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (headers.Connection === 'close') {
    // Once the answer is out, drop the connection: the unread body must not be parsed as a request.
    res.on('finish', () => req.destroy());
  }
  sendJson(res, status, { status, error: message, ...extra }, headers);
}
