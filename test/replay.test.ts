/**
 * lib/backup/replay.ts: the one replay (snapshot, change sets after it, log frames after those) answers the
 * past from a world's first second, on a server run as `npm start` runs it, with no snapshot taken by hand;
 * across a kill -9 and a restart; in both stores.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { AppOptions } from '../lib/app.js';
import { AUTH, openFileStore, openS3Store, openWalDir, startServer, type Running, type StoreFixture } from './support/app.js';
import { call } from './support/http.js';
import { splittingInstant } from './support/model.js';
import { startServerProcess } from './support/process.js';

/** The production defaults, until the shared fixture runs them. */
async function production(t: TestContext): Promise<Partial<AppOptions>> {
  return { wal: { dir: await openWalDir(t), sync: 'write' }, shipIntervalMs: 1000, backupIntervalMs: 600_000 };
}

const iso = (ms: number) => new Date(ms).toISOString();

/** The new user's session of issue 16: alice builds, a griefer overwrites; the past in between is read, attributed and previewed. */
async function checkFirstSeconds(post: Running['post'], get: (path: string) => ReturnType<Running['call']>, between: number, what: string): Promise<void> {
  const read = await post('/request', { index: 1, at: iso(between) });
  assert.deepEqual([read.status, read.json.category], [200, 1], `${what}: the cell between the two writes: ${read.text}`);
  const history = await get('/history?start=1&count=1');
  assert.equal(history.status, 200, history.text);
  assert.deepEqual(history.json.changes.map((c: { by: string; after: { category: number } }) => `${c.by}:${c.after.category}`), ['griefer:66', 'alice:1'], what);
  const preview = await post('/rollback', { by: 'griefer', since: iso(between), preview: true });
  assert.equal(preview.status, 200, preview.text);
  assert.equal(preview.json.restored, 1, what);
}

describe('history from the first second', () => {
  for (const [kind, open] of [['file', openFileStore], ['s3', () => openS3Store()]] as const) {
    test(`before any scheduled snapshot, and after a restart (${kind} store; issue 16 item 1)`, async (t) => {
      const fixture: StoreFixture = await open(t);
      const options = await production(t);
      let s = await startServer(t, fixture, options);
      assert.equal((await s.post('/request', { action: 1, index: 1, category: 1, by: 'alice' })).status, 200);
      const between = await splittingInstant();
      assert.equal((await s.post('/request', { action: 1, index: 1, category: 66, by: 'griefer' })).status, 200);
      const get = (path: string) => s.call(path, { auth: AUTH });
      await checkFirstSeconds(s.post, get, between, 'before any snapshot');
      const span = (await get('/backups')).json.history;
      assert.ok(Date.parse(span.earliest) < between, `the span starts at the first boot: ${JSON.stringify(span)}`);
      await s.app.close();
      s = await startServer(t, fixture, options);
      await checkFirstSeconds(s.post, (path) => s.call(path, { auth: AUTH }), between, 'after a restart');
    });
  }

  test('across a kill -9 of a server run with the defaults', async (t) => {
    const { dir } = await openFileStore(t);
    const env = { DATA_DIR: dir, CUBE_CELLS: '4096', AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password };
    const a = await startServerProcess(t, env);
    const post = (url: string) => (path: string, body: unknown = {}) => call(url, path, { method: 'POST', body: body as object, auth: AUTH });
    assert.equal((await post(a.url!)('/request', { action: 1, index: 1, category: 1, by: 'alice' })).status, 200);
    const between = await splittingInstant();
    assert.equal((await post(a.url!)('/request', { action: 1, index: 1, category: 66, by: 'griefer' })).status, 200);
    a.child.kill('SIGKILL');
    await a.exited;
    const b = await startServerProcess(t, env);
    await checkFirstSeconds(post(b.url!), (path) => call(b.url!, path, { auth: AUTH }), between, 'after a kill -9');
    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0);
  });

  test('with SHIP_INTERVAL_SECONDS=0 a snapshot ships the changes it covers first: history and rollback see them all (issue 16 finding 4)', async (t) => {
    const fixture = await openFileStore(t);
    const s = await startServer(t, fixture, { ...(await production(t)), shipIntervalMs: 0 });
    const since = await splittingInstant();
    assert.equal((await s.post('/s3dump')).status, 200);
    for (let i = 1; i <= 5; i++) assert.equal((await s.post('/request', { action: 1, index: i, category: 7, by: 'p' })).status, 200);
    assert.equal((await s.post('/s3dump')).status, 200);
    for (let i = 6; i <= 10; i++) assert.equal((await s.post('/request', { action: 1, index: i, category: 7, by: 'p' })).status, 200);
    const history = await s.call(`/history?by=p&since=${iso(since)}`, { auth: AUTH });
    assert.equal(history.status, 200, history.text);
    assert.deepEqual(history.json.changes.map((c: { index: number }) => c.index).sort((x: number, y: number) => x - y), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const rollback = await s.post('/rollback', { by: 'p', since: iso(since) });
    assert.equal(rollback.status, 200, rollback.text);
    assert.equal(rollback.json.restored, 10);
    for (let i = 1; i <= 10; i++) assert.equal((await s.post('/request', { index: i })).json.category, 0, `cell ${i} rolled back`);
  });
});
