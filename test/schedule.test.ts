/** Scheduled backups, and undo by restore through GET /backups and POST /restore. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AUTH, openFileStore, openS3Store, startServer } from './support/app.js';
import { waitFor } from './support/http.js';

describe('the schedule', () => {
  test('backs up a changed world within an interval, and skips ticks while nothing changes', async (t) => {
    const fixture = await openFileStore(t);
    const s = await startServer(t, fixture, { backupIntervalMs: 50 });
    await s.post('/request', { action: 1, index: 1, category: 1 });
    await waitFor('a scheduled backup', () => s.app.backups.status().backupsTotal === 1 && !s.app.backups.status().unsavedChanges);
    const skipped = s.app.backups.status().skippedUnchanged;
    await waitFor('three ticks with nothing to save', () => s.app.backups.status().skippedUnchanged >= skipped + 3);
    assert.equal(s.app.backups.status().backupsTotal, 1);
    assert.equal((await fixture.store.list(`${fixture.prefix}backups/`)).length, 2, 'the first boot\'s snapshot and the scheduled one');
    await s.post('/request', { action: 1, index: 2, category: 2 });
    await waitFor('the next change saved', () => s.app.backups.status().backupsTotal === 2 && !s.app.backups.status().unsavedChanges);
    const health = await s.call('/healthcheck');
    assert.equal(health.json.backup.intervalSeconds, 0.05);
    assert.equal(typeof health.json.backup.lastSuccessAt, 'string');
    assert.equal(health.json.backup.unsavedSince, null);
  });

  test('interval 0: no schedule', async (t) => {
    const s = await startServer(t, await openFileStore(t), { backupIntervalMs: 0 });
    await s.post('/request', { action: 1, index: 1, category: 1 });
    await s.post('/request', { index: 1 });
    assert.equal(s.app.backups.status().skippedUnchanged, 0);
    assert.equal(s.app.backups.status().backupsTotal, 0);
    assert.equal(typeof (await s.call('/healthcheck')).json.backup.unsavedSince, 'string');
  });
});

describe('undo by restore', () => {
  for (const [kind, open] of [['file', openFileStore], ['s3', () => openS3Store()]] as const) {
    test(`GET /backups lists, POST /restore brings one back and a restart keeps it (${kind} store)`, async (t) => {
      const fixture = await open(t);
      const s = await startServer(t, fixture);
      await s.post('/request', { action: 1, index: 1, category: 1 });
      const good = (await s.post('/s3dump')).json.backup;
      await s.post('/request', { action: 1, index: 1, category: 66 }); // the griefer
      await s.post('/request', { action: 1, index: 2, category: 66 });
      const bad = (await s.post('/s3dump')).json.backup;
      const list = await s.call('/backups', { auth: AUTH });
      assert.equal(list.status, 200);
      assert.deepEqual(list.json.backups.map((b: { name: string }) => b.name).slice(0, 2), [bad.name, good.name], 'then the first boot\'s');
      assert.deepEqual(Object.keys(list.json.backups[0]).sort(), ['bytes', 'compressedBytes', 'createdAt', 'name', 'sha256']);
      const restored = await s.call('/restore', { method: 'POST', body: { name: good.name }, auth: AUTH });
      assert.equal(restored.status, 200, restored.text);
      assert.equal(restored.json.restored.name, good.name);
      assert.equal((await s.post('/request', { index: 1 })).json.category, 1);
      assert.equal((await s.post('/request', { index: 2 })).json.category, 0);
      assert.equal((await s.app.close()).outcome, 'written', 'the restore is a change, shipped at shutdown');
      const b = await startServer(t, fixture);
      assert.equal((await b.post('/request', { index: 1 })).json.category, 1);
      assert.equal((await b.post('/request', { index: 2 })).json.category, 0);
    });
  }

  test('POST /restore: unknown name 404, bad body 400, no credentials 401; the world is untouched', async (t) => {
    const s = await startServer(t, await openFileStore(t));
    await s.post('/request', { action: 1, index: 1, category: 5 });
    const unknown = await s.call('/restore', { method: 'POST', body: { name: 'nope' }, auth: AUTH });
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.error, /no kept backup/);
    for (const body of ['{}', '{"name":5}', '[]', 'x', '']) {
      assert.equal((await s.call('/restore', { method: 'POST', body, auth: AUTH })).status, 400, body);
    }
    assert.equal((await s.call('/restore', { method: 'POST', body: { name: 'x' } })).status, 401);
    assert.equal((await s.call('/backups')).status, 401);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 5);
  });
});
