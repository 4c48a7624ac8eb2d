/** lib/forward.ts and the write routes of a server that does not lead (routes/leader.ts, listener.ts): writes go to the leader, answers come back, refusals say whether to retry. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { describe, test, type TestContext } from 'node:test';
import type { RoleView } from '../lib/role.js';
import { AUTH, openFileStore, startServer, type Running } from './support/app.js';
import { basicHeader, call, waitFor } from './support/http.js';

/** A RoleView that does not lead and sends writes to `target()`; records each writeTarget's `forwarded`. */
function followerRole(target: () => 'local' | string | undefined): RoleView & { asked: boolean[] } {
  const asked: boolean[] = [];
  return {
    kind: 'standby',
    asked,
    writeTarget: async (forwarded) => {
      asked.push(forwarded);
      return target();
    },
    status: () => ({ role: 'standby', mode: 'sync', state: 'following', leaderUrl: target() }),
  };
}

/** A leader app and a standby app (each on a store of its own: only the forwarding is under test) whose role points at the leader. */
async function pair(t: TestContext, standbyOptions: { maxLoginFailures?: number; cells?: number } = {}): Promise<{ leader: Running; standby: Running; role: ReturnType<typeof followerRole> }> {
  const leader = await startServer(t, await openFileStore(t), standbyOptions.cells ? { cells: standbyOptions.cells } : {});
  const role = followerRole(() => leader.url);
  const standby = await startServer(t, await openFileStore(t), { role, ...standbyOptions });
  return { leader, standby, role };
}

/** A plain HTTP server on loopback, port 0, that runs `onRequest`, closed after the test. */
async function rawServer(t: TestContext, onRequest: Parameters<typeof createServer>[1]): Promise<{ server: Server; url: string }> {
  const server = createServer(onRequest);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const post = (s: Running, path: string, body: unknown, headers: Record<string, string> = {}) => call(s.url, path, { method: 'POST', body: body as object, auth: AUTH, headers });

describe('writes on a server that does not lead', () => {
  test('a /request write goes to the leader and its answer comes back; a read is answered by the standby itself', async (t) => {
    const { leader, standby, role } = await pair(t);
    const written = await post(standby, '/request', { action: 1, index: 7, category: 3, rotation: 1 });
    assert.equal(written.status, 200, written.text);
    assert.deepEqual(written.json, { status: 200, category: 3, rotation: 1, sideA: 0, sideB: 0 });
    assert.deepEqual(role.asked, [false]);
    assert.equal((await post(leader, '/request', { index: 7 })).json.category, 3, 'the leader holds the write');
    // The standby's own world (a store of its own here, no replication) does not: its read was not forwarded.
    assert.equal((await post(standby, '/request', { index: 7 })).json.category, 0);
    assert.deepEqual(role.asked, [false], 'a read never asks where writes go');
    // A batch with a write goes too, a conflict's 409 comes back as the leader sent it.
    const conflict = await post(standby, '/request', [{ index: 7, action: 1, category: 4, expect: { category: 9, rotation: 0, sideA: 0, sideB: 0 } }]);
    assert.equal(conflict.status, 409);
    assert.equal(conflict.json.index, 7);
  });

  test('PUT /cells with a multi-MiB body streams through, query included; /s3dump, /restore and /rollback are forwarded', async (t) => {
    const cells = 1 << 20; // 4 MiB of cells
    const { leader, standby } = await pair(t, { cells });
    const since = new Date().toISOString(); // after the leader's boot: inside its history
    const body = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4) body[i] = 1 + ((i >> 2) % 200);
    const put = await call(standby.url, '/cells?start=1000&by=builder', { method: 'PUT', body, auth: AUTH });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.json, { status: 200, start: 1000, cells: body.length / 4 });
    assert.equal((await post(leader, '/request', { index: 1000 })).json.category, 1, 'the leader took the body, at the query\'s start');
    assert.equal((await post(leader, '/request', { index: 1000 + 199 })).json.category, 200);
    const history = await call(leader.url, '/history?start=1000&count=1', { auth: AUTH });
    assert.match(history.text, /builder/, 'the query\'s author reached the leader');

    const dump = await post(standby, '/s3dump', {});
    assert.equal(dump.status, 200, dump.text);
    const backups = await call(leader.url, '/backups', { auth: AUTH });
    assert.ok(backups.json.backups.some((b: { name: string }) => b.name === dump.json.backup.name), 'the leader made the backup');

    const rollback = await post(standby, '/rollback', { by: 'builder', since, preview: true });
    assert.equal(rollback.status, 200, rollback.text);
    assert.ok(rollback.json.restored > 0, 'the leader found the builder\'s change');

    const restore = await post(standby, '/restore?by=ops', { name: dump.json.backup.name });
    assert.equal(restore.status, 200, restore.text);
    // A refusal of the leader's comes back as it is.
    const bad = await post(standby, '/restore', { name: '' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /body must be/);
  });

  test('a body the leader refuses before reading it (413) gets the leader\'s refusal, and the connection then closes', async (t) => {
    const { standby } = await pair(t);
    // What the standby had read of each connection when it closed: all of it, unless it cut the client off mid-body.
    const readAtClose: number[] = [];
    standby.app.server.on('connection', (socket: Socket) => socket.on('close', () => readAtClose.push(socket.bytesRead)));
    const size = 16 * 1024 * 1024;
    const big = await call(standby.url, '/cells?start=0', { method: 'PUT', body: Buffer.alloc(size), auth: AUTH });
    assert.equal(big.status, 413, big.text);
    assert.match(big.json.error, /larger than 16384 bytes/);
    assert.equal(big.headers.connection, 'close');
    await waitFor('the refused connection closed', () => readAtClose.length === 1);
    // Dropped as it came, to its end: destroyed after the answer, or the body left unread, the client could get a reset in place of it.
    assert.ok(readAtClose[0]! >= size, `the standby closed the connection after reading ${readAtClose[0]} bytes of it`);
    // A chunked body (no Content-Length) streams through too.
    const chunked = await new Promise<{ status?: number; text: string }>((resolve, reject) => {
      const req = request(`${standby.url}/cells?start=16`, { method: 'PUT', headers: { Authorization: basicHeader(AUTH.user, AUTH.password) }, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => { text += c; }).on('end', () => resolve({ status: res.statusCode, text }));
      });
      req.on('error', reject);
      req.write(Buffer.from([1, 2, 3, 4]));
      req.end(Buffer.from([5, 6, 7, 8]));
    });
    assert.equal(chunked.status, 200, chunked.text);
    assert.equal(JSON.parse(chunked.text).cells, 2);
  });

  test('wrong credentials get 401 from the standby, count in its throttle (429 after the limit), and never reach the leader', async (t) => {
    const { leader, standby, role } = await pair(t, { maxLoginFailures: 3 });
    const wrong = { user: AUTH.user, password: 'wrong' };
    for (let i = 0; i < 3; i++) {
      const refused = await call(standby.url, '/request', { method: 'POST', body: { action: 1, index: 1, category: 1 }, auth: wrong });
      assert.equal(refused.status, 401);
    }
    assert.equal((await call(standby.url, '/cells?start=0', { method: 'PUT', body: Buffer.alloc(4), auth: wrong })).status, 429);
    assert.equal((await call(standby.url, '/s3dump', { method: 'POST', body: {}, auth: AUTH })).status, 429, 'the throttled address is refused even with the right password');
    assert.deepEqual(role.asked, [], 'nothing was sent on');
    const metrics = await call(leader.url, '/metrics', { auth: AUTH });
    assert.match(metrics.text, /^cubecache_auth_failures_total 0$/m, 'the leader saw no failed login');
    assert.match(metrics.text, /^cubecache_auth_throttled_total 0$/m);
  });

  test('a leader that cannot be reached, or none known, gets 503 with Retry-After: 1', async (t) => {
    const gone = await rawServer(t, () => undefined);
    await new Promise<void>((resolve) => gone.server.close(() => resolve()));
    let target: string | undefined = gone.url;
    const standby = await startServer(t, await openFileStore(t), { role: followerRole(() => target) });
    const refused = await post(standby, '/request', { action: 1, index: 1, category: 1 });
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.headers['retry-after'], '1');
    assert.match(refused.json.error, /cannot be reached.*nothing was changed/);
    const put = await call(standby.url, '/cells?start=0', { method: 'PUT', body: Buffer.alloc(4096), auth: AUTH });
    assert.equal(put.status, 503);
    assert.equal(put.headers['retry-after'], '1');
    target = undefined;
    const none = await post(standby, '/rollback', { by: 'x', since: '2000-01-01T00:00:00Z' });
    assert.equal(none.status, 503);
    assert.equal(none.headers['retry-after'], '1');
    assert.match(none.json.error, /no leader is known/);
  });

  test('a request already forwarded is never forwarded again: 503, and the leader never sees it', async (t) => {
    let seen = 0;
    const leader = await rawServer(t, (_req, res) => { seen++; res.end('{}'); });
    const role = followerRole(() => leader.url);
    const standby = await startServer(t, await openFileStore(t), { role });
    const loop = await post(standby, '/request', { action: 1, index: 1, category: 1 }, { 'X-Cubecache-Forwarded': '1' });
    assert.equal(loop.status, 503, loop.text);
    assert.equal(loop.headers['retry-after'], '1');
    assert.match(loop.json.error, /already forwarded/);
    const loopPut = await call(standby.url, '/cells?start=0', { method: 'PUT', body: Buffer.alloc(8), auth: AUTH, headers: { 'X-Cubecache-Forwarded': '1' } });
    assert.equal(loopPut.status, 503);
    assert.deepEqual(role.asked, [true, true], 'the role was told the request came forwarded');
    assert.equal(seen, 0);
  });

  test('a role that says local runs the write here', async (t) => {
    const role = followerRole(() => 'local');
    const standby = await startServer(t, await openFileStore(t), { role });
    assert.equal((await post(standby, '/request', { action: 1, index: 5, category: 2 })).status, 200);
    assert.equal((await call(standby.url, '/cells?start=8', { method: 'PUT', body: Buffer.from([6, 0, 0, 0]), auth: AUTH })).status, 200);
    assert.equal((await post(standby, '/request', { index: 5 })).json.category, 2);
    assert.equal((await post(standby, '/request', { index: 8 })).json.category, 6);
  });

  test('what the leader gets: method, path and query, the end-to-end headers, Host its own, X-Cubecache-Forwarded; not the hop-by-hop ones', async (t) => {
    let got: { method?: string; url?: string; headers: IncomingHttpHeaders; body: string } | undefined;
    const leader = await rawServer(t, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        got = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() };
        res.writeHead(201, { 'Content-Type': 'application/json', 'X-Leader': 'yes', 'Keep-Alive': 'timeout=5', Connection: 'keep-alive' });
        res.end('{"status":201}');
      });
    });
    const standby = await startServer(t, await openFileStore(t), { role: followerRole(() => leader.url) });
    const answer = await call(standby.url, '/cells?start=4&by=a%20b', {
      method: 'PUT', body: Buffer.from([1, 2, 3, 4]), auth: AUTH,
      headers: { Connection: 'keep-alive, X-Secret-Hop', 'X-Secret-Hop': 'drop me', 'Keep-Alive': 'timeout=9', TE: 'trailers', 'Proxy-Authorization': 'Basic eDp5', 'X-Client': 'keep me' },
    });
    assert.equal(answer.status, 201);
    assert.equal(answer.headers['x-leader'], 'yes');
    assert.notEqual(answer.headers['keep-alive'], 'timeout=5', 'the leader\'s hop-by-hop headers stay with it');
    assert.deepEqual(answer.json, { status: 201 });
    assert.ok(got);
    assert.equal(got.method, 'PUT');
    assert.equal(got.url, '/cells?start=4&by=a%20b');
    assert.equal(got.body, '\x01\x02\x03\x04');
    assert.equal(got.headers.host, new URL(leader.url).host);
    assert.equal(got.headers['x-cubecache-forwarded'], '1');
    assert.equal(got.headers.authorization, basicHeader(AUTH.user, AUTH.password));
    assert.equal(got.headers['x-client'], 'keep me');
    assert.equal(got.headers['content-length'], '4');
    for (const name of ['x-secret-hop', 'te', 'proxy-authorization', 'keep-alive', 'transfer-encoding']) assert.equal(got.headers[name], undefined, name);
  });

  test('a leader that dies after the request reached it, before answering: 502 saying the write may have been applied', async (t) => {
    let reached = 0;
    const leader = await rawServer(t, (req) => {
      req.resume();
      req.on('end', () => { reached++; req.socket.destroy(); });
    });
    const standby = await startServer(t, await openFileStore(t), { role: followerRole(() => leader.url) });
    const lost = await post(standby, '/request', { action: 1, index: 1, category: 1 });
    assert.equal(lost.status, 502, lost.text);
    assert.match(lost.json.error, /may or may not have been applied/);
    assert.equal(reached, 1);
    const lostPut = await call(standby.url, '/cells?start=0', { method: 'PUT', body: Buffer.alloc(1 << 20), auth: AUTH });
    assert.equal(lostPut.status, 502, lostPut.text);
    assert.equal(reached, 2);
  });

  test('a leader that takes the request and never answers is given up after the stall limit: 502', { timeout: 30_000 }, async (t) => {
    let reached = 0;
    const leader = await rawServer(t, (req) => {
      req.resume();
      req.on('end', () => { reached++; });
    });
    const standby = await startServer(t, await openFileStore(t), { role: followerRole(() => leader.url), timeouts: { requestMs: 300 } });
    const stalled = await post(standby, '/request', { action: 1, index: 1, category: 1 });
    assert.equal(stalled.status, 502, stalled.text);
    assert.match(stalled.json.error, /ESTALLED.*may or may not have been applied/);
    assert.equal(reached, 1);
  });

  test('an answer that breaks off halfway drops the client\'s connection rather than pass a short body as whole', async (t) => {
    const leader = await rawServer(t, (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100' });
        res.write('{"status":200,', () => res.socket?.destroy());
      });
    });
    const standby = await startServer(t, await openFileStore(t), { role: followerRole(() => leader.url) });
    const outcome = await new Promise<string>((resolve) => {
      const req = request(`${standby.url}/request`, { method: 'POST', headers: { Authorization: basicHeader(AUTH.user, AUTH.password) }, agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        res.resume();
        res.on('end', () => resolve('whole'));
        res.on('error', () => resolve('broken'));
        res.on('aborted', () => resolve('broken'));
      });
      req.on('error', () => resolve('broken'));
      req.end(JSON.stringify({ action: 1, index: 1, category: 1 }));
    });
    assert.equal(outcome, 'broken');
  });
});
