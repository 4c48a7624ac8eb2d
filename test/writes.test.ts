/** lib/backup/writes.ts: the one write path; a write the log cannot take is undone before anyone reads it (issue 17, finding 3). */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { WriteAheadLog } from '../lib/backup/wal.js';
import { LeadershipLostError, WritePath } from '../lib/backup/writes.js';
import { Cube } from '../lib/cube.js';
import { AUTH, commitFromElsewhere, openFileStore, startServer } from './support/app.js';
import { waitFor } from './support/http.js';
import { memoryLog } from './support/log.js';
import { openTinyDisk } from './support/tiny-disk.js';

describe('the write path', () => {
  test('a write the log could not take (a real full disk) is answered 503, no read shows it, and it is not there after the log recovers and a restart', async (t) => {
    const disk = await openTinyDisk(t, { bytes: 512 * 1024 });
    if (!disk) return;
    const fixture = await openFileStore(t);
    const options = { wal: { dir: join(disk.dir, 'wal'), sync: 'write' as const, retryMs: 50 }, shipIntervalMs: 1000, backupIntervalMs: 600_000 };
    let s = await startServer(t, fixture, options);
    assert.equal((await s.post('/request', { action: 1, index: 1, category: 1 })).status, 200);
    await disk.fill();
    // 8 KiB of cells need pages the full disk does not have: the write reaches the world, then the log fails.
    const failed = await s.call('/cells?start=100', { method: 'PUT', body: new Uint8Array(8192).fill(2), auth: AUTH });
    assert.equal(failed.status, 503, failed.text);
    const read = await s.call('/cells?start=100&count=2048', { auth: AUTH });
    assert.equal(read.status, 200);
    assert.ok(!read.text.includes('\u0002'), 'no read shows a value the log does not hold');
    assert.equal((await s.post('/request', { index: 100 })).json.category, 0);
    await disk.free();
    await waitFor('writes taken again', async () => (await s.post('/request', { action: 1, index: 4, category: 4 })).status === 200);
    assert.equal((await s.post('/request', { index: 100 })).json.category, 0, 'not applied once the log recovers');
    await s.app.close();
    s = await startServer(t, fixture, options);
    assert.equal((await s.post('/request', { index: 100 })).json.category, 0, 'nor after a restart');
    assert.equal((await s.post('/request', { index: 4 })).json.category, 4);
    assert.equal((await s.post('/request', { index: 1 })).json.category, 1);
  });

  test('a write still on its way to the disk when the lease is lost is refused once it lands, not acknowledged (the zombie of issue 18)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'cubecache-writes-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const wal = await WriteAheadLog.open({ dir, sync: 'write', cells: 1024, log: memoryLog() });
    t.after(() => wal.close());
    await wal.recover(undefined, 0, () => {});
    const writes = new WritePath(new Cube(1024), () => wal, () => undefined, () => ({ storeLsn: 0, storeAt: 0 }), Date.now);
    // A leader whose lease lapsed with no standby in sync: its gate lets nothing through.
    writes.gate = () => Number.NEGATIVE_INFINITY;
    const answer = new Promise<Error | undefined>((resolve) => writes.applyThen({ runs: [{ start: 7, bytes: Uint8Array.of(1, 2, 3, 4) }], by: 'p' }, resolve));
    // The lease is found lost while the log's write of the change is in flight: the leader abandons what is
    // unacknowledged, then closes its replicator, which takes the gate away (as Leadership.demote does).
    writes.abandon(new LeadershipLostError('lost'));
    writes.gate = undefined;
    const settled = await answer;
    assert.ok(settled instanceof LeadershipLostError, `the write must not be acknowledged, got ${settled === undefined ? 'success' : settled.message}`);
    assert.equal(wal.durableLsn, 1, 'the log did take it (it stays there: the reload decides)');
  });

  test('every route that changes cells answers 503 while the server is fenced, and changes nothing', async (t) => {
    const fixture = await openFileStore(t);
    const a = await startServer(t, fixture, { shipIntervalMs: 30 });
    await commitFromElsewhere(fixture); // another server took the prefix over
    await a.post('/request', { action: 1, index: 1, category: 1 }).catch(() => undefined); // its shipment finds the prefix taken
    await waitFor('fenced', async () => (await a.call('/healthcheck')).json.backup.fenced);
    const at = new Date(Date.now() - 50).toISOString();
    const answers = [
      await a.post('/request', { action: 1, index: 2, category: 2 }),
      await a.post('/request', [{ action: 1, index: 2, category: 2 }]),
      await a.call('/cells?start=2', { method: 'PUT', body: new Uint8Array(4).fill(2), auth: AUTH }),
      await a.post('/restore', { at, start: 2, count: 1 }),
      await a.post('/restore', { name: 'any' }),
      await a.post('/rollback', { by: 'p', since: at }),
      await a.post('/s3dump'),
    ];
    assert.deepEqual(answers.map((x) => x.status), [503, 503, 503, 503, 503, 503, 503], answers.map((x) => x.text).join('\n'));
    assert.equal((await a.post('/request', { index: 2 })).json.category, 0);
  });
});
