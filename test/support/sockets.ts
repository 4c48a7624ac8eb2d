/** Raw client sockets for tests of connection handling. */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Running } from './app.js';

/** A raw TCP connection to `s`, connected; its errors are ignored (the server may drop it). */
export async function openSocket(s: Running): Promise<Socket> {
  const socket = connect(Number(new URL(s.url).port), '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** How many connections `s` holds open. */
export function connections(s: Running): Promise<number> {
  return new Promise((resolve, reject) => s.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** Resolves once `socket` has closed; rejects after `ms` (a bound far below the server's own slow-client limits). */
export function closedWithin(socket: Socket, ms: number, what: string): Promise<void> {
  if (socket.destroyed && socket.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: still open after ${ms} ms`)), ms);
    socket.once('close', () => { clearTimeout(timer); resolve(); });
  });
}
