/** Hardening: login throttling, parser errors as JSON, proxies, stalled headers, request logging, end to end. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { memoryLog } from './support/log.js';
import { AUTH, openFileStore, startServer } from './support/app.js';
import { waitFor } from './support/http.js';

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
    for (let i = 0; i < 2; i++) await trusted.call('/request', { method: 'POST', body: {}, auth: { user: 'x', password: 'y' }, headers: from('203.0.113.7') });
    assert.equal((await trusted.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: from('203.0.113.7') })).status, 429);
    assert.equal((await trusted.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: from('203.0.113.8') })).status, 200, 'another player is not locked out');
    const untrusted = await startServer(t, await openFileStore(t), { maxLoginFailures: 2 });
    for (let i = 0; i < 2; i++) await untrusted.call('/request', { method: 'POST', body: {}, auth: { user: 'x', password: 'y' }, headers: from(`198.51.100.${i}`) });
    assert.equal((await untrusted.call('/request', { method: 'POST', body: {}, auth: AUTH, headers: from('198.51.100.9') })).status, 429, 'a forged header does not dodge the limit');
  });

  test('a client that stalls in its headers is disconnected', async (t) => {
    const s = await startServer(t, await openFileStore(t), { timeouts: { headersMs: 300, requestMs: 600 } });
    const socket = connect(Number(new URL(s.url).port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk) => { received += chunk.toString(); });
    socket.on('error', () => {});
    const started = Date.now();
    socket.write('POST /request HTTP/1.1\r\nHost: x\r\n');
    await once(socket, 'close');
    const waited = Date.now() - started;
    assert.ok(waited < 5000, `closed after ${waited} ms`);
    assert.match(received, /^$|^HTTP\/1\.1 408/);
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
