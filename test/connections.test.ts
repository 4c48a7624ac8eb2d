/**
 * lib/connections.ts: the connection cap. Strangers (connections that have not sent a whole request) go first:
 * a silent one is closed after the headers limit, and a newcomer over the cap takes the oldest stranger's slot;
 * only when every slot is working is the newcomer refused.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { openFileStore, startServer } from './support/app.js';
import { waitFor } from './support/http.js';
import { closedWithin, connections, openSocket as open } from './support/sockets.js';

describe('the connection cap', () => {
  test('when every slot is taken by strangers, a health check still gets through (the oldest stranger goes)', async (t) => {
    const s = await startServer(t, await openFileStore(t), { maxConnections: 3 });
    const strangers = [await open(s), await open(s), await open(s)];
    await waitFor('three connections accepted', async () => (await connections(s)) === 3);
    const health = await s.call('/healthcheck');
    assert.equal(health.status, 200);
    await closedWithin(strangers[0]!, 5000, 'the oldest stranger');
    assert.ok(!strangers[1]!.destroyed && !strangers[2]!.destroyed, 'only the oldest stranger was dropped');
    for (const socket of strangers) socket.destroy();
  });
  test('when every slot is working, a new connection is refused and the working ones keep serving', async (t) => {
    const s = await startServer(t, await openFileStore(t), { maxConnections: 2 });
    const working = [await open(s), await open(s)];
    for (const socket of working) {
      socket.write(`GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n`);
      await once(socket, 'data');
    }
    const extra = await open(s);
    await closedWithin(extra, 5000, 'the connection over the cap');
    working[0]!.write(`GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n`);
    const [again] = await once(working[0]!, 'data');
    assert.match(String(again), /^HTTP\/1\.1 200 /);
    for (const socket of working) socket.destroy();
  });
  test('a silent new connection is closed sooner than a working idle one', async (t) => {
    const s = await startServer(t, await openFileStore(t), { timeouts: { headersMs: 300, requestMs: 600, keepAliveMs: 30_000 } });
    const working = await open(s);
    working.write(`GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n`);
    await once(working, 'data');
    const silent = await open(s);
    await closedWithin(silent, 10_000, 'the silent connection');
    assert.equal(working.destroyed, false, 'the working connection is still open');
    working.write(`GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n`);
    const [answer] = await once(working, 'data');
    assert.match(String(answer), /^HTTP\/1\.1 200 /);
    working.destroy();
  });
});
