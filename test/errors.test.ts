/** One table turns errors into answers (lib/http.ts httpErrorOf), and every 5xx is logged there with its cause. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FencedError, UnknownBackupError } from '../lib/backup/backups.js';
import { HttpError, httpErrorOf, UpstreamError } from '../lib/http.js';
import { memoryLog } from './support/log.js';
import type { BlobStore } from '../lib/store.js';
import { AUTH, openFileStore, startServer } from './support/app.js';

/** `store`, whose list and get fail once `broken.now` is set (as a data folder that went away). */
function breakable(store: BlobStore): { store: BlobStore; broken: { now: boolean } } {
  const broken = { now: false };
  const fail = () => Promise.reject(Object.assign(new Error('disk gone'), { code: 'EIO' }));
  return {
    broken,
    store: {
      location: store.location,
      get: (key) => (broken.now ? fail() : store.get(key)),
      getStream: (key) => (broken.now ? fail() : store.getStream(key)),
      cleanup: (prefix, stale) => store.cleanup(prefix, stale),
      put: (key, body) => (broken.now ? fail() : store.put(key, body)),
      putIfAbsent: (key, body) => store.putIfAbsent(key, body),
      getVersioned: (key) => (broken.now ? fail() : store.getVersioned(key)),
      putIfMatch: (key, body, version) => store.putIfMatch(key, body, version),
      list: (prefix) => (broken.now ? fail() : store.list(prefix)),
      delete: (key) => store.delete(key),
    },
  };
}

describe('httpErrorOf', () => {
  test('maps each kind of error to its answer, and names the cause to log for a 5xx', () => {
    const own = new HttpError(418, 'teapot');
    assert.equal(httpErrorOf(own).answer, own);
    assert.equal(httpErrorOf(own).cause, undefined);
    assert.equal(httpErrorOf(new UpstreamError(new FencedError('taken over'))).answer.status, 503); // fenced: every write route 503
    assert.equal(httpErrorOf(new UpstreamError(new UnknownBackupError('no such backup'))).answer.status, 404);
    const disk = Object.assign(new Error('disk gone'), { code: 'EIO' });
    const store = httpErrorOf(new UpstreamError(disk));
    assert.equal(store.answer.status, 502);
    assert.match(store.answer.message, /^backup store failed \(Error\)/);
    assert.equal(store.cause, disk);
    const bug = new TypeError('x is undefined');
    const internal = httpErrorOf(bug);
    assert.deepEqual([internal.answer.status, internal.answer.message, internal.cause], [500, 'internal error', bug]);
    assert.equal(httpErrorOf(Object.assign(new Error('x'), { code: 'HPE_HEADER_OVERFLOW' })).answer.status, 431);
    assert.equal(httpErrorOf(Object.assign(new Error('x'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' })).answer.status, 408);
    assert.equal(httpErrorOf(Object.assign(new Error('x'), { code: 'HPE_INVALID_METHOD' })).answer.status, 400);
  });
});

describe('store failures behind a request', () => {
  // GET /backups reads the kept snapshots from memory (the newest snapshot commit lists them); /restore and /s3dump reach the store.
  for (const [what, path] of [['POST /s3dump', '/s3dump'], ['POST /restore', '/restore']] as const) {
    test(`${what} answers 502 on a store failure and logs its cause`, async (t) => {
      const fixture = await openFileStore(t);
      const { store, broken } = breakable(fixture.store);
      const log = memoryLog();
      const s = await startServer(t, { ...fixture, store }, { log });
      await s.post('/request', { action: 1, index: 1, category: 1 });
      const { name } = (await s.post('/s3dump')).json.backup;
      await s.post('/request', { action: 1, index: 1, category: 2 });
      broken.now = true;
      const answer = await s.call(path, { method: 'POST', body: path === '/restore' ? { name } : {}, auth: AUTH });
      assert.equal(answer.status, 502, answer.text);
      assert.equal(answer.json.status, 502);
      assert.match(answer.json.error, /backup store failed/);
      assert.ok(!answer.text.includes('disk gone'), 'the cause stays in the log');
      const logged = log.events.find((e) => e.event === 'request_failed');
      assert.ok(logged, `a request_failed line: ${JSON.stringify(log.events.map((e) => e.event))}`);
      assert.equal(logged.status, 502);
      assert.equal(logged.path, path);
      assert.equal((logged.err as Error).message, 'disk gone');
      broken.now = false;
      assert.equal((await s.call('/healthcheck')).status, 200, 'the server keeps serving');
    });
  }
});
