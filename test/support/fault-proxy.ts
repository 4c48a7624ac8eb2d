/**
 * A fault-injecting TCP proxy for tests: sits between an S3 client and the S3 test server and, on demand,
 * refuses, stalls, answers errors, cuts uploads short or slows traffic, so that what the server does when
 * S3 misbehaves can be checked against a real S3 server (not a mock that only fails the way we expect).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';

/** What the proxy does to traffic; changing it (set()) takes effect at once, see FaultProxy.set. */
export type Fault =
  | { kind: 'pass' }
  /** Accept, then reset at once: the client sees ECONNRESET ("socket hang up") on every attempt. */
  | { kind: 'refuse' }
  /** Accept, forward nothing, answer nothing, until the fault changes (then the stalled sockets are destroyed). */
  | { kind: 'stall' }
  /** Answer each request with `status` and an S3-style XML error, Connection: close, without forwarding it. */
  | { kind: 'status'; status: 500 | 503 }
  /** Forward, but reset a connection once it has carried `bytes` bytes client→server (per connection). */
  | { kind: 'reset-after'; bytes: number }
  /** Forward, delaying every chunk in each direction by `ms` (chunks stay pipelined: latency, not a bandwidth cap). */
  | { kind: 'delay'; ms: number }
  /** Forward each request whole, but reset the client as soon as the server starts answering: the work is done, the reply is lost. `count`: only the first so many replies. */
  | { kind: 'lose-replies'; count?: number };

/** A running proxy: point a client at `endpoint`, change faults with set(), close() when done. */
export interface FaultProxy {
  /** http://127.0.0.1:PORT, for an S3Client's `endpoint`. */
  endpoint: string;
  port: number;
  /**
   * Switches the fault. Stalled sockets are always destroyed; and unless the new fault is 'pass', every open
   * connection is destroyed too, so a keep-alive socket in the client's pool cannot carry traffic past the fault.
   */
  set(fault: Fault): void;
  /** The fault now in force. */
  readonly fault: Fault;
  /** Connections accepted, those a fault acted on (refused, stalled, answered, reset, delayed), and bytes forwarded client→server. */
  counts: { connections: number; faulted: number; bytesUp: number };
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>;
}

interface Conn {
  fault: Fault;
  client: Socket;
  upstream?: Socket;
  timers: Set<NodeJS.Timeout>;
}

/** S3's own wording for the codes we fake, so the SDK parses them as it would a real S3 error. */
const S3_ERRORS: Record<number, { code: string; message: string }> = {
  500: { code: 'InternalError', message: 'We encountered an internal error. Please try again.' },
  503: { code: 'ServiceUnavailable', message: 'Please reduce your request rate.' },
};

/** Starts a proxy on 127.0.0.1, port 0, forwarding to `target` (http://host:port); the fault starts as 'pass'. */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const url = new URL(target);
  const targetHost = url.hostname;
  const targetPort = Number(url.port || 80);
  let fault: Fault = { kind: 'pass' };
  const conns = new Set<Conn>();
  const counts = { connections: 0, faulted: 0, bytesUp: 0 };
  let lostReplies = 0;

  // allowHalfOpen: each direction is ended on its own, so a delayed answer still reaches a client that has sent FIN.
  const server: Server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    counts.connections++;
    const conn: Conn = { fault, client, timers: new Set() };
    conns.add(conn);
    // Errors are the point here (resets, EPIPE after a fault): swallow them, never crash the test process.
    client.on('error', () => undefined);
    switch (fault.kind) {
      case 'pass': return forward(conn, Infinity, 0);
      case 'refuse':
        counts.faulted++;
        return drop(conn, true);
      case 'stall':
        counts.faulted++;
        client.on('close', () => drop(conn));
        return; // paused (pauseOnConnect): nothing is read, nothing answered, until set() destroys it
      case 'status':
        counts.faulted++;
        client.on('close', () => drop(conn));
        return answerStatus(conn, fault.status);
      case 'reset-after': return forward(conn, fault.bytes, 0);
      case 'delay':
        counts.faulted++;
        return forward(conn, Infinity, fault.ms);
      case 'lose-replies': return forward(conn, Infinity, 0, fault);
    }
  });

  /** Pipes client ⇄ target, resetting after `limit` bytes upstream and delaying each chunk, end and close by `delayMs`; `loseReplies`: resets the client at the first byte of an answer instead of passing it. */
  function forward(conn: Conn, limit: number, delayMs: number, loseReplies?: { count?: number }): void {
    const { client } = conn;
    const upstream = connect({ host: targetHost, port: targetPort, allowHalfOpen: true });
    conn.upstream = upstream;
    upstream.on('error', () => undefined);
    let sent = 0;
    // Everything in one direction goes through the same delay, so order holds: data, then end, then close.
    const later = (fn: () => void) => {
      if (delayMs <= 0) return fn();
      const timer = setTimeout(() => {
        conn.timers.delete(timer);
        fn();
      }, delayMs);
      conn.timers.add(timer);
    };
    client.on('data', (chunk: Buffer) => {
      if (sent + chunk.length >= limit) {
        // Pass the bytes up to the limit, then cut: the server sees a request body that stops mid-way.
        const head = chunk.subarray(0, Math.max(0, limit - sent));
        sent = limit;
        counts.faulted++;
        counts.bytesUp += head.length;
        if (head.length > 0) upstream.write(head);
        upstream.destroySoon(); // flush the head, then FIN: the server sees a body cut short, not an empty request
        conn.upstream = undefined;
        drop(conn, true);
        return;
      }
      sent += chunk.length;
      counts.bytesUp += chunk.length;
      later(() => upstream.write(chunk));
    });
    upstream.on('data', (chunk: Buffer) => {
      if (loseReplies && (loseReplies.count === undefined || lostReplies < loseReplies.count)) {
        lostReplies++;
        loseReplies = undefined; // one reply per connection: the next attempt comes on a new one
        counts.faulted++;
        drop(conn, true);
        return;
      }
      later(() => client.write(chunk));
    });
    client.on('end', () => later(() => upstream.end()));
    upstream.on('end', () => later(() => client.end()));
    // One side gone: after what it sent has been passed on, finish the other side (reset it if this one failed).
    const closeWith = (other: Socket) => (hadError: boolean) => later(() => {
      if (hadError) return drop(conn, other === client);
      other.destroySoon(); // end it, then close it once flushed: its peer may keep its half open, we have nothing more to relay
    });
    client.on('close', closeWith(upstream));
    upstream.on('close', closeWith(client));
    const forget = () => { if (client.destroyed && upstream.destroyed) conns.delete(conn); };
    client.on('close', forget);
    upstream.on('close', forget);
    client.resume();
  }

  /** Reads one request head, answers it with `status` and an S3 XML error, and closes; the body is read and dropped. */
  function answerStatus(conn: Conn, status: 500 | 503): void {
    const { client } = conn;
    let head = Buffer.alloc(0);
    let answered = false;
    client.on('data', (chunk: Buffer) => {
      if (answered) return; // the rest of the body: drained so the client is not reset while it writes
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      answered = true;
      const method = head.subarray(0, head.indexOf(' ')).toString('latin1');
      const { code, message } = S3_ERRORS[status]!;
      const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>fault-proxy</RequestId><HostId>fault-proxy</HostId></Error>`;
      const reason = status === 503 ? 'Service Unavailable' : 'Internal Server Error';
      client.end(
        `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/xml\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `x-amz-request-id: fault-proxy\r\nConnection: close\r\n\r\n${method === 'HEAD' ? '' : body}`,
      );
    });
    client.resume();
  }

  /** Ends a connection and its upstream; `reset` sends an RST to the client instead of a FIN. */
  function drop(conn: Conn, reset = false): void {
    for (const timer of conn.timers) clearTimeout(timer);
    conn.timers.clear();
    conns.delete(conn);
    // Not after end(): libuv refuses to reset a socket that is shutting down (EINVAL), and Node then never
    // closes its handle, which hangs the process at exit.
    if (reset && !conn.client.destroyed && !conn.client.writableEnded) conn.client.resetAndDestroy();
    else conn.client.destroy();
    conn.upstream?.destroy();
  }

  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;

  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    counts,
    get fault() { return fault; },
    set(next) {
      fault = next;
      lostReplies = 0;
      for (const conn of [...conns]) {
        if (conn.fault.kind === 'stall' || next.kind !== 'pass') drop(conn, true);
      }
    },
    close() {
      closing ??= (async () => {
        const closed = once(server, 'close');
        server.close();
        for (const conn of [...conns]) drop(conn);
        await closed;
      })();
      return closing;
    },
  };
}
