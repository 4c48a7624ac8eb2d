/** Hardening: login throttling, parser errors as JSON, proxies, stalled headers, end to end. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import { AUTH, openFileStore, startServer } from './support/app.js';

describe('hardening', () => {
  test('repeated failed logins from one address: 429 with Retry-After, even with the right password', async (t) => {
    const s = await startServer(t, await openFileStore(t), { maxLoginFailures: 3 });
    for (let i = 0; i < 3; i++) assert.equal((await s.call('/request', { method: 'POST', body: {}, auth: { user: 'x', password: 'y' } })).status, 401);
    const throttled = await s.post('/request', {});
    assert.equal(throttled.status, 429);
    assert.ok(Number(throttled.headers['retry-after']) > 0);
    assert.equal(throttled.json.status, 429);
    assert.equal((await s.call('/healthcheck')).status, 200, 'health is not throttled');
  });

  test('AUTH_FAILURE_LIMIT=0 turns throttling off', async (t) => {
    const s = await startServer(t, await openFileStore(t), { maxLoginFailures: 0 });
    for (let i = 0; i < 30; i++) assert.equal((await s.call('/request', { method: 'POST', body: {}, auth: { user: 'x', password: 'y' } })).status, 401);
    assert.equal((await s.post('/request', {})).status, 200);
  });

  test('what the HTTP parser refuses still gets a JSON error', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const socket = connect(Number(new URL(s.url).port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk) => { received += chunk.toString(); });
    socket.write('post /request HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(socket, 'close');
    assert.match(received, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.deepEqual(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)), { status: 400, error: 'bad request' });
    assert.equal((await s.call('/healthcheck')).status, 200);
  });

  test('X-Forwarded-For names the client only when TRUST_PROXY says so', async (t) => {
    const trusted = await startServer(t, await openFileStore(t), { maxLoginFailures: 2, trustedProxies: 1 });
    const from = (address: string) => ({ 'X-Forwarded-For': address });
    for (let i = 0; i < 2; i++) {
      assert.equal((await trusted.call('/request', { method: 'POST', body: {}, auth: { user: 'x', password: 'y' }, headers: from('203.0.113.7') })).status, 401, `failed login ${i + 1}`);
    }
    assert.equal((await trusted.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: from('203.0.113.7') })).status, 429);
    assert.equal((await trusted.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: from('203.0.113.8') })).status, 200, 'another player is not locked out');
    const untrusted = await startServer(t, await openFileStore(t), { maxLoginFailures: 2 });
    for (let i = 0; i < 2; i++) {
      assert.equal((await untrusted.call('/request', { method: 'POST', body: {}, auth: { user: 'x', password: 'y' }, headers: from(`198.51.100.${i}`) })).status, 401, `failed login ${i + 1}`);
    }
    assert.equal((await untrusted.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: from('198.51.100.9') })).status, 429, 'a forged header does not dodge the limit');
  });

  /** Sends half a request's headers and stops; what the server sent before it closed the connection. */
  async function stallInHeaders(t: TestContext): Promise<string> {
    const s = await startServer(t, await openFileStore(t), { timeouts: { headersMs: 300, requestMs: 600 } });
    const socket = connect(Number(new URL(s.url).port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk) => { received += chunk.toString(); });
    socket.on('error', () => {});
    socket.write('POST /request HTTP/1.1\r\nHost: x\r\n');
    await once(socket, 'close');
    return received;
  }

  test('a client that stalls in its headers is disconnected', async (t) => {
    await stallInHeaders(t); // returns only once the server has closed the connection
  });

  // The connection cap's stranger timer (lib/connections.ts) runs out before node:http's once-a-second check: it answers the 408.
  test('a client that stalls in its headers gets a JSON 408 before the connection closes', async (t) => {
    const received = await stallInHeaders(t);
    assert.match(received, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.match(received, /\r\nContent-Type: application\/json\r\n/);
    assert.deepEqual(JSON.parse(received.slice(received.indexOf('\r\n\r\n') + 4)), { status: 408, error: 'request timeout' });
  });

});
