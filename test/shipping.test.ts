/** Changes shipped to the store every cadence: outages, a second writer, an unwritable log, leftovers of a crash. */
import assert from 'node:assert/strict';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { createApp } from '../lib/app.js';
import { RestoreError } from '../lib/backup/backups.js';
import { AUTH, commitFromElsewhere, openFileStore, openWalDir, startServer, TEST_CELLS, waitForShipped, type StoreFixture } from './support/app.js';
import { call, waitFor } from './support/http.js';
import { silentLog } from './support/log.js';
import { splittingInstant } from './support/model.js';
import { storeWith } from './support/store.js';
import { openTinyDisk } from './support/tiny-disk.js';
import { rig } from './support/s3-rig.js';
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand, ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../lib/s3-client.js';


const write = (index: number, category: number) => ({ action: 1, index, category });

describe('shipping changes', () => {
  test('S3 down for a while: writes are acknowledged and kept in the log, strict health fails, and they are shipped on recovery', async (t) => {
    const r = await rig(t);
    const wal = { dir: await openWalDir(t), sync: 'write' as const };
    const s = await startServer(t, r.proxied, { wal, shipIntervalMs: 100 });
    assert.equal((await s.post('/request', write(1, 1))).status, 200);
    await waitForShipped(s, 'the first write shipped')
    r.proxy.set({ kind: 'status', status: 503 });
    for (let i = 2; i <= 40; i++) assert.equal((await s.post('/request', write(i, i))).status, 200, 'acknowledged while S3 is down');
    const failing = await waitFor('strict health failing', async () => {
      const health = await s.call('/healthcheck?backup=1');
      return health.status === 503 ? health : undefined;
    });
    assert.match(failing.json.error, /unsaved changes .*ServiceUnavailable|HTTP 503/);
    assert.ok(failing.json.backup.shipConsecutiveFailures >= 1);
    r.proxy.set({ kind: 'pass' });
    await waitFor('everything shipped once S3 is back', async () => (await s.call('/healthcheck?backup=1')).status === 200 && !(await s.call('/healthcheck')).json.backup.unsavedChanges);
    await s.app.close();
    // The instance is gone (its log with it): the store alone holds every write.
    await rm(wal.dir, { recursive: true, force: true });
    const b = await startServer(t, r.direct, { wal: { dir: await openWalDir(t), sync: 'write' } });
    for (const i of [1, 2, 39, 40]) assert.equal((await b.post('/request', { index: i })).json.category, i);
  });

  test('another writer took the prefix: the old server answers writes 503 within a cadence instead of acknowledging what it cannot ship', async (t) => {
    // A second server on a live prefix is its standby (issue 18); a foreign commit is what a server that took
    // over while this one was cut off would leave, and the commit chain still fences it.
    const fixture = await openFileStore(t);
    const a = await startServer(t, fixture, { shipIntervalMs: 50 });
    assert.equal((await a.post('/request', write(1, 1))).status, 200);
    await waitForShipped(a, 'the first write shipped');
    await commitFromElsewhere(fixture);
    const refused = await waitFor('the old server refusing writes', async () => {
      const answer = await a.post('/request', write(2, 2));
      return answer.status === 503 ? answer : undefined;
    });
    assert.match(refused.json.error, /another server committed/);
    assert.ok((await a.call('/healthcheck')).json.backup.fenced, 'health says so');
    assert.equal((await a.call('/healthcheck?backup=1')).status, 503);
    assert.equal((await a.post('/request', { index: 1 })).status, 200, 'reads go on');
  });

  test('a log folder that cannot be created refuses the start, naming the folder', async (t) => {
    const fixture = await openFileStore(t);
    const file = join(fixture.dir, 'not-a-folder');
    await writeFile(file, 'x');
    const app = createApp({ cells: TEST_CELLS, auth: AUTH, store: fixture.store, prefix: fixture.prefix, legacyKey: '', backupRetain: 24, backupIntervalMs: 0, log: silentLog, wal: { dir: join(file, 'wal'), sync: 'write' } });
    await assert.rejects(app.start(0, '127.0.0.1'), (err: unknown) => err instanceof RestoreError && /write-ahead log .*not-a-folder.*ENOTDIR/.test(err.message));
    assert.equal(app.server.listening, false);
    await app.close();
  });

  test('two servers cannot share one log folder: the second is refused at start', async (t) => {
    const fixture = await openFileStore(t);
    const other = await openFileStore(t);
    const wal = { dir: await openWalDir(t), sync: 'write' as const };
    await startServer(t, fixture, { wal });
    const app = createApp({ cells: TEST_CELLS, auth: AUTH, store: other.store, prefix: other.prefix, legacyKey: '', backupRetain: 24, backupIntervalMs: 0, log: silentLog, wal });
    await assert.rejects(app.start(0, '127.0.0.1'), (err: unknown) => err instanceof RestoreError && /in use by process \d+/.test(err.message));
    await app.close();
  });

  test('a temp file left by a crashed upload is removed at boot; one begun after the boot (another writer\'s, in flight) is not', async (t) => {
    const fixture: StoreFixture & { dir: string } = await openFileStore(t);
    const folder = join(fixture.dir, fixture.prefix, 'backups');
    await mkdir(folder, { recursive: true });
    const stale = '20200101T000000000Z-deadbeef.gz.abcdef.tmp';
    await writeFile(join(folder, stale), 'half an upload');
    // Named, as uploads are, by the time it began (this server's clock): a minute after the boot.
    const fresh = `${new Date(Date.now() + 60_000).toISOString().replace(/[-:.]/g, '')}-feedface.gz.123456.tmp`;
    await writeFile(join(folder, fresh), 'uploading');
    const s = await startServer(t, fixture);
    await waitFor('the stale temp file removed', async () => !(await readdir(folder)).includes(stale));
    assert.ok((await readdir(folder)).includes(fresh));
    await s.app.close();
  });

  test('boot replays the change sets after the newest snapshot, across a compaction', async (t) => {
    const fixture = await openFileStore(t);
    const a = await startServer(t, fixture, { shipIntervalMs: 30 });
    for (let i = 0; i < 20; i++) assert.equal((await a.post('/request', write(i, i + 1))).status, 200);
    await waitForShipped(a)
    assert.equal((await a.post('/s3dump')).status, 200);
    for (let i = 20; i < 30; i++) assert.equal((await a.post('/request', write(i, i + 1))).status, 200);
    await waitForShipped(a, 'shipped after the snapshot')
    const commits = await fixture.store.list(`${fixture.prefix}commits/`);
    assert.ok(commits.length >= 2, `${commits.length} commits: the snapshot and the change sets after it`);
    // Kill it without a shutdown: the next server has a log of its own, so the store must hold everything shipped.
    await a.app.server.close();
    const b = await startServer(t, fixture);
    for (let i = 0; i < 30; i++) assert.equal((await b.post('/request', { index: i })).json.category, i + 1, `cell ${i}`);
  });

  test('a commit whose reply is lost: the retry finds it landed, the change set is in the store once, nothing acknowledged is lost', async (t) => {
    const r = await rig(t);
    const wal = { dir: await openWalDir(t), sync: 'write' as const };
    const s = await startServer(t, r.proxied, { wal, shipIntervalMs: 100 });
    assert.equal((await s.post('/request', write(1, 1))).status, 200);
    await waitForShipped(s)
    const before = (await r.direct.store.list(`${r.direct.prefix}commits/`)).length;
    r.proxy.set({ kind: 'lose-replies', count: 1 }); // the commit lands, its reply is lost; the SDK's retry then finds the key taken
    for (let i = 2; i <= 10; i++) assert.equal((await s.post('/request', write(i, i))).status, 200);
    await waitFor('the lost reply', () => r.proxy.counts.faulted >= 1);
    await waitForShipped(s, 'shipped once the replies come back')
    await s.app.close();
    const keys = await r.direct.store.list(`${r.direct.prefix}commits/`);
    const names = [];
    for (const key of keys.slice(before)) names.push(JSON.parse(Buffer.from((await r.direct.store.get(key))!).toString()).name);
    assert.equal(new Set(names).size, names.length, `no change set committed twice: ${names.join(', ')}`);
    await rm(wal.dir, { recursive: true, force: true }); // from the store alone
    const b = await startServer(t, r.direct, { wal: { dir: await openWalDir(t), sync: 'write' } });
    for (let i = 1; i <= 10; i++) assert.equal((await b.post('/request', { index: i })).json.category, i);
  });

  test('a stalled S3: shipping fails in bounded time, shutdown ends within its deadline, and the log keeps the changes for the next start', async (t) => {
    const timeouts = { connectMs: 1000, idleMs: 500, requestMs: 1000 }; // production's, scaled down
    const r = await rig(t, (server, endpoint) => createS3Client({
      forcePathStyle: true, timeouts,
      extra: {
        endpoint, region: 'us-east-1', maxAttempts: 2, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
        requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED',
      },
    }));
    const wal = { dir: await openWalDir(t), sync: 'write' as const };
    const s = await startServer(t, r.proxied, { wal, shipIntervalMs: 100 });
    r.proxy.set({ kind: 'stall' });
    for (let i = 1; i <= 5; i++) assert.equal((await s.post('/request', write(i, i))).status, 200, 'acknowledged: the log has it');
    await waitFor('a failed shipment', async () => (await s.call('/healthcheck')).json.backup.shipConsecutiveFailures >= 1, 10_000);
    const started = Date.now();
    const final = await s.app.close();
    assert.equal(final.outcome, 'failed');
    assert.ok(Date.now() - started < 30_000, `shutdown took ${Date.now() - started} ms`);
    r.proxy.set({ kind: 'pass' });
    const b = await startServer(t, r.proxied, { wal, shipIntervalMs: 100 });
    for (let i = 1; i <= 5; i++) assert.equal((await b.post('/request', { index: i })).json.category, i, `cell ${i} from the log`);
    await waitForShipped(b, 'shipped after the restart')
  });

  test('a disk that cannot take the log (full): writes answer 503 and change nothing, reads go on, health says why, and writes resume when it has room', async (t) => {
    const disk = await openTinyDisk(t, { bytes: 512 * 1024 });
    if (!disk) return;
    const fixture = await openFileStore(t);
    const s = await startServer(t, fixture, { wal: { dir: join(disk.dir, 'wal'), sync: 'write', retryMs: 50 } });
    assert.equal((await s.post('/request', write(1, 1))).status, 200);
    await disk.fill();
    // A range of 8 KiB needs pages the full disk does not have (a single cell may still fit the segment's last page).
    const failed = await s.call('/cells?start=100', { method: 'PUT', body: new Uint8Array(8192).fill(2), auth: AUTH });
    assert.equal(failed.status, 503, failed.text);
    assert.match(failed.json.error, /could not be written to the log \(.*no space left/i);
    const refused = await s.post('/request', write(3, 3));
    assert.equal(refused.status, 503);
    assert.match(refused.json.error, /write-ahead log cannot be written \(ENOSPC\)/);
    assert.equal((await s.post('/request', { index: 3 })).json.category, 0, 'a refused write changes nothing');
    assert.equal((await s.post('/request', { index: 1 })).status, 200, 'reads go on');
    const health = await s.call('/healthcheck?backup=1');
    assert.equal(health.status, 503);
    assert.match(health.json.error, /write-ahead log cannot be written/);
    assert.match((await s.call('/healthcheck')).json.backup.log.failure, /ENOSPC/);
    await new Promise((r) => setTimeout(r, 300)); // six retries: each finds the disk still full
    assert.equal((await s.post('/request', write(3, 3))).status, 503, 'still refused while the disk is full');
    await disk.free();
    await waitFor('writes taken again', async () => (await s.post('/request', write(4, 4))).status === 200);
    assert.equal((await s.call('/healthcheck?backup=1')).status, 200);
  });

  test('a log segment that cannot be started (no inode left): writes answer 503 instead of hanging, health says why, and writes resume once it can be', async (t) => {
    const disk = await openTinyDisk(t, { bytes: 4 * 1024 * 1024, inodes: 64 });
    if (!disk) return;
    const fixture = await openFileStore(t);
    const s = await startServer(t, fixture, { wal: { dir: join(disk.dir, 'wal'), sync: 'write', retryMs: 50, segmentBytes: 1024 } });
    await disk.fillInodes();
    // Each write of 256 cells is a frame of over 1 KiB: the first fills the open segment, the second needs a new one.
    const range = (value: number) => s.call('/cells?start=0', { method: 'PUT', body: new Uint8Array(1024).fill(value), auth: AUTH });
    assert.equal((await range(1)).status, 200);
    const failed = await range(2);
    assert.equal(failed.status, 503, failed.text);
    assert.match(failed.json.error, /could not be written to the log \(.*ENOSPC/);
    assert.equal((await s.post('/request', write(3000, 3))).status, 503, 'refused while no segment can be started');
    assert.equal((await s.post('/request', { index: 3000 })).status, 200, 'reads go on');
    assert.match((await s.call('/healthcheck?backup=1')).json.error, /write-ahead log cannot be written/);
    assert.match((await s.call('/healthcheck')).json.backup.log.failure, /ENOSPC/);
    await disk.free();
    await waitFor('writes taken again', async () => (await s.post('/request', write(3000, 4))).status === 200);
    assert.equal((await s.call('/healthcheck?backup=1')).status, 200);
  });

  test('writes made while a shipment is in flight wait for the next cadence: under constant writes one PUT a cadence, not one after another', async (t) => {
    const fixture = await openFileStore(t);
    const intervalMs = 1000;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const commits: Array<{ startedAt: number; doneAt?: number }> = [];
    let booted = false; // the boot's own commit (it claims the next seq) is not a shipment
    const store = storeWith(fixture.store, {
      async putIfAbsent(key, body) {
        if (!booted || !key.includes('/commits/')) return fixture.store.putIfAbsent(key, body);
        const commit: { startedAt: number; doneAt?: number } = { startedAt: performance.now() };
        commits.push(commit);
        if (commits.length === 1) await gate; // the first shipment stays in flight while more writes land
        const created = await fixture.store.putIfAbsent(key, body);
        commit.doneAt = performance.now();
        return created;
      },
    });
    const s = await startServer(t, { ...fixture, store }, { wal: { dir: await openWalDir(t), sync: 'write' }, shipIntervalMs: intervalMs });
    booted = true;
    assert.equal((await s.post('/request', write(1, 1))).status, 200);
    await waitFor('the first shipment in flight', () => commits.length === 1);
    for (let i = 2; i <= 6; i++) assert.equal((await s.post('/request', write(i, i))).status, 200);
    release();
    await waitFor('the later writes shipped too', () => commits.length >= 2 && commits[1]!.doneAt !== undefined);
    // every() waits a whole interval after a step ends: a second commit sooner came from the same step.
    const gap = commits[1]!.startedAt - commits[0]!.doneAt!;
    assert.ok(gap >= intervalMs / 2, `the second shipment waited for its cadence (${Math.round(gap)} ms after the first)`);
    assert.equal((await s.call('/healthcheck')).json.backup.shipsTotal, 2);
  });

  for (const logKind of ['write-ahead log', 'memory log'] as const) {
    test(`a change too big for a set of its usual size (${logKind}) ships alone in a change set of its own, stored as an object, and reaches history; no snapshot`, async (t) => {
      const fixture = await openFileStore(t);
      const cells = 3 * 1024 * 1024; // 12 MiB: a whole-world PUT is over the 8 MiB a change set usually holds
      const wal = logKind === 'write-ahead log' ? { wal: { dir: await openWalDir(t), sync: 'write' as const } } : {};
      const s = await startServer(t, fixture, { cells, ...wal, shipIntervalMs: 50, backupIntervalMs: 600_000 });
      assert.equal((await s.post('/request', write(1, 1))).status, 200);
      await waitForShipped(s, 'the small write shipped');
      const between = await splittingInstant();
      assert.equal((await call(s.url, '/cells?by=importer', { method: 'PUT', body: new Uint8Array(cells * 4).fill(3), auth: AUTH })).status, 200);
      await waitForShipped(s, 'the import shipped');
      const backup = (await s.call('/healthcheck')).json.backup;
      assert.equal(backup.backupsTotal, 0, 'no snapshot carries it');
      assert.equal((await fixture.store.list(`${fixture.prefix}changes/`)).length, 1, 'a change set of its own, as an object');
      const then = await s.post('/request', { index: 1, at: new Date(between).toISOString() });
      assert.equal(then.json.category, 1, `the instant before the import reads the value before it: ${then.text}`);
      const history = await s.call('/history?start=1&count=1', { auth: AUTH });
      assert.equal(history.status, 200, history.text);
      assert.deepEqual(history.json.changes.map((c: { by: string; after: { category: number } }) => [c.by, c.after.category]), [['importer', 3], ['', 1]]);
      await s.app.close();
      const b = await startServer(t, fixture, { cells, ...wal, shipIntervalMs: 50 });
      assert.equal((await b.post('/request', { index: 7 })).json.category, 3, 'boot replays it');
    });
  }

  test('an incomplete multipart upload left under the prefix by a crash is aborted at boot', async (t) => {
    const r = await rig(t);
    const key = `${r.direct.prefix}backups/20200101T000000000Z-crashed.gz`;
    const created = await r.direct.client.send(new CreateMultipartUploadCommand({ Bucket: r.direct.bucket, Key: key }));
    t.after(() => r.direct.client.send(new AbortMultipartUploadCommand({ Bucket: r.direct.bucket, Key: key, UploadId: created.UploadId })).catch(() => undefined));
    const uploads = async () => (await r.direct.client.send(new ListMultipartUploadsCommand({ Bucket: r.direct.bucket, Prefix: r.direct.prefix }))).Uploads ?? [];
    assert.equal((await uploads()).length, 1);
    await startServer(t, r.direct);
    await waitFor('the upload aborted', async () => (await uploads()).length === 0);
  });
});
