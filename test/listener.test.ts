/**
 * lib/listener.ts: the one request listener. Its route table answers an unknown path 404 and a wrong method 405
 * with Allow; a connection's pipelined requests run in order; each request's log line is written where its
 * answer is sent, without credentials.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AUTH, openFileStore, startServer } from './support/app.js';
import { basicHeader, waitFor } from './support/http.js';
import { memoryLog } from './support/log.js';
import { openSocket } from './support/sockets.js';

describe('the listener', () => {
  test('unknown path 404, wrong method 405 with Allow, every error a JSON body', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const notFound = await s.call('/nope');
    assert.equal(notFound.status, 404);
    assert.deepEqual(notFound.json, { status: 404, error: 'no route /nope' });
    const wrongMethod = await s.call('/request', { auth: AUTH });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.allow, 'POST');
    assert.equal(wrongMethod.json.status, 405);
    const healthPost = await s.call('/healthcheck', { method: 'POST', body: {} });
    assert.equal(healthPost.status, 405);
    assert.equal(healthPost.headers.allow, 'GET, HEAD');
  });

  // A request whose client half-closes its connection right after sending it (printf ... | nc does) is answered
  // on the half-closed socket: the answer of a write waits for the log, and node:http by default ends the
  // connection when the client's FIN arrives (lib/app.ts sets httpAllowHalfOpen).
  test('a write whose client half-closes after sending it is applied and answered before the connection closes', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const auth = `Authorization: ${basicHeader(AUTH.user, AUTH.password)}\r\n`;
    for (let i = 0; i < 20; i++) {
      const body = `{"action":1,"index":${i},"category":9}`;
      const socket = await openSocket(s);
      let received = '';
      socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1'); });
      const closed = new Promise((resolve) => socket.on('close', resolve));
      socket.end(`POST /request HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${body.length}\r\n\r\n${body}`);
      await closed;
      assert.ok(received.startsWith('HTTP/1.1 200 '), `write ${i}: the client got ${JSON.stringify(received)}`);
      assert.equal((await s.post('/request', { index: i })).json.category, 9, `write ${i} applied`);
    }
  });

  test('pipelined requests on one connection run in order: a read sent behind a write sees it, and the answers come in order', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const auth = `Authorization: ${basicHeader(AUTH.user, AUTH.password)}\r\n`;
    const post = (body: string) => `POST /request HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const socket = await openSocket(s);
    let received = '';
    socket.on('data', (chunk: Buffer) => { received += chunk.toString('latin1'); });
    // One write of three requests: a write, a whole-world read of its cell (a streamed route), a read of the cell.
    socket.write(post('{"action":1,"index":5,"category":7}') + `GET /cells?start=5&count=1 HTTP/1.1\r\nHost: x\r\n${auth}\r\n` + post('{"index":5}'));
    await waitFor('three answers', () => received.split('HTTP/1.1 200 OK').length - 1 === 3);
    socket.destroy();
    const bodies = received.split(/HTTP\/1\.1 200 OK\r\n/).slice(1).map((answer) => answer.slice(answer.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(JSON.parse(bodies[0]!), { status: 200, category: 7, rotation: 0, sideA: 0, sideB: 0 }, 'the write first');
    assert.deepEqual([...Buffer.from(bodies[1]!, 'latin1')], [7, 0, 0, 0], 'the range read sees the write');
    assert.deepEqual(JSON.parse(bodies[2]!), { status: 200, category: 7, rotation: 0, sideA: 0, sideB: 0 }, 'the read last');
  });

  test('request logging is off by default; when on, one line a request without credentials', async (t) => {
    const quiet = memoryLog();
    const a = await startServer(t, await openFileStore(t), { log: quiet });
    await a.post('/request', {});
    assert.equal(quiet.events.filter((e) => e.event === 'request').length, 0);
    const loud = memoryLog();
    const b = await startServer(t, await openFileStore(t), { log: loud, logRequests: true });
    await b.post('/request', {});
    await b.call('/request', { method: 'POST', body: {}, auth: { user: AUTH.user, password: 'wrong-password' } });
    await waitFor('two request lines', () => loud.events.filter((e) => e.event === 'request').length === 2);
    const lines = loud.events.filter((e) => e.event === 'request');
    assert.deepEqual(lines.map((e) => [e.method, e.route, e.status]), [['POST', '/request', 200], ['POST', '/request', 401]]);
    const everything = JSON.stringify(loud.events);
    assert.ok(!everything.includes(AUTH.password) && !everything.includes('wrong-password') && !everything.includes('Basic '), 'no credentials in the log');
  });
});
