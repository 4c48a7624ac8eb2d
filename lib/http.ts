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

/** The request body, at most `limit` bytes: 413 past it (checked against Content-Length first), ClientGoneError if the client leaves. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(tooLarge(limit));
  }
  // With a declared length the body goes straight into one buffer: no second copy for large bodies.
  const expected = declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : undefined;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const whole = expected !== undefined ? Buffer.allocUnsafe(expected) : undefined;
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      if (size + chunk.length > limit || (whole && size + chunk.length > whole.length)) {
        cleanup();
        reject(tooLarge(limit));
        return;
      }
      if (whole) chunk.copy(whole, size);
      else chunks.push(chunk);
      size += chunk.length;
    };
    const onEnd = () => {
      cleanup();
      if (whole) resolve(size === whole.length ? whole : whole.subarray(0, size));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onGone = () => {
      cleanup();
      reject(new ClientGoneError());
    };
    const onClose = () => {
      if (!req.complete) onGone();
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('close', onClose);
  });
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
