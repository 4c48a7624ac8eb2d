/** The fuzzer's transports: node:http with a keep-alive agent, and raw sockets with a small response parser. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Res, preview } from './fuzz-oracle.js';
import { type Req } from './fuzz-routes.js';


export const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

export function send(agent: Agent, port: number, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { ...req.headers };
    if (!req.chunks) headers['Content-Length'] = String(req.body?.length ?? 0);
    const r = httpRequest({ host: '127.0.0.1', port, method: req.method, path: req.path, headers, agent, signal: AbortSignal.timeout(15_000) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    r.on('error', reject);
    if (req.chunks) {
      for (const chunk of req.chunks) if (chunk.length > 0) r.write(chunk);
      r.end();
    } else r.end(req.body);
  });
}

/** The request as bytes on the wire (Content-Length, or chunked when `chunks`). */
export function serialize(req: Req): Buffer {
  let head = `${req.method} ${req.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [name, value] of Object.entries(req.headers)) for (const v of [value].flat()) head += `${name}: ${v}\r\n`;
  if (!req.chunks) return Buffer.concat([Buffer.from(`${head}Content-Length: ${req.body?.length ?? 0}\r\n\r\n`, 'latin1'), req.body ?? Buffer.alloc(0)]);
  const parts: Buffer[] = [Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n`, 'latin1')];
  for (const chunk of req.chunks) if (chunk.length > 0) parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n'));
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

export interface RawResult { responses: Res[]; closed: boolean; ms: number; timedOut: boolean; raw: Buffer }

/** Parses the complete responses in `buf` (`heads[i]`: the i-th request was a HEAD). */
export function parseResponses(buf: Buffer, heads: readonly boolean[], closed: boolean): Res[] {
  const out: Res[] = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0]!);
    assert.ok(status, `not an HTTP response: ${preview(buf.subarray(at))}`);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
    }
    const code = Number(status[1]);
    let p = end + 4;
    if (code < 200) { at = p; continue; }
    let body: Buffer;
    if (heads[out.length] || code === 204 || code === 304) body = Buffer.alloc(0);
    else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = [];
      let done = false;
      for (;;) {
        const lineEnd = buf.indexOf('\r\n', p);
        if (lineEnd < 0) break;
        const size = parseInt(buf.subarray(p, lineEnd).toString('latin1'), 16);
        if (size === 0) {
          if (buf.length < lineEnd + 4) break;
          p = lineEnd + 4;
          done = true;
          break;
        }
        if (buf.length < lineEnd + 2 + size + 2) break;
        parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        p = lineEnd + 2 + size + 2;
      }
      if (!done) break;
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (buf.length < p + n) break;
      body = buf.subarray(p, p + n);
      p += n;
    } else {
      if (!closed) break;
      body = buf.subarray(p);
      p = buf.length;
    }
    out.push({ status: code, headers, body });
    at = p;
  }
  return out;
}

/**
 * One raw connection: writes `steps` (a number is a pause, for slow senders), then `finish`es it ('end' half-closes,
 * 'destroy' hangs up, 'open' leaves it open), and waits until the server closes it or `want` answers came or the
 * deadline passed. `trickle` keeps sending that byte every 100 ms until the connection closes (a slow-loris client).
 */
export async function rawExchange(port: number, steps: ReadonlyArray<Buffer | number>, opts: { finish: 'end' | 'destroy' | 'open'; want?: number; heads?: boolean[]; deadlineMs?: number; trickle?: Buffer }): Promise<RawResult> {
  const socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  socket.on('error', () => {}); // the server may close while we still send: what it answered is what counts
  await once(socket, 'connect');
  const started = performance.now();
  let data = Buffer.alloc(0);
  let closed = false;
  const heads = opts.heads ?? [];
  const enough = () => opts.want !== undefined && parseResponses(data, heads, false).length >= opts.want;
  let wake: () => void = () => {};
  const settled = new Promise<void>((resolve) => { wake = resolve; });
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
    if (enough()) wake();
  });
  socket.on('close', () => {
    closed = true;
    wake();
  });
  for (const step of steps) {
    if (closed) break;
    if (typeof step === 'number') await sleep(step); // the experiment: a client that sends slowly
    else socket.write(step);
  }
  if (opts.finish === 'destroy') socket.destroy();
  else if (opts.finish === 'end' && !closed) socket.end();
  let timedOut = false;
  const deadline = setTimeout(() => { timedOut = true; wake(); }, opts.deadlineMs ?? 10_000);
  const trickler = opts.trickle && setInterval(() => { if (!closed) socket.write(opts.trickle!); }, 100);
  await settled;
  clearTimeout(deadline);
  if (trickler) clearInterval(trickler);
  const ms = performance.now() - started;
  const responses = parseResponses(data, heads, closed);
  socket.destroy();
  return { responses, closed, ms, timedOut: timedOut && !closed && !enough(), raw: data };
}
