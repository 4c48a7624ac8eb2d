/**
 * Doors closed to strangers (issue 11, found by a hostile probe): unauthenticated bodies, silent sockets,
 * clients that never read, and abandoned uploads must not hold connection slots or memory.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { AUTH, openFileStore, startServer } from './support/app.js';
import type { Socket } from 'node:net';
import { closedWithin, connections, openSocket as open } from './support/sockets.js';
import { basicHeader, waitFor } from './support/http.js';

const MiB = 1024 * 1024;

describe('doors closed to strangers', () => {
  test('an unauthenticated request with a large declared body is answered 401 and its connection closed at once', async (t) => {
    // requestMs is the default 60 s: only the 401's own close can end this connection within the bound.
    const s = await startServer(t, await openFileStore(t));
    for (const [auth, path] of [[undefined, '/request'], [basicHeader(AUTH.user, 'wrong'), '/cells']] as const) {
      const socket = await open(s);
      let received = '';
      socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1'); });
      socket.resume();
      socket.write(`${path === '/cells' ? 'PUT' : 'POST'} ${path} HTTP/1.1\r\nHost: x\r\n${auth ? `Authorization: ${auth}\r\n` : ''}Content-Length: ${64 * MiB}\r\n\r\n`);
      socket.write('x'.repeat(64 * 1024));
      await closedWithin(socket, 5000, `${path} after a 401`);
      assert.match(received, /^HTTP\/1\.1 401 /, path);
      assert.match(received, /\r\nconnection: close\r\n/i);
      assert.match(received, /"error":"authentication required"/);
    }
    assert.equal((await s.call('/healthcheck')).status, 200);
  });

  test('a client that never reads a whole-world GET /cells is dropped once the answer stops moving', async (t) => {
    // 16 MiB: far more than the socket buffers on both sides hold.
    const s = await startServer(t, await openFileStore(t), { cells: 4 * MiB, timeouts: { requestMs: 500 } });
    const accepted = once(s.app.server, 'connection');
    const client = await open(s);
    const [serverSide] = (await accepted) as [Socket];
    client.pause(); // never reads
    client.write(`GET /cells HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicHeader(AUTH.user, AUTH.password)}\r\n\r\n`);
    await closedWithin(serverSide, 10_000, "the server's side of a connection that never reads");
    client.destroy();
    assert.equal((await s.call('/healthcheck')).status, 200);
  });

  test('PUT /cells holds memory for what has arrived, not for what is declared', async (t) => {
    const s = await startServer(t, await openFileStore(t), { cells: 8 * MiB }); // room for 20 MiB uploads
    const uploads = 10;
    const serverSides: Socket[] = [];
    s.app.server.on('connection', (socket: Socket) => serverSides.push(socket));
    const before = process.memoryUsage().arrayBuffers;
    const clients: Socket[] = [];
    const head = `PUT /cells HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicHeader(AUTH.user, AUTH.password)}\r\nContent-Length: ${20 * MiB}\r\n\r\n`;
    for (let i = 0; i < uploads; i++) {
      const client = await open(s);
      client.write(head + 'x'.repeat(1024));
      clients.push(client);
    }
    await waitFor('every upload begun on the server', () => serverSides.length === uploads && serverSides.every((socket) => socket.bytesRead >= head.length + 1024));
    const grown = process.memoryUsage().arrayBuffers - before;
    assert.ok(grown < 20 * MiB, `${uploads} uploads of 20 MiB declared, 1 KiB sent, grew buffers by ${(grown / MiB).toFixed(1)} MiB`);
    for (const client of clients) client.destroy();
    await waitFor('the abandoned uploads closed', async () => (await connections(s)) === 0);
    assert.equal(s.app.cube.version, 0, 'nothing written');
  });
});
