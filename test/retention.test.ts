/** lib/backup/retention.ts: what pruning keeps (BACKUP_RETAIN snapshots and what their replays need), across a restart. */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { AppOptions } from '../lib/app.js';
import { AUTH, openFileStore, openS3Store, openWalDir, startServer, type StoreFixture } from './support/app.js';
import { storeWith } from './support/store.js';
import { splittingInstant } from './support/model.js';

/** The production defaults, until the shared fixture runs them. */
async function production(t: TestContext): Promise<Partial<AppOptions>> {
  return { wal: { dir: await openWalDir(t), sync: 'write' }, shipIntervalMs: 1000, backupIntervalMs: 600_000 };
}

const iso = (ms: number) => new Date(ms).toISOString();

describe('retention', () => {
  for (const [kind, open] of [['file', openFileStore], ['s3', () => openS3Store()]] as const) {
    test(`BACKUP_RETAIN=2 keeps two snapshots, also after a restart; an instant retention dropped is a 400, every kept one reads (${kind} store; issue 16 finding 3)`, async (t) => {
      const fixture: StoreFixture = await open(t);
      const options = { ...(await production(t)), backupRetain: 2 };
      let s = await startServer(t, fixture, options);
      const instants: number[] = [];
      for (let i = 1; i <= 3; i++) {
        assert.equal((await s.post('/request', { action: 1, index: 1, category: i })).status, 200);
        instants.push(await splittingInstant());
        assert.equal((await s.post('/s3dump')).status, 200);
      }
      await s.app.backups.pruned();
      assert.equal((await s.call('/backups', { auth: AUTH })).json.backups.length, 2);
      await s.app.close();
      s = await startServer(t, fixture, options);
      const listed = await s.call('/backups', { auth: AUTH });
      assert.equal(listed.json.backups.length, 2, 'a restart lists as many');
      const earliest = Date.parse(listed.json.history.earliest);
      for (const [i, at] of instants.entries()) {
        const read = await s.post('/request', { index: 1, at: iso(at) });
        if (at < earliest) assert.equal(read.status, 400, `instant ${i}, before the span: ${read.text}`);
        else assert.deepEqual([read.status, read.json.category], [200, i + 1], `instant ${i}: ${read.text}`);
      }
      const history = await s.call('/history?start=1&count=1', { auth: AUTH });
      assert.equal(history.status, 200, history.text);
    });
  }

  test('a read of the past racing the prune that deletes its snapshot answers 400, not 502 (issue 16 finding 3)', async (t) => {
    const fixture = await openFileStore(t);
    // Snapshot reads are held while `hold` is set, so the prune runs in the middle of one.
    let hold = false;
    let reached!: () => void;
    const reachedRead = new Promise<void>((resolve) => { reached = resolve; });
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    const store = storeWith(fixture.store, {
      getStream: async (key) => {
        if (hold && key.includes('/backups/')) {
          reached();
          await released;
        }
        return fixture.store.getStream(key);
      },
    });
    const s = await startServer(t, { ...fixture, store }, { ...(await production(t)), backupRetain: 2 });
    assert.equal((await s.post('/request', { action: 1, index: 1, category: 1 })).status, 200);
    const before = await splittingInstant(); // after the first boot's snapshot, before the next one: read from the first
    assert.equal((await s.post('/s3dump')).status, 200);
    hold = true;
    const read = s.post('/request', { index: 1, at: iso(before) });
    await reachedRead;
    hold = false;
    assert.equal((await s.post('/request', { action: 1, index: 1, category: 2 })).status, 200);
    assert.equal((await s.post('/s3dump')).status, 200); // BACKUP_RETAIN=2: the first boot's snapshot is pruned
    await s.app.backups.pruned();
    release();
    const answer = await read;
    assert.equal(answer.status, 400, answer.text);
    assert.match(answer.json.error, /outside the history kept/);
  });

  test('storage stays bounded by BACKUP_RETAIN: objects counted after many snapshots', async (t) => {
    const fixture = await openFileStore(t);
    const s = await startServer(t, fixture, { ...(await production(t)), backupRetain: 2 });
    const count = async () => {
      const keys = await fixture.store.list(fixture.prefix);
      return { all: keys.length, backups: keys.filter((k) => k.includes('/backups/')).length, commits: keys.filter((k) => k.includes('/commits/')).length };
    };
    for (let i = 1; i <= 12; i++) {
      assert.equal((await s.post('/request', { action: 1, index: i, category: i })).status, 200);
      assert.equal((await s.post('/s3dump')).status, 200);
      await s.app.backups.pruned();
    }
    const objects = await count();
    assert.equal(objects.backups, 2);
    // The two kept snapshots' commits and the change set each shipped first; nothing older.
    assert.ok(objects.commits <= 4, `commits kept: ${objects.commits}`);
    assert.ok(objects.all <= 6, `objects kept: ${objects.all}`);
  });
});
