/** lib/backup/backups.ts end to end: backups, boot restore and its refusals, legacy migration, undo by restore. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { describe, test, type TestContext, type TestOptions } from 'node:test';
import { gzipSync } from 'node:zlib';
import { S3Client } from '@aws-sdk/client-s3';
import { createApp } from '../lib/app.js';
import { RestoreError } from '../lib/backup/backups.js';
import { waitFor } from './support/http.js';
import { memoryLog, silentLog } from './support/log.js';
import { S3Store } from '../lib/store-s3.js';
import { assertBootRefusal, AUTH, openFileStore, openS3Store, s3Bucket, startServer, TEST_CELLS, type StoreFixture } from './support/app.js';

const STORES: Array<[string, (t: TestContext) => Promise<StoreFixture>]> = [['file', openFileStore], ['s3', () => openS3Store()]];

/** Defines the test once per store. */
function eachStore(name: string, ...args: [fn: StoreTest] | [options: TestOptions, fn: StoreTest]) {
  const [options, fn] = args.length === 1 ? [{}, args[0]] : args;
  for (const [kind, open] of STORES) test(`${name} (${kind} store)`, options, (t) => fn(t, () => open(t)));
}
type StoreTest = (t: TestContext, open: () => Promise<StoreFixture>) => Promise<void>;

/** Starting fails with a RestoreError matching `pattern`, and the store's keys stay as they were. */
async function assertBootRefused(fixture: StoreFixture, pattern: RegExp, inspect = fixture.store) {
  const before = await inspect.list(fixture.prefix);
  const app = createApp({ cells: TEST_CELLS, auth: AUTH, store: fixture.store, prefix: fixture.prefix, legacyKey: `${fixture.prefix}data.bin`, backupRetain: 24, backupIntervalMs: 0, log: silentLog });
  try {
    await assertBootRefusal(app, app.start(0, '127.0.0.1'), pattern);
  } finally {
    await app.close(); // also when it started after all: a server left listening would keep the test process alive
  }
  // The lease (lease.json) is the one object a refused boot leaves: taken to decide the role, then let go.
  const lease = `${fixture.prefix}lease.json`;
  assert.deepEqual((await inspect.list(fixture.prefix)).filter((k) => k !== lease), before.filter((k) => k !== lease), 'nothing written');
}

describe('backups and restore', () => {
  eachStore('a write survives a restart', async (t, open) => {
    const fixture = await open();
    const a = await startServer(t, fixture);
    await a.post('/request', { action: 1, index: 7, category: 9, sideB: 4 });
    assert.equal((await a.post('/s3dump')).status, 200);
    await a.app.close();
    const b = await startServer(t, fixture);
    assert.deepEqual((await b.post('/request', { index: 7 })).json, { status: 200, category: 9, rotation: 0, sideA: 0, sideB: 4 });
    const health = await b.call('/healthcheck');
    assert.equal(health.json.backup.restoredFrom.kind, 'backup');
  });

  eachStore('close() writes a final backup when the world changed, and none when it did not', async (t, open) => {
    const fixture = await open();
    const a = await startServer(t, fixture);
    assert.deepEqual(await a.app.close(), { outcome: 'unchanged' });
    const b = await startServer(t, fixture);
    await b.post('/request', { action: 1, index: 3, category: 3 });
    assert.equal((await b.app.close()).outcome, 'written');
    const c = await startServer(t, fixture);
    assert.equal((await c.post('/request', { index: 3 })).json.category, 3);
  });

  eachStore('the seed\'s raw data.bin is restored and committed as the first snapshot before serving, and never touched', async (t, open) => {
    const fixture = await open();
    const legacy = new Uint8Array(TEST_CELLS * 4);
    legacy.set([9, 8, 7, 6], 7 * 4);
    await fixture.store.put(`${fixture.prefix}data.bin`, legacy);
    const a = await startServer(t, fixture);
    assert.deepEqual((await a.post('/request', { index: 7 })).json, { status: 200, category: 9, rotation: 8, sideA: 7, sideB: 6 });
    assert.deepEqual((await a.call('/healthcheck')).json.backup.restoredFrom, { kind: 'legacy', key: `${fixture.prefix}data.bin` });
    assert.equal((await a.call('/healthcheck')).json.backup.unsavedChanges, false, 'in the new format before serving: the base history starts from');
    assert.equal((await fixture.store.list(`${fixture.prefix}backups/`)).length, 1, 'the first snapshot');
    assert.equal((await a.app.close()).outcome, 'unchanged');
    await fixture.store.put(`${fixture.prefix}data.bin`, new Uint8Array(TEST_CELLS * 4)); // a newer commit wins over the legacy object
    const b = await startServer(t, fixture);
    assert.equal((await b.post('/request', { index: 7 })).json.category, 9);
    assert.equal((await b.call('/healthcheck')).json.backup.restoredFrom.kind, 'backup');
  });

  eachStore('a prefix an older release wrote (change sets shipped before any snapshot) boots with every change in it', async (t, open) => {
    const fixture = await open();
    const a = await startServer(t, fixture);
    await a.post('/request', { action: 1, index: 5, category: 5, by: 'early' });
    await a.post('/request', { action: 1, index: 6, category: 6, by: 'early' });
    assert.equal((await a.app.close()).outcome, 'written', 'shipped as a change set at shutdown');
    // What the release before this one left: no snapshot at all, only change sets on the empty world.
    let snapshots = 0;
    for (const key of await fixture.store.list(`${fixture.prefix}commits/`)) {
      const commit = JSON.parse(Buffer.from((await fixture.store.get(key))!).toString('utf8')) as { kind: string; key?: string };
      if (commit.kind !== 'snapshot') continue;
      await fixture.store.delete(key);
      await fixture.store.delete(commit.key!);
      snapshots++;
    }
    assert.equal(snapshots, 1, 'the first boot\'s snapshot, now gone');
    const b = await startServer(t, fixture);
    assert.equal((await b.post('/request', { index: 5 })).json.category, 5, 'the change sets are applied to the base');
    assert.equal((await b.post('/request', { index: 6 })).json.category, 6);
  });

  eachStore('a legacy object of the wrong size refuses the boot', async (t, open) => {
    const fixture = await open();
    await fixture.store.put(`${fixture.prefix}data.bin`, new Uint8Array(100));
    await assertBootRefused(fixture, /legacy object .*data\.bin holds 100 bytes/);
  });

  eachStore('no backup: an empty world, and the log says so', async (t, open) => {
    const fixture = await open();
    const log = memoryLog();
    const s = await startServer(t, fixture, { log });
    assert.equal((await s.post('/request', { index: TEST_CELLS - 1 })).json.category, 0);
    assert.ok(log.events.some((e) => e.event === 'world_empty'));
  });

  eachStore('a corrupt backup refuses the boot and is not overwritten', async (t, open) => {
    const fixture = await open();
    const a = await startServer(t, fixture);
    await a.post('/request', { action: 1, index: 1, category: 1 });
    assert.equal((await a.post('/s3dump')).status, 200);
    await a.app.close();
    const dataKey = (await fixture.store.list(`${fixture.prefix}backups/`)).sort().at(-1); // the newest: the first boot's empty world is older
    const good = await fixture.store.get(dataKey!);
    await fixture.store.put(dataKey!, good!.subarray(0, good!.byteLength - 8));
    await assertBootRefused(fixture, /not a valid gzip stream|SHA-256|holds/);
    await fixture.store.put(dataKey!, gzipSync(new Uint8Array(TEST_CELLS * 4)));
    await assertBootRefused(fixture, /SHA-256/);
    await fixture.store.put(dataKey!, gzipSync(new Uint8Array(TEST_CELLS * 4 - 4)));
    await assertBootRefused(fixture, /holds \d+ bytes, expected/);
    await fixture.store.delete(dataKey!);
    await assertBootRefused(fixture, /is missing/);
    await fixture.store.put(dataKey!, good!);
    const b = await startServer(t, fixture);
    assert.equal((await b.post('/request', { index: 1 })).json.category, 1, 'the repaired backup restores');
  });

  eachStore('a backup of another world size refuses the boot', async (t, open) => {
    const fixture = await open();
    const a = await startServer(t, fixture, { cells: TEST_CELLS * 2 });
    await a.post('/request', { action: 1, index: 1, category: 1 });
    assert.equal((await a.post('/s3dump')).status, 200);
    await a.app.close();
    await assertBootRefused(fixture, /CUBE_CELLS/);
  });

  // A change set records the world's size: boot never applies one of another size. Since the first boot commits a
  // snapshot, a world of the wrong size is refused by its snapshot first; what is left to guard is a change set of
  // another size after a snapshot of the right one (a second world's set, in the prefix by a wrong copy or an older
  // version): its cells may all fit, so only the recorded size can tell.
  eachStore('change sets of another world size refuse the boot', async (t, open) => {
    const fixture = await open();
    const a = await startServer(t, fixture);
    assert.deepEqual(await a.app.close(), { outcome: 'unchanged' }, 'the first boot\'s snapshot, of the right size');
    const bigger = { ...fixture, prefix: `${fixture.prefix.slice(0, -1)}-bigger/` };
    const b = await startServer(t, bigger, { cells: TEST_CELLS * 2 });
    await b.post('/request', { action: 1, index: 1, category: 1 });
    assert.equal((await b.app.close()).outcome, 'written');
    const commitKeys = async (prefix: string) => (await fixture.store.list(`${prefix}commits/`)).sort();
    let set: Record<string, unknown> | undefined;
    for (const key of await commitKeys(bigger.prefix)) {
      const commit = JSON.parse(new TextDecoder().decode(await fixture.store.get(key))) as Record<string, unknown>;
      if (commit.kind === 'changes') set = commit;
    }
    assert.ok(set?.inline !== undefined, 'the write shipped as a change set, inline');
    const seq = Number(/(\d{12})\.json$/.exec((await commitKeys(fixture.prefix)).at(-1)!)![1]) + 1;
    const copyAt = (commit: Record<string, unknown>) => fixture.store.put(`${fixture.prefix}commits/${String(seq).padStart(12, '0')}.json`, new TextEncoder().encode(JSON.stringify({ ...commit, seq }) + '\n'));
    assert.equal(set!.cells, TEST_CELLS * 2, 'the set records its world\'s size');
    await copyAt(set!);
    await assertBootRefused(fixture, new RegExp(`change set #${seq} .*${TEST_CELLS * 2} cells.*CUBE_CELLS`));
    const { cells: _, ...older } = set!; // as a version before the field shipped it: still read, and applied
    await copyAt(older);
    const c = await startServer(t, fixture);
    assert.equal((await c.post('/request', { index: 1 })).json.category, 1);
  });

  test('an unreachable S3 refuses the boot', async () => {
    const probe = createServer().listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const client = new S3Client({ endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', forcePathStyle: true, maxAttempts: 2, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    const app = createApp({ cells: TEST_CELLS, auth: AUTH, store: new S3Store(client, 'bucket'), prefix: 'w/', legacyKey: 'data.bin', backupRetain: 24, backupIntervalMs: 0, log: silentLog });
    await assert.rejects(app.start(0, '127.0.0.1'), (err: unknown) => err instanceof RestoreError && /ECONNREFUSED/.test(err.message) && /Check the bucket, the endpoint/.test(err.message));
    assert.equal(app.server.listening, false);
  });

  test('S3 with wrong credentials refuses the boot', async (t) => {
    const { server, bucket } = await s3Bucket();
    if (server.kind !== 'ceph') return t.skip('s3rver does not check signatures (not checked here)');
    const fixture = await openS3Store();
    const a = await startServer(t, fixture);
    await a.post('/request', { action: 1, index: 1, category: 1 });
    await a.app.close();
    const wrong = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: 'wrong' } });
    await assertBootRefused({ ...fixture, store: new S3Store(wrong, bucket) }, /HTTP 403|SignatureDoesNotMatch|AccessDenied/, fixture.store);
  });

  test('the production client settings (SDK default checksums) back up to and restore from the S3 server', async (t) => {
    const { server, bucket } = await s3Bucket();
    const client = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
    const fixture = { ...(await openS3Store()), store: new S3Store(client, bucket) };
    const big = { cells: 4 * 1024 * 1024 }; // 16 MiB: a multipart upload of random-ish bytes
    const a = await startServer(t, fixture, big);
    for (let i = 0; i < a.app.cube.bytes.length; i += 4093) a.app.cube.bytes[i] = i % 251;
    a.app.cube.write(1, { category: 1, rotation: 2, sideA: 3, sideB: 4 });
    const dump = await a.post('/s3dump');
    assert.equal(dump.status, 200, dump.text);
    const expected = Buffer.from(a.app.cube.bytes);
    await a.app.close();
    const b = await startServer(t, fixture, big);
    assert.ok(Buffer.from(b.app.cube.bytes).equals(expected));
  });

  eachStore('two /s3dump at once run one upload; both answer with it', async (t, open) => {
    const fixture = await open();
    const s = await startServer(t, fixture);
    await s.post('/request', { action: 1, index: 1, category: 1 });
    const [first, second] = await Promise.all([s.post('/s3dump'), s.post('/s3dump')]);
    assert.equal(first.status, 200);
    assert.equal(second.status, 200);
    assert.equal(first.json.backup.name, second.json.backup.name);
    assert.equal((await fixture.store.list(`${fixture.prefix}backups/`)).length, 2, 'the first boot\'s snapshot and this one');
  });

  eachStore('a write during a backup is in the next one', async (t, open) => {
    const fixture = await open();
    const s = await startServer(t, fixture);
    await s.post('/request', { action: 1, index: 1, category: 1 });
    const first = s.post('/s3dump');
    await s.post('/request', { action: 1, index: 2, category: 2 });
    const second = await s.post('/s3dump');
    assert.notEqual((await first).json.backup.name, second.json.backup.name);
    await s.app.close();
    const b = await startServer(t, fixture);
    assert.equal((await b.post('/request', { index: 2 })).json.category, 2);
  });

  eachStore('a backup taken during a stream of writes restores to a state that existed at one instant', async (t, open) => {
    const fixture = await open();
    const s = await startServer(t, fixture);
    // One writer, cells in order: any instant's world is "cells 0..m-1 written, the rest zero".
    let acknowledged = 0;
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop && i < TEST_CELLS; i++) {
        const answer = await s.post('/request', { action: 1, index: i, category: 1 + (i % 255), rotation: 7, sideA: i & 255, sideB: (i >> 8) & 255 });
        assert.equal(answer.status, 200);
        acknowledged = i + 1;
      }
    })();
    let failed: unknown;
    writer.catch((err: unknown) => { failed = err; });
    await waitFor('50 writes acknowledged', () => {
      if (failed) throw failed;
      return acknowledged >= 50;
    });
    const before = acknowledged;
    const dump = await s.post('/s3dump');
    const after = acknowledged;
    stop = true;
    await writer;
    assert.equal(dump.status, 200);
    const restored = await fixture.store.get(`${fixture.prefix}backups/${dump.json.backup.name}.gz`);
    const { gunzipSync } = await import('node:zlib');
    const cells = gunzipSync(restored!);
    let m = 0;
    while (m < TEST_CELLS && cells[m * 4] !== 0) m++;
    assert.ok(m >= before && m <= after, `backup holds ${m} writes; ${before} were acknowledged before the dump and ${after} after`);
    for (let i = 0; i < TEST_CELLS; i++) {
      const expected = i < m ? [1 + (i % 255), 7, i & 255, (i >> 8) & 255] : [0, 0, 0, 0];
      assert.deepEqual([...cells.subarray(i * 4, i * 4 + 4)], expected, `cell ${i}`);
    }
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
