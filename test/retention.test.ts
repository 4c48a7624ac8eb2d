/**
 * lib/backup/retention.ts: keep the newest snapshots and what the oldest kept one needs (itself, and the change
 * sets from its replayFrom on); delete older commits and the objects only they named; strays newer than the
 * oldest kept snapshot may be another writer's upload in flight and stay. Run on the file store and on S3.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { CommitLog } from '../lib/backup/commit-log.js';
import { pruneCommits, type SnapshotRef } from '../lib/backup/retention.js';
import { AUTH, openFileStore, openS3Store, startServer, type StoreFixture } from './support/app.js';
import { silentLog } from './support/log.js';

const STORES: Array<[string, (t: TestContext) => Promise<StoreFixture>]> = [['file', openFileStore], ['s3', () => openS3Store()]];
const body = new TextEncoder().encode('x');

/** Names as snapshots and change sets get them: their time first, so they sort by age. */
const at = (minute: number) => `20260101T00${String(minute).padStart(2, '0')}00000Z-0000000${minute % 10}`;

/**
 * A prefix holding commits 1..6 (each a takeover: pruning reads only seqs) and objects named for minutes 1..6
 * under backups/ and changes/; snapshots "at" minutes 3 and 5 are the ones a caller keeps.
 */
async function seed(fixture: StoreFixture): Promise<CommitLog> {
  const commits = new CommitLog(fixture.store, fixture.prefix, silentLog, Date.now);
  for (let i = 1; i <= 6; i++) {
    await commits.append({ kind: 'takeover', reason: `commit ${i}`, lineage: 'l', lsn: 0 });
    await fixture.store.put(`${fixture.prefix}backups/${at(i)}.gz`, body);
    await fixture.store.put(`${fixture.prefix}changes/${at(i)}.bin`, body);
  }
  return commits;
}

const ref = (seq: number, replayFrom: number): SnapshotRef => ({ seq, name: at(seq), key: `backups/${at(seq)}.gz`, createdAt: '', bytes: 1, compressedBytes: 1, sha256: '', replayFrom });
const names = async (fixture: StoreFixture, folder: string) => (await fixture.store.list(`${fixture.prefix}${folder}`)).map((key) => key.slice(key.lastIndexOf('/') + 1, key.indexOf('.', key.lastIndexOf('/'))));

for (const [kind, open] of STORES) {
  describe(`retention (${kind} store)`, () => {
    test('commits before the oldest kept snapshot go, with the objects older than it; newer ones stay', async (t) => {
      const fixture = await open(t);
      const commits = await seed(fixture);
      await pruneCommits(fixture.store, commits, fixture.prefix, [ref(5, 0), ref(3, 0)]);
      assert.deepEqual(await commits.seqs(), [3, 4, 5, 6]);
      assert.deepEqual(await names(fixture, 'backups/'), [at(3), at(4), at(5), at(6)], 'kept snapshots, and newer strays (uploads in flight)');
      assert.deepEqual(await names(fixture, 'changes/'), [at(3), at(4), at(5), at(6)]);
    });

    test('the change sets the oldest kept snapshot replays from are kept', async (t) => {
      const fixture = await open(t);
      const commits = await seed(fixture);
      await pruneCommits(fixture.store, commits, fixture.prefix, [ref(5, 0), ref(3, 2)]);
      assert.deepEqual(await commits.seqs(), [2, 3, 4, 5, 6]);
    });

    test('nothing kept: nothing deleted', async (t) => {
      const fixture = await open(t);
      const commits = await seed(fixture);
      await pruneCommits(fixture.store, commits, fixture.prefix, []);
      assert.deepEqual(await commits.seqs(), [1, 2, 3, 4, 5, 6]);
      assert.equal((await names(fixture, 'backups/')).length, 6);
    });

    test('end to end: a server keeps the newest BACKUP_RETAIN backups and deletes the rest', async (t) => {
      const fixture = await open(t);
      const s = await startServer(t, fixture, { backupRetain: 3 });
      const names: string[] = [];
      for (let i = 1; i <= 5; i++) {
        await s.post('/request', { action: 1, index: i, category: i });
        names.push((await s.post('/s3dump')).json.backup.name);
      }
      await s.app.backups.pruned();
      const kept = await s.call('/backups', { auth: AUTH });
      assert.deepEqual(kept.json.backups.map((b: { name: string }) => b.name), names.slice(2).reverse());
      const objects = await fixture.store.list(`${fixture.prefix}backups/`);
      assert.deepEqual(objects.map((key) => key.slice(key.lastIndexOf('/') + 1)), names.slice(2).map((n) => `${n}.gz`));
    });
  });
}
