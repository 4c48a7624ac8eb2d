/**
 * lib/backup/undo.ts: a restore of a kept snapshot and a rollback are changes like any other, on a server run
 * as `npm start` runs it (log on, shipping every second, a snapshot every ten minutes), no snapshot by hand
 * before the past is read.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import type { AppOptions } from '../lib/app.js';
import { AUTH, openFileStore, openS3Store, openWalDir, startServer, type StoreFixture } from './support/app.js';
import { splittingInstant } from './support/model.js';
import { storeWith } from './support/store.js';

/** The production defaults, until the shared fixture runs them. */
async function production(t: TestContext): Promise<Partial<AppOptions>> {
  return { wal: { dir: await openWalDir(t), sync: 'write' }, shipIntervalMs: 1000, backupIntervalMs: 600_000 };
}

const w = (category: number, by = 'p') => ({ action: 1, index: 1, category, by });
const iso = (ms: number) => new Date(ms).toISOString();

describe('undo', () => {
  for (const [kind, open] of [['file', openFileStore], ['s3', () => openS3Store()]] as const) {
    test(`a restore of a named backup is a change in history: instants after the backup still read what they held, and none becomes unreadable (${kind} store; issue 16 finding 1)`, async (t) => {
      const fixture: StoreFixture = await open(t);
      const s = await startServer(t, fixture, await production(t));
      assert.equal((await s.post('/request', w(1))).status, 200);
      const t1 = await splittingInstant();
      const s1 = (await s.post('/s3dump')).json.backup.name;
      assert.equal((await s.post('/request', w(2))).status, 200);
      assert.equal((await s.post('/s3dump')).status, 200);
      assert.equal((await s.post('/request', w(3))).status, 200);
      const t3 = await splittingInstant();
      const restored = await s.call('/restore?by=mod', { method: 'POST', body: { name: s1 }, auth: AUTH });
      assert.equal(restored.status, 200, restored.text);
      assert.equal((await s.post('/request', { index: 1 })).json.category, 1, 'the restored world');
      const atT3 = await s.post('/request', { index: 1, at: iso(t3) });
      assert.equal(atT3.status, 200, atT3.text);
      assert.equal(atT3.json.category, 3, 'the instant before the restore reads what it held then');
      assert.equal((await s.post('/request', { index: 1, at: iso(t1) })).json.category, 1, 'an older instant stays readable');
      const history = await s.call("/history?start=1&count=1", { auth: AUTH });
      assert.equal(history.status, 200, history.text);
      assert.deepEqual(history.json.changes.map((c: { by: string; after: { category: number } }) => `${c.by}:${c.after.category}`), ['mod:1', 'p:3', 'p:2', 'p:1']);
    });
  }

  test('a rollback skips a cell written while it was planned, even with the value it would replace (issue 16 finding 8c)', async (t) => {
    const fixture = await openFileStore(t);
    let duringPlan: (() => Promise<void>) | undefined;
    const store = storeWith(fixture.store, {
      async getStream(key) {
        const hook = duringPlan;
        if (hook && key.includes('/backups/')) {
          duringPlan = undefined;
          await hook(); // the plan reads the snapshot it starts from: another player writes now
        }
        return fixture.store.getStream(key);
      },
    });
    const s = await startServer(t, { ...fixture, store }, await production(t));
    assert.equal((await s.post('/request', w(5, 'alice'))).status, 200);
    const since = await splittingInstant();
    assert.equal((await s.post('/request', w(9, 'griefer'))).status, 200);
    assert.equal((await s.post('/request', { action: 1, index: 2, category: 9, by: 'griefer' })).status, 200);
    duringPlan = async () => {
      assert.equal((await s.post('/request', w(9, 'bob'))).status, 200, 'bob writes the very value the griefer left');
    };
    const rollback = await s.call('/rollback?by=mod', { method: 'POST', body: { by: 'griefer', since: iso(since) }, auth: AUTH });
    assert.equal(rollback.status, 200, rollback.text);
    assert.equal(duringPlan, undefined, 'bob wrote while the rollback was planned');
    assert.equal((await s.post('/request', { index: 1 })).json.category, 9, 'bob\'s write stays');
    assert.equal((await s.post('/request', { index: 2 })).json.category, 0, 'the griefer\'s other cell is rolled back');
    assert.equal(rollback.json.restored, 1);
    assert.equal(rollback.json.skipped, 1);
    assert.deepEqual(rollback.json.skippedCells.map((c: { index: number }) => c.index), [1]);
  });
});
