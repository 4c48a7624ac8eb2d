/**
 * The baseline of bench/request.ts: a bare node:http server doing the minimal work of POST /request and
 * nothing else: a Basic auth check with timingSafeEqual, JSON.parse, a bounds check, a 4-byte read or
 * write in a 64 MiB Uint8Array, a JSON answer. Self-contained (node: imports only): the bench transpiles
 * it to plain JavaScript and runs it with `node`, so no loader sits in the process.
 *
 * Environment: HOST, PORT (0: any), AUTH_USER, AUTH_PASSWORD, CUBE_CELLS. Logs {"event":"listening","port":N}.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const cells = Number(process.env.CUBE_CELLS ?? 16_777_216);
const world = new Uint8Array(cells * 4);
const expected = Buffer.from(`Basic ${Buffer.from(`${process.env.AUTH_USER ?? 'cubecache'}:${process.env.AUTH_PASSWORD ?? ''}`).toString('base64')}`);

function authorized(header: string | undefined): boolean {
  if (header === undefined) return false;
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function answer(res: import('node:http').ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const server = createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/request') return answer(res, 404, '{"status":404,"error":"not found"}');
  if (!authorized(req.headers.authorization)) return answer(res, 401, '{"status":401,"error":"authentication required"}');
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    let cmd: { action?: number; index?: number; category?: number; rotation?: number; sideA?: number; sideB?: number };
    try {
      cmd = JSON.parse((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8'));
    } catch {
      return answer(res, 400, '{"status":400,"error":"invalid JSON"}');
    }
    const index = cmd.index ?? 0;
    if (!Number.isInteger(index) || index < 0 || index >= cells) return answer(res, 400, '{"status":400,"error":"index out of range"}');
    const at = index * 4;
    if (cmd.action === 1) {
      world[at] = cmd.category ?? 0;
      world[at + 1] = cmd.rotation ?? 0;
      world[at + 2] = cmd.sideA ?? 0;
      world[at + 3] = cmd.sideB ?? 0;
    }
    answer(res, 200, `{"status":200,"category":${world[at]},"rotation":${world[at + 1]},"sideA":${world[at + 2]},"sideB":${world[at + 3]}}`);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ event: 'listening', port: (server.address() as AddressInfo).port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
