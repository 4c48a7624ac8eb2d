/**
 * Connection slots, strangers first out. A connection is a stranger until it has sent a complete request.
 * A stranger is closed after `strangerMs` (node:http's headersTimeout never fires for a socket that sends
 * nothing at all; one that has begun a request gets a JSON 408 first), and when every slot is taken a new
 * connection takes the slot of the oldest stranger, so sockets that only hold a slot (opened and left silent,
 * or trickling headers) cannot lock out the load balancer's health checks or the game's own connections.
 * Only when every slot is working is a new connection refused.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { rawErrorAnswer } from './http.js';

/** node:http's answer to headers that came too slowly (JSON, as lib/app.ts's clientError handler sends it). */
const TIMEOUT_ANSWER = rawErrorAnswer(Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }));

/** Caps `server` at `max` open connections and closes strangers after `strangerMs` (see the file comment); replaces server.maxConnections' refuse-the-newest. */
export function capConnections(server: Server, max: number, strangerMs: number): void {
  // Insertion order is age: the first stranger is the oldest. A socket leaves `live` when it is told to go,
  // not when its 'close' arrives a turn later, so one newcomer never evicts two.
  const live = new Set<Socket>();
  const strangers = new Map<Socket, NodeJS.Timeout>();
  server.on('connection', (socket: Socket) => {
    live.add(socket);
    strangers.set(socket, setTimeout(() => expire(socket), strangerMs).unref());
    socket.once('close', () => {
      live.delete(socket);
      welcome(socket);
    });
    if (live.size <= max) return;
    for (const oldest of strangers.keys()) {
      if (oldest === socket) break; // the newcomer is the only stranger: every other slot is working
      drop(oldest);
      return;
    }
    drop(socket);
  });
  server.on('request', (req) => welcome(req.socket));
  server.on('upgrade', (req) => welcome(req.socket)); // a standby's stream: working, not a stranger

  function welcome(socket: Socket): void {
    clearTimeout(strangers.get(socket));
    strangers.delete(socket);
  }

  // node:http answers headers that stall with a 408, but its check runs once a second, after this timer: a
  // stranger that has begun a request gets that 408 here, then the connection closes. A silent one just goes.
  function expire(socket: Socket): void {
    if (socket.bytesRead === 0 || socket.bytesWritten > 0 || !socket.writable) {
      drop(socket);
      return;
    }
    live.delete(socket);
    welcome(socket);
    socket.end(TIMEOUT_ANSWER, () => socket.destroy());
  }

  function drop(socket: Socket): void {
    live.delete(socket);
    welcome(socket);
    socket.destroy();
  }
}
