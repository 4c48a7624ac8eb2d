/** lib/backup/schedule.ts: the loop every background job runs, and the mutex; then scheduled snapshots, end to end. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { every, Mutex } from '../lib/backup/schedule.js';
import { openFileStore, startServer, waitForShipped } from './support/app.js';
import { waitFor } from './support/http.js';
import { memoryLog, silentLog } from './support/log.js';

/** A promise and the function that resolves it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => { open = resolve; });
  return { opened, open };
}

describe('every', () => {
  test('runs its step each interval until aborted; abort ends the wait at once, and the loop resolves', async () => {
    const controller = new AbortController();
    let steps = 0;
    const loop = every(() => 5, async () => { steps++; }, controller.signal, silentLog, 'tick');
    await waitFor('three steps', () => steps >= 3);
    // An hour's interval now: the loop ends only if abort ends its wait.
    const stopped = every(() => 3_600_000, async () => { steps++; }, controller.signal, silentLog, 'idle');
    controller.abort();
    await Promise.all([loop, stopped]);
    const after = steps;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(steps, after, 'no step after the loop resolved');
  });

  test('cancel-and-wait: a step running when the loop is aborted finishes before the loop resolves, and no step follows', async () => {
    const controller = new AbortController();
    const inStep = gate();
    const release = gate();
    let steps = 0;
    let finished = false;
    const loop = every(() => 1, async () => {
      steps++;
      inStep.open();
      await release.opened;
      finished = true;
    }, controller.signal, silentLog, 'job');
    let resolved = false;
    const done = loop.then(() => { resolved = true; });
    await inStep.opened;
    controller.abort();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(resolved, false, 'the loop waits for its running step');
    release.open();
    await done;
    assert.ok(finished);
    assert.equal(steps, 1);
  });

  test('a failing step is retried after a second, not after the interval, and each failure is logged', async () => {
    const controller = new AbortController();
    const log = memoryLog();
    let calls = 0;
    // The first wait is short; after it the interval is an hour, so only the retry rule brings the second call.
    const loop = every(() => (calls === 0 ? 1 : 3_600_000), async () => {
      calls++;
      throw new Error(`failure ${calls}`);
    }, controller.signal, log, 'ship');
    await waitFor('the retry', () => calls >= 2);
    controller.abort();
    await loop;
    const retries = log.events.filter((e) => e.event === 'ship_retry');
    assert.deepEqual(retries.slice(0, 2).map((e) => [e.level, e.failures, e.message]), [['warn', 1, 'failure 1'], ['warn', 2, 'failure 2']]);
  });
});

describe('Mutex', () => {
  test('runs tasks one at a time, in the order they asked; a failing task fails its caller only', async () => {
    const mutex = new Mutex();
    const order: string[] = [];
    const first = gate();
    const a = mutex.run(async () => { order.push('a starts'); await first.opened; order.push('a ends'); return 'a'; });
    const b = mutex.run(async () => { order.push('b'); throw new Error('b failed'); });
    const c = mutex.run(async () => { order.push('c'); return 'c'; });
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(order, ['a starts'], 'b and c wait for a');
    first.open();
    assert.equal(await a, 'a');
    await assert.rejects(b, /b failed/);
    assert.equal(await c, 'c');
    assert.deepEqual(order, ['a starts', 'a ends', 'b', 'c']);
  });
});

describe('scheduled snapshots, end to end', () => {
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

  test('interval 0: no scheduled snapshot, while shipping still saves the changes', async (t) => {
    const s = await startServer(t, await openFileStore(t), { backupIntervalMs: 0 });
    await s.post('/request', { action: 1, index: 1, category: 1 });
    await waitForShipped(s);
    assert.equal(s.app.backups.status().skippedUnchanged, 0, 'the schedule never ticked');
    assert.equal(s.app.backups.status().backupsTotal, 0, 'no snapshot');
    assert.equal((await s.call('/healthcheck')).json.backup.intervalSeconds, 0);
  });
});
