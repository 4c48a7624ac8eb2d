/** POST /s3dump?async=1: a backup started at once and reported by /healthcheck, end to end. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BlobStore } from '../lib/store.js';
import { AUTH, commitFromElsewhere, openFileStore, startServer, TEST_CELLS } from './support/app.js';
import { waitFor } from './support/http.js';
import { storeWith } from './support/store.js';

/** `store` with its backup uploads (puts under backups/) held until `release()`, or failing while `failing` is set. */
function gatedStore(store: BlobStore) {
  let open!: () => void;
  let gate = new Promise<void>((resolve) => { open = resolve; });
  const control = {
    held: 0,
    failing: false,
    release: () => open(),
    booted: false,
    store: storeWith(store, {
      async put(key, body) {
        if (key.includes('/backups/') && control.booted) {
          control.held++;
          await gate;
          if (control.failing) throw Object.assign(new Error('injected'), { name: 'InjectedFailure' });
        }
        return store.put(key, body);
      },
    }),
  };
  return control;
}

describe('POST /s3dump?async=1', () => {
  test('answers 202 at once, while the upload is still held, and the backup commits afterwards', async (t) => {
    const fixture = await openFileStore(t);
    const gated = gatedStore(fixture.store);
    const s = await startServer(t, { ...fixture, store: gated.store });
    gated.booted = true; // the first boot's snapshot went through
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
    assert.equal((await s.call('/backups', { auth: AUTH })).json.backups.length, 2, 'the first boot\'s, and one for the two requests');
  });

  test('a backup that fails: still 202, and the failure is what /healthcheck shows', async (t) => {
    const fixture = await openFileStore(t);
    const gated = gatedStore(fixture.store);
    gated.failing = true;
    gated.release();
    const s = await startServer(t, { ...fixture, store: gated.store });
    gated.booted = true;
    await s.post('/request', { action: 1, index: 5, category: 5 });
    assert.equal((await s.post('/s3dump?async=1')).status, 202);
    const backup = await waitFor('the failure in /healthcheck', async () => {
      const b = (await s.call('/healthcheck')).json.backup;
      return b.consecutiveFailures > 0 && !b.inProgress ? b : undefined;
    });
    assert.match(backup.lastError.error, /InjectedFailure|injected/);
    assert.equal(backup.unsavedChanges, false, 'the change it covers was shipped first, as a change set');
  });

  test('needs credentials; the plain POST /s3dump stays synchronous; fenced is a 503 at once, as every write route', async (t) => {
    const fixture = await openFileStore(t);
    const a = await startServer(t, fixture);
    assert.equal((await a.call('/s3dump?async=1', { method: 'POST', body: {} })).status, 401);
    await a.post('/request', { action: 1, index: 1, category: 1 });
    const sync = await a.post('/s3dump');
    assert.equal(sync.status, 200);
    assert.equal(sync.json.backup.bytes, TEST_CELLS * 4, 'the plain form answers with the committed backup');
    await commitFromElsewhere(fixture); // another server took the prefix over
    await a.post('/request', { action: 1, index: 1, category: 2 });
    assert.equal((await a.post('/s3dump')).status, 503);
    const fenced = await a.post('/s3dump?async=1');
    assert.equal(fenced.status, 503);
    assert.match(fenced.json.error, /another server/);
  });
});
