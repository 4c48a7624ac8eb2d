/** Batches, conditional writes, binary ranges, stats, metrics and hardening, end to end. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { memoryLog } from './support/log.js';
import { MAX_BATCH } from '../lib/protocol.js';
import type { BlobStore } from '../lib/store.js';
import { AUTH, openFileStore, startServer, TEST_CELLS } from './support/app.js';
import { basicHeader, call, waitFor } from './support/http.js';

const cell = (category: number, rotation = 0, sideA = 0, sideB = 0) => ({ category, rotation, sideA, sideB });

describe('batches', () => {
  test('an array of commands answers an array, in order; reads see the batch\'s earlier writes', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const answer = await s.post('/request', [
      { action: 1, index: 1, category: 1 }, { index: 1 }, { action: 1, index: 1, category: 2, sideB: 9 }, { index: 2 }, null,
    ]);
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.json, [
      { status: 200, ...cell(1) }, { status: 200, ...cell(1) }, { status: 200, ...cell(2, 0, 0, 9) }, { status: 200, ...cell(0) }, { status: 200, ...cell(0) },
    ]);
    assert.deepEqual((await s.post('/request', { index: 1 })).json, { status: 200, ...cell(2, 0, 0, 9) });
    assert.deepEqual((await s.post('/request', [])).json, []);
  });

  test('one bad element: 400 naming the first one, and nothing written', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const answer = await s.post('/request', [{ action: 1, index: 1, category: 1 }, { action: 1, index: 2, category: 256 }, { action: 1, index: TEST_CELLS }]);
    assert.equal(answer.status, 400);
    assert.match(answer.json.error, /^element 1: category must be between 0 and 255/);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 0);
    assert.match((await s.post('/request', [{}, [1]])).json.error, /^element 1: /);
    assert.match((await s.post('/request', [{}, 'x'])).json.error, /^element 1: /);
    assert.equal(s.app.cube.version, 0);
  });

  test(`more than ${MAX_BATCH} commands: 413`, async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const full = await s.post('/request', Array.from({ length: MAX_BATCH }, (_, i) => ({ action: 1, index: i % TEST_CELLS, category: 1 })));
    assert.equal(full.status, 200);
    assert.equal(full.json.length, MAX_BATCH);
    const over = await s.post('/request', Array.from({ length: MAX_BATCH + 1 }, () => ({})));
    assert.equal(over.status, 413);
    assert.match(over.json.error, /at most 4096 commands/);
  });
});

describe('conditional writes', () => {
  test('a write that expects the current value writes; one that does not is a 409 with the current value', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 5, category: 3 });
    const ok = await s.post('/request', { action: 1, index: 5, category: 4, expect: cell(3) });
    assert.deepEqual(ok.json, { status: 200, ...cell(4) });
    const clash = await s.post('/request', { action: 1, index: 5, category: 9, expect: cell(3) });
    assert.equal(clash.status, 409);
    assert.deepEqual({ ...clash.json, error: undefined }, { status: 409, error: undefined, index: 5, ...cell(4) });
    assert.equal((await s.post('/request', { index: 5 })).json.category, 4);
    assert.equal((await s.post('/request', { action: 1, index: 6, category: 1, EXPECT: { CATEGORY: 0 } })).status, 200, 'missing expect fields are 0; keys case-insensitive');
    assert.equal((await s.post('/request', { action: 1, index: 6, expect: { category: 1.5 } })).status, 400);
    assert.equal((await s.post('/request', { action: 1, index: 6, expect: 7 })).status, 400);
  });

  test('two players editing one block: exactly one wins', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const answers = await Promise.all([1, 2, 3, 4].map((player) => s.post('/request', { action: 1, index: 9, category: player, expect: cell(0) })));
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 409, 409, 409]);
    const winner = answers.find((a) => a.status === 200)!.json.category;
    for (const loser of answers.filter((a) => a.status === 409)) assert.equal(loser.json.category, winner);
  });

  test('a conflict anywhere in a batch writes nothing, and names the element', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 2, category: 2 });
    const answer = await s.post('/request', [
      { action: 1, index: 1, category: 1 }, { action: 1, index: 1, category: 5, expect: cell(1) }, { action: 1, index: 2, category: 7, expect: cell(9) },
    ]);
    assert.equal(answer.status, 409);
    assert.equal(answer.json.element, 2);
    assert.equal(answer.json.category, 2);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 0, 'the earlier elements were not written either');
  });
});

describe('binary ranges', () => {
  test('GET /cells exports raw bytes; PUT /cells imports them; a whole world moves between servers', async (t) => {
    const a = await startServer(t, await openFileStore(t));
    await a.post('/request', [{ action: 1, index: 0, category: 1, rotation: 2, sideA: 3, sideB: 4 }, { action: 1, index: TEST_CELLS - 1, category: 255 }]);
    const range = await call(a.url, '/cells?start=0&count=2', { auth: AUTH });
    assert.equal(range.status, 200);
    assert.equal(range.headers['content-type'], 'application/octet-stream');
    assert.equal(range.headers['content-length'], '8');
    const whole = await rawGet(a.url, '/cells');
    assert.equal(whole.length, TEST_CELLS * 4);
    assert.deepEqual([...whole.subarray(0, 4)], [1, 2, 3, 4]);
    assert.equal(whole[TEST_CELLS * 4 - 4], 255);
    const b = await startServer(t, await openFileStore(t));
    const put = await call(b.url, '/cells', { method: 'PUT', body: whole, auth: AUTH, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.deepEqual(put.json, { status: 200, start: 0, cells: TEST_CELLS });
    assert.ok((await rawGet(b.url, '/cells')).equals(whole));
    assert.equal((await call(b.url, '/stats', { auth: AUTH })).json.cellsInUse, 2);
    const partial = await call(b.url, '/cells?start=10', { method: 'PUT', body: new Uint8Array([9, 9, 9, 9]), auth: AUTH });
    assert.deepEqual(partial.json, { status: 200, start: 10, cells: 1 });
    assert.deepEqual((await b.post('/request', { index: 10 })).json, { status: 200, ...cell(9, 9, 9, 9) });
  });

  test('bad ranges are 400 or 413 and change nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    for (const query of ['start=-1', 'start=x', `start=${TEST_CELLS + 1}`, `start=1&count=${TEST_CELLS}`, 'count=1.5', 'start=1e3']) {
      assert.equal((await call(s.url, `/cells?${query}`, { auth: AUTH })).status, 400, query);
    }
    assert.equal((await call(s.url, '/cells?start=0', { method: 'PUT', body: new Uint8Array(5), auth: AUTH })).status, 400);
    assert.equal((await call(s.url, `/cells?start=${TEST_CELLS - 1}`, { method: 'PUT', body: new Uint8Array(8), auth: AUTH })).status, 413);
    assert.equal((await call(s.url, '/cells', { auth: false })).status, 401);
    assert.equal(s.app.cube.version, 0);
  });

  test('a PUT whose client leaves mid-body changes nothing', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    const accepted = once(s.app.server, 'connection');
    const socket = connect(Number(new URL(s.url).port), '127.0.0.1');
    await once(socket, 'connect');
    const [serverSide] = (await accepted) as [Socket];
    const head = `PUT /cells HTTP/1.1\r\nHost: x\r\nAuthorization: ${basicHeader(AUTH.user, AUTH.password)}\r\nContent-Length: 4096\r\n\r\n`;
    socket.write(head);
    socket.write(Buffer.alloc(2048, 7));
    await waitFor('the server to have read part of the body', () => serverSide.bytesRead >= head.length + 2048);
    socket.destroy();
    await once(serverSide, 'close');
    assert.equal((await s.post('/request', { index: 0 })).json.category, 0);
    assert.equal(s.app.cube.version, 0);
  });
});

describe('stats and metrics', () => {
  test('GET /stats: cells in use, categories, bytes written since the last backup', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', [{ action: 1, index: 1, category: 5 }, { action: 1, index: 2, category: 5 }, { action: 1, index: 3, sideB: 1 }]);
    const stats = await call(s.url, '/stats', { auth: AUTH });
    assert.deepEqual(stats.json, { status: 200, cells: TEST_CELLS, cellsInUse: 3, categories: { 0: TEST_CELLS - 2, 5: 2 }, bytesWrittenSinceBackup: 12, unsavedChanges: true });
    await s.post('/s3dump');
    const after = await call(s.url, '/stats', { auth: AUTH });
    assert.equal(after.json.bytesWrittenSinceBackup, 0);
    assert.equal(after.json.unsavedChanges, false);
  });

  test('GET /metrics: Prometheus text with requests, latency, cells, backups, event loop and memory', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 1, category: 1 });
    await s.post('/request', [{ index: 1 }, { index: 2 }]);
    await s.post('/s3dump');
    await s.call('/request', { method: 'POST', body: {} }); // a 401
    const metrics = await call(s.url, '/metrics', { auth: AUTH });
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const value = (line: string) => {
      const match = metrics.text.split('\n').find((l) => l.startsWith(`${line} `));
      assert.ok(match, `no line ${line}`);
      return Number(match.slice(line.length + 1));
    };
    assert.equal(value('cubecache_http_requests_total{route="/request",status="200"}'), 2);
    assert.equal(value('cubecache_http_requests_total{route="/request",status="401"}'), 1);
    assert.equal(value('cubecache_http_request_duration_seconds_count{route="/request"}'), 3);
    assert.equal(value('cubecache_cells_written_total'), 1);
    assert.equal(value('cubecache_cells_read_total'), 2);
    assert.equal(value('cubecache_backups_total'), 1);
    assert.equal(value('cubecache_backup_failures_total'), 0);
    assert.ok(value('cubecache_backup_last_success_timestamp_seconds') > 1.7e9);
    assert.equal(value('cubecache_unsaved_changes'), 0);
    assert.ok(value('process_resident_memory_bytes') > 0);
    assert.ok(value('cubecache_event_loop_delay_seconds{quantile="0.99"}') >= 0);
    for (const line of metrics.text.trim().split('\n')) {
      assert.match(line, /^(# (HELP|TYPE) \w+ .+|\w+(\{[^}]*\})? -?[\d.e+-]+)$/, `not exposition format: ${line}`);
    }
    assert.equal((await call(s.url, '/metrics')).status, 401);
  });
});

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

/** The whole body of a GET, as bytes. */
async function rawGet(base: string, path: string): Promise<Buffer> {
  const { request } = await import('node:http');
  return new Promise((resolve, reject) => {
    request(new URL(path, base), { headers: { Authorization: basicHeader(AUTH.user, AUTH.password) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    }).on('error', reject).end();
  });
}

/** `store` with its backup uploads (puts under backups/) held until `release()`, or failing while `failing` is set. */
function gatedStore(store: BlobStore) {
  let open!: () => void;
  let gate = new Promise<void>((resolve) => { open = resolve; });
  const control = {
    held: 0,
    failing: false,
    release: () => open(),
    store: {
      location: store.location,
      get: (key: string) => store.get(key),
      getStream: (key: string) => store.getStream(key),
      cleanup: (prefix: string, stale: (key: string) => boolean) => store.cleanup(prefix, stale),
      putIfAbsent: (key: string, body: Uint8Array) => store.putIfAbsent(key, body),
      list: (prefix: string) => store.list(prefix),
      delete: (key: string) => store.delete(key),
      async put(key: string, body: Parameters<BlobStore['put']>[1]) {
        if (key.includes('/backups/')) {
          control.held++;
          await gate;
          if (control.failing) throw Object.assign(new Error('injected'), { name: 'InjectedFailure' });
        }
        return store.put(key, body);
      },
    } satisfies BlobStore,
  };
  return control;
}

describe('POST /s3dump?async=1', () => {
  test('answers 202 at once, while the upload is still held, and the backup commits afterwards', async (t) => {
    const fixture = await openFileStore(t);
    const gated = gatedStore(fixture.store);
    const s = await startServer(t, { ...fixture, store: gated.store });
    await s.post('/request', { action: 1, index: 5, category: 5 });
    const answer = await s.post('/s3dump?async=1');
    assert.equal(answer.status, 202);
    assert.equal(answer.json.status, 202);
    assert.equal(answer.json.backup, 'started');
    assert.equal(answer.json.outcome, '/healthcheck');
    const requestedAt = String(answer.json.requestedAt);
    await waitFor('the upload to be held', () => gated.held === 1);
    const during = (await s.call('/healthcheck')).json.backup;
    assert.equal(during.inProgress, true, 'answered before the backup finished');
    assert.equal(during.lastSuccessAt, null);

    const joined = await s.post('/s3dump?async=1');
    assert.equal(joined.status, 202);
    assert.equal(joined.json.backup, 'joined', 'a backup running is joined, not doubled');
    gated.release();
    const health = await waitFor('the backup in /healthcheck', async () => {
      const backup = (await s.call('/healthcheck')).json.backup;
      return backup.lastSuccessAt !== null && backup.lastSuccessAt >= requestedAt && !backup.inProgress ? backup : undefined;
    });
    assert.equal(health.unsavedChanges, false);
    assert.equal((await s.call('/backups', { auth: AUTH })).json.backups.length, 1, 'one backup for the two requests');
  });

  test('a backup that fails: still 202, and the failure is what /healthcheck shows', async (t) => {
    const fixture = await openFileStore(t);
    const gated = gatedStore(fixture.store);
    gated.failing = true;
    gated.release();
    const s = await startServer(t, { ...fixture, store: gated.store });
    await s.post('/request', { action: 1, index: 5, category: 5 });
    assert.equal((await s.post('/s3dump?async=1')).status, 202);
    const backup = await waitFor('the failure in /healthcheck', async () => {
      const b = (await s.call('/healthcheck')).json.backup;
      return b.consecutiveFailures > 0 && !b.inProgress ? b : undefined;
    });
    assert.match(backup.lastError.error, /InjectedFailure|injected/);
    assert.equal(backup.unsavedChanges, true);
  });

  test('needs credentials; the plain POST /s3dump stays synchronous; fenced is a 409 at once', async (t) => {
    const fixture = await openFileStore(t);
    const a = await startServer(t, fixture);
    assert.equal((await a.call('/s3dump?async=1', { method: 'POST', body: {} })).status, 401);
    await a.post('/request', { action: 1, index: 1, category: 1 });
    const sync = await a.post('/s3dump');
    assert.equal(sync.status, 200);
    assert.equal(sync.json.backup.bytes, TEST_CELLS * 4, 'the plain form answers with the committed backup');
    await startServer(t, fixture); // a newer server claims the prefix
    await a.post('/request', { action: 1, index: 1, category: 2 });
    assert.equal((await a.post('/s3dump')).status, 409);
    const fenced = await a.post('/s3dump?async=1');
    assert.equal(fenced.status, 409);
    assert.match(fenced.json.error, /another server/);
  });
});
