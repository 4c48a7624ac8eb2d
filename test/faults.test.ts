/**
 * S3 failures end to end: the real S3 test server behind test/support/fault-proxy.ts, which refuses, stalls,
 * answers 503, resets uploads mid-way or slows traffic. The app talks to S3 through the proxy; a direct store
 * on the same prefix prepares and inspects what is really in the bucket.
 */
import assert from 'node:assert/strict';
import { randomFillSync } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, test, type TestContext } from 'node:test';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { createApp, type App } from '../lib/app.js';
import { decodeBackup } from '../lib/backup/backup-format.js';
import { memoryLog, silentLog } from './support/log.js';
import { createS3Client } from '../lib/s3-client.js';
import { assertBootRefusal, AUTH, startServer, TEST_CELLS, type StoreFixture } from './support/app.js';
import type { Fault } from './support/fault-proxy.js';
import { waitFor } from './support/http.js';
import { rig, type Rig } from './support/s3-rig.js';

/** 16 MiB: above the S3Store's 8 MiB part size once gzip fails to shrink random cells, so backups go multipart. */
const BIG_CELLS = 4 * 1024 * 1024;
const MiB = 1024 * 1024;


/** `promise`, or a rejection naming `what` if it has not settled within `ms` (the deadline timer is cleared either way). */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  const deadline = new AbortController();
  const late = sleep(ms, undefined, { signal: deadline.signal }).then(() => { throw new Error(`${what} still pending after ${ms} ms`); });
  late.catch(() => undefined);
  try {
    return await Promise.race([promise, late]);
  } finally {
    deadline.abort();
  }
}

/** An app on `fixture` that is not started (for boots expected to fail). */
function bareApp(fixture: StoreFixture, cells = TEST_CELLS): App {
  return createApp({
    cells, auth: AUTH, store: fixture.store, prefix: fixture.prefix, legacyKey: `${fixture.prefix}data.bin`,
    backupRetain: 24, backupIntervalMs: 0, log: silentLog,
  });
}

/** A committed backup under the rig's prefix holding cell 7 = {9, 1, 2, 3}, made without the proxy. */
async function seedBackup(t: TestContext, r: Rig): Promise<void> {
  const a = await startServer(t, r.direct);
  assert.equal((await a.post('/request', { action: 1, index: 7, category: 9, rotation: 1, sideA: 2, sideB: 3 })).status, 200);
  assert.equal((await a.app.close()).outcome, 'written');
}

describe('S3 down at boot', () => {
  const cases: Array<[string, Fault, RegExp]> = [
    ['connections refused', { kind: 'refuse' }, /ECONNRESET|socket hang up/],
    ['503 answers', { kind: 'status', status: 503 }, /ServiceUnavailable|HTTP 503/],
    ['a stalled S3', { kind: 'stall' }, /TimeoutError|requestTimeout/],
  ];
  for (const [label, fault, cause] of cases) {
    test(`${label}: boot refuses while a backup exists, and writes nothing`, async (t) => {
      const r = await rig(t);
      await seedBackup(t, r);
      const before = await r.direct.store.list(r.direct.prefix);
      r.proxy.set(fault);
      const app = bareApp(r.proxied);
      await assertBootRefusal(app, app.start(0, '127.0.0.1'), cause);
      assert.ok(r.proxy.counts.faulted > 0, 'the app reached S3 through the proxy, and the fault hit it');
      assert.deepEqual(await app.close(), { outcome: 'unchanged' }, 'no final backup of an empty world');
      r.proxy.set({ kind: 'pass' }); // S3 back (stalled sockets dropped) for the checks below
      assert.deepEqual(await r.direct.store.list(r.direct.prefix), before, 'nothing written to the prefix');
      const b = await startServer(t, r.direct);
      assert.equal((await b.post('/request', { index: 7 })).json.category, 9, 'the backup is intact');
    });
  }

  test('the production client (lib/s3-client.ts) bounds a stalled S3: boot, /s3dump and shutdown fail instead of hanging', async (t) => {
    // Production's timeouts scaled down; what matters is that they abort at all (a bare requestTimeout only warns).
    const timeouts = { connectMs: 1000, idleMs: 500, requestMs: 1000 };
    const r = await rig(t, (server, endpoint) => createS3Client({
      forcePathStyle: true,
      timeouts,
      extra: {
        endpoint, region: 'us-east-1', maxAttempts: 2,
        credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
      },
    }));
    await seedBackup(t, r);
    // Two attempts of at most 1 s each, plus backoff: 8 s is generous. A bound, not a synchronisation.
    const BOUND_MS = 8000;

    r.proxy.set({ kind: 'stall' });
    const refused = bareApp(r.proxied);
    await assertBootRefusal(refused, within(BOUND_MS, 'boot', refused.start(0, '127.0.0.1')), /TimeoutError/);
    await refused.close();

    r.proxy.set({ kind: 'pass' });
    const s = await startServer(t, r.proxied);
    await s.post('/request', { action: 1, index: 8, category: 8 });
    r.proxy.set({ kind: 'stall' });
    const dump = await within(BOUND_MS, '/s3dump', s.post('/s3dump'));
    assert.equal(dump.status, 502, dump.text);
    const final = await within(BOUND_MS, 'close()', s.app.close());
    assert.equal(final.outcome, 'failed', 'the final backup failed in bounded time');
  });
});

describe('S3 down during scheduled backups', () => {
  // The lease (issue 18) lives in the same store: a leader that cannot renew it must stop acknowledging writes
  // before another server may take over. So reads go on through an outage; writes wait for the lease, and
  // once it has lapsed a whole term new ones are refused (503, nothing written); all resume when S3 is back.
  test('reads go on, writes wait and are then refused, health reports the failures, and all catch up once S3 is back', async (t) => {
    const r = await rig(t);
    const log = memoryLog();
    const s = await startServer(t, r.proxied, { backupIntervalMs: 200, log });
    const written = new Map<number, number>();
    const write = async (index: number) => {
      const category = 1 + (index % 250);
      const answer = await s.post('/request', { action: 1, index, category });
      assert.equal(answer.status, 200, answer.text);
      written.set(index, category);
    };
    const health = async (query = '') => {
      const answer = await s.call(`/healthcheck${query}`);
      if (query === '') assert.equal(answer.status, 200, `plain /healthcheck stays 200: ${answer.text}`);
      return answer;
    };

    await write(1);
    await waitFor('the first write saved by the schedule', async () => {
      const { backup } = (await health()).json;
      return backup.unsavedChanges === false && backup.lastBackup !== null;
    });
    assert.equal((await health('?backup=1')).status, 200, 'strict health: nothing unsaved');

    await write(2); // unsaved when the outage begins
    r.proxy.set({ kind: 'status', status: 503 });
    const outageStarted = Date.now();
    const early = await health('?backup=1');
    if (Date.now() - Date.parse(early.json.backup.unsavedSince) < 500) {
      assert.equal(early.status, 200, 'strict health tolerates unsaved changes younger than three intervals');
    }
    assert.equal((await s.post('/request', { index: 2 })).json.category, 3, 'reads go on');

    const failing = await waitFor('two consecutive scheduled backup failures', async () => {
      const { backup } = (await health()).json;
      return backup.consecutiveFailures >= 2 && backup.lastError !== null && backup;
    });
    assert.match(failing.lastError.error, /ServiceUnavailable|HTTP 503/);
    assert.equal(failing.unsavedChanges, true);
    // A write waits while the lease is not renewed; one sent after a whole term without a renewal is refused.
    const waiting = s.post('/request', { action: 1, index: 3, category: 4 });
    await waitFor('the lease lapsed a whole term', async () => (s.app.backups.role.status().leaseLapsedMs ?? 0) > 2000);
    const refused = await s.post('/request', { action: 1, index: 4, category: 5 });
    assert.equal(refused.status, 503, refused.text);
    assert.match(refused.json.error, /has not renewed its lease/);
    assert.equal((await s.post('/request', { index: 4 })).json.category, 0, 'the refused write wrote nothing');
    let next = 5;

    const strict = await waitFor('strict health to fail after three intervals of unsaved changes', async () => {
      const answer = await health('?backup=1');
      return answer.status === 503 ? answer : undefined;
    });
    assert.ok(Date.now() - outageStarted >= 600, 'not before three intervals (600 ms)');
    assert.equal(strict.json.status, 503);
    assert.match(strict.json.error, /unsaved changes for [\d.]+ s .*last backup error: .*(ServiceUnavailable|HTTP 503)/);

    const dump = await s.post('/s3dump');
    assert.equal(dump.status, 502, dump.text);
    assert.equal(dump.headers['content-type'], 'application/json');
    assert.equal(dump.json.status, 502);
    assert.match(dump.json.error, /backup store failed/);

    const failures = log.events.filter((e) => e.event === 'backup_failed');
    assert.ok(failures.length >= 2, `backup_failed logged: ${failures.length}`);
    assert.ok(failures.every((e) => e.level === 'error'));
    assert.ok(failures.some((e) => e.reason === 'schedule'));
    assert.ok(failures.some((e) => e.reason === 'request'));

    r.proxy.set({ kind: 'pass' });
    const recoveredFrom = log.events.length;
    assert.equal((await waiting).status, 200, 'the write that waited for the lease is acknowledged once it is renewed');
    written.set(3, 4);
    await waitFor('the lease renewed', async () => s.app.backups.role.status().leaseLapsedMs === undefined);
    await write(next++);
    const newest = next - 1;
    const recovered = await waitFor('a scheduled backup of the newest state', async () => {
      const { backup } = (await health()).json;
      return backup.unsavedChanges === false && backup.consecutiveFailures === 0 && backup;
    });
    assert.ok(log.events.slice(recoveredFrom).some((e) => e.event === 'backup_committed' && e.reason === 'schedule'),
      'the schedule, not a request, wrote it');
    assert.equal(recovered.unsavedSince, null);
    assert.equal((await health('?backup=1')).status, 200, 'strict health passes again');
    t.diagnostic(`outage: ${failing.consecutiveFailures}+ consecutive failures; newest cell ${newest}`);

    assert.deepEqual(await s.app.close(), { outcome: 'unchanged' }, 'nothing left for the final backup');
    const fresh = await startServer(t, r.direct);
    for (const [index, category] of written) {
      assert.equal((await fresh.post('/request', { index })).json.category, category, `cell ${index}`);
    }
  });
});

describe('writes during scheduled backups', () => {
  // Under steady writes the world is never clean after a commit: unsavedSince must move to the first write
  // after the committed snapshot, or the strict health check would alarm while every backup commits.
  test('strict health counts only writes no committed backup holds',
    async (t) => {
      const r = await rig(t);
      const log = memoryLog();
      const s = await startServer(t, r.proxied, { backupIntervalMs: 200, log });
      const commits = () => log.events.filter((e) => e.event === 'backup_committed' && e.reason === 'schedule').length;
      const stale: string[] = [];
      let strict503: string | undefined;
      let i = 0;
      // A steady writer (as a busy game is): some writes land while each backup uploads.
      await waitFor('eight scheduled backups under steady writes', async () => {
        assert.equal((await s.post('/request', { action: 1, index: i++ % TEST_CELLS, category: 1 })).status, 200);
        if (i % 5 === 0) {
          const health = await s.call('/healthcheck?backup=1');
          const { unsavedSince, lastBackup, unsavedChanges } = health.json.backup;
          // Everything written before the last backup's snapshot is in it: the oldest unsaved write is younger.
          if (unsavedChanges && lastBackup && Date.parse(unsavedSince) < Date.parse(lastBackup.createdAt)) {
            stale.push(`unsavedSince ${unsavedSince} < last backup's snapshot ${lastBackup.createdAt}`);
          }
          if (health.status === 503) strict503 ??= health.json.error;
        }
        return commits() >= 8;
      });
      assert.equal(log.events.filter((e) => e.event === 'backup_failed').length, 0, 'every backup committed');
      t.diagnostic(`${i} writes, ${commits()} scheduled backups; stale unsavedSince seen ${stale.length} times; strict health 503: ${strict503 ?? 'never'}`);
      assert.deepEqual(stale.slice(0, 3), [], 'unsavedSince is never older than the last committed snapshot');
      assert.equal(strict503, undefined, 'strict health stays 200 while every scheduled backup commits');
    });
});

describe('a connection reset in the middle of a multipart upload', () => {
  test('the torn upload is never committed, never restored, and leaves no object or parts behind', async (t) => {
    const r = await rig(t);
    const big = { cells: BIG_CELLS };
    const log = memoryLog();
    // Shipping off: the last write must still be unsaved at shutdown, so that the final backup is what the refused S3 fails.
    const s = await startServer(t, r.proxied, { ...big, log, shipIntervalMs: 0 });
    randomFillSync(s.app.cube.bytes); // random cells: gzip cannot shrink them below the part size
    s.app.cube.loaded(); // written straight into the array: the cube recounts, and its snapshots read every slice
    await s.post('/request', { action: 1, index: 5, category: 5 });
    const good = await s.post('/s3dump');
    assert.equal(good.status, 200, good.text);
    assert.ok(good.json.backup.compressedBytes > 8 * MiB, `multipart: ${good.json.backup.compressedBytes} bytes`);
    const goodBytes = Buffer.from(s.app.cube.bytes); // a copy: nothing wrote since the snapshot

    randomFillSync(s.app.cube.bytes, 0, MiB);
    s.app.cube.loaded(); // written straight into the array: the cube recounts, and its snapshots read every slice
    await s.post('/request', { action: 1, index: 5, category: 6 });
    r.proxy.set({ kind: 'reset-after', bytes: 2 * MiB });
    const faultedBefore = r.proxy.counts.faulted;
    const torn = await s.post('/s3dump');
    assert.equal(torn.status, 502, torn.text);
    assert.match(torn.json.error, /backup store failed/);
    assert.ok(r.proxy.counts.faulted > faultedBefore, 'the upload was cut mid-way');
    const failed = log.events.find((e) => e.event === 'backup_failed');
    const cause = failed?.err as { code?: string; message?: string } | undefined;
    assert.ok(cause && (/ECONNRESET|EPIPE/.test(cause.code ?? '') || /socket hang up/.test(cause.message ?? '')), `failed on the reset: ${JSON.stringify(cause)}`);
    assert.equal((await s.post('/request', { index: 5 })).json.category, 6, 'still serving the newer world');

    r.proxy.set({ kind: 'refuse' });
    const final = await s.app.close();
    assert.equal(final.outcome, 'unchanged', 'the write went to the store as a change set before the torn upload began');

    // What is in the bucket: every commit names an object that exists and decodes; no other object; no parts.
    const prefix = r.direct.prefix;
    const commits = await r.direct.store.list(`${prefix}commits/`);
    assert.ok(commits.length >= 1, 'the good backup is committed');
    const referenced = new Set<string>();
    for (const key of commits) {
      const manifest = JSON.parse(Buffer.from((await r.direct.store.get(key))!).toString('utf8'));
      if (manifest.kind !== 'snapshot') continue; // the change sets each snapshot ships first
      const body = await r.direct.store.get(manifest.key);
      assert.ok(body, `${key} names ${manifest.key}, which exists`);
      await decodeBackup(body, manifest.bytes, manifest.sha256);
      referenced.add(manifest.key);
    }
    assert.ok(referenced.has(`${prefix}backups/${good.json.backup.name}.gz`), 'the good backup is committed');
    assert.deepEqual(await r.direct.store.list(`${prefix}backups/`), [...referenced].sort(), 'no stray backup object');
    const uploads = await r.direct.client.send(new ListMultipartUploadsCommand({ Bucket: r.direct.bucket, Prefix: prefix }));
    assert.deepEqual((uploads.Uploads ?? []).map((u) => u.Key), [], 'the torn multipart upload was aborted');

    const restored = await startServer(t, r.direct, big);
    const health = await restored.call('/healthcheck');
    assert.deepEqual(health.json.backup.restoredFrom, { kind: 'backup', name: good.json.backup.name });
    const expected = Buffer.from(goodBytes);
    expected.set([6, 0, 0, 0], 5 * 4); // and the change set of the write made before the torn upload
    assert.ok(Buffer.from(restored.app.cube.bytes).equals(expected), 'the world is the good backup and the change after it, byte for byte');
  });
});

describe('a slow S3', () => {
  test('keeps answering requests, right, while a backup is uploading', async (t) => {
    const r = await rig(t);
    const s = await startServer(t, r.proxied, { cells: BIG_CELLS });
    randomFillSync(s.app.cube.bytes);
    s.app.cube.loaded(); // written straight into the array: the cube recounts, and its snapshots read every slice
    await s.post('/request', { action: 1, index: 1, category: 1 });

    /** 200 sequential /request (a write, then its read-back), each one timed. */
    const measure = async (what: string) => {
      const latencies: number[] = [];
      for (let i = 0; i < 200; i++) {
        const index = 1000 + (i >> 1);
        const started = performance.now();
        const answer = i % 2 === 0
          ? await s.post('/request', { action: 1, index, category: 1 + (i % 250), sideB: 7 })
          : await s.post('/request', { index });
        latencies.push(performance.now() - started);
        assert.equal(answer.status, 200, `${what}, request ${i}: ${answer.text}`);
        assert.equal(answer.json.sideB, 7, `${what}, request ${i} reads back its write`);
      }
      const sorted = latencies.sort((a, b) => a - b);
      const max = sorted.at(-1)!;
      return { max, text: `p50 ${sorted[100]!.toFixed(1)} ms, p99 ${sorted[198]!.toFixed(1)} ms, max ${max.toFixed(1)} ms` };
    };
    const idle = await measure('no backup running');

    // 100 ms each way: a backup's upload is slow, while the lease's renewals (two requests every 600 ms) still
    // land within its 1.8 s (300 ms each way could not keep a 2 s lease: README, "What each event costs").
    r.proxy.set({ kind: 'delay', ms: 100 });
    const upAtStart = r.proxy.counts.bytesUp;
    let dumpSettled = false;
    const dump = s.post('/s3dump').finally(() => { dumpSettled = true; });
    // Compressing 16 MiB comes first: measure once the upload itself is on the slow wire.
    await waitFor('the backup\'s upload to be under way through the delay', () => r.proxy.counts.bytesUp - upAtStart > MiB, 20_000, 5);
    const upBefore = r.proxy.counts.bytesUp;
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const during = await measure('during the upload');
    loopDelay.disable();
    const inFlight = !dumpSettled;
    const upDuring = r.proxy.counts.bytesUp - upBefore;

    r.proxy.set({ kind: 'pass' }); // later S3 traffic of this dump (and the final backup) goes at full speed
    const result = await dump;
    t.diagnostic(`200 sequential /request with no backup: ${idle.text}; during a /s3dump delayed 300 ms per chunk ` +
      `(${(upDuring / MiB).toFixed(1)} MiB went up meanwhile): ${during.text}; event-loop delay meanwhile max ` +
      `${(loopDelay.max / 1e6).toFixed(1)} ms; dump ${result.status}${result.status === 200 ? ` in ${result.json.backup.durationMs} ms` : ''}`);
    assert.ok(inFlight, 'the dump was still in flight when the 200th request answered');
    assert.ok(upDuring > 0, 'the upload moved while the requests ran');
    // How slow they were is a figure for bench/backup.ts (p99 with and without backups), not a limit here.
    assert.equal(result.status, 200, `the dump completes once S3 is fast again: ${result.text}`);
  });
});
