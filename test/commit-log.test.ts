/**
 * lib/backup/commit-log.ts: one object per commit, created only if absent. Seqs are taken in order; whoever takes
 * a seq first owns it, so a writer whose next seq was taken is fenced and overwrites nothing; a commit whose answer
 * was lost is found, not taken for a fence. Run on the file store and on S3.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { CACHED_CHANGE_SET_BYTES, CommitLog, FencedError, UnreadableCommitError, type Commit, type TakeoverCommit } from '../lib/backup/commit-log.js';
import { openFileStore, openS3Store, s3Bucket, startServer, type StoreFixture } from './support/app.js';
import { memoryLog, silentLog } from './support/log.js';
import { storeWith } from './support/store.js';

const STORES: Array<[string, (t: TestContext) => Promise<StoreFixture>]> = [['file', openFileStore], ['s3', () => openS3Store()]];

/** A takeover's fields (the smallest commit), as append takes them. */
const takeover = (reason: string) => ({ kind: 'takeover' as const, reason, lineage: 'lineage-a', lsn: 0 });
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

for (const [kind, open] of STORES) {
  describe(`the commit log (${kind} store)`, () => {
    test('append takes the next seq; another reader lists them oldest first and reads them back', async (t) => {
      const { store, prefix } = await open(t);
      const log = new CommitLog(store, prefix, silentLog, Date.now);
      const first = await log.append(takeover('boot'));
      const second = await log.append(takeover('again'));
      assert.deepEqual([first.seq, second.seq], [1, 2]);
      assert.equal(log.key(2), `${prefix}commits/000000000002.json`);
      const reader = new CommitLog(store, prefix, silentLog, Date.now);
      assert.deepEqual(await reader.seqs(), [1, 2]);
      const read = await reader.read(2) as TakeoverCommit;
      assert.deepEqual({ kind: read.kind, seq: read.seq, writer: read.writer, reason: read.reason, format: read.format }, { kind: 'takeover', seq: 2, writer: log.writer, reason: 'again', format: 2 });
      const seen: number[] = [];
      for await (const commit of reader.newestFirst([1, 2])) seen.push(commit.seq);
      assert.deepEqual(seen, [2, 1]);
    });

    test('a second writer that takes the next seq fences the first: it refuses to commit, says so, and overwrote nothing', async (t) => {
      if (kind === 's3' && !(await s3Bucket()).server.conditionalWrites) return t.skip('this S3 server ignores If-None-Match: * (not checked here)');
      const { store, prefix } = await open(t);
      const log = memoryLog();
      let puts = 0;
      const a = new CommitLog(storeWith(store, { putIfAbsent: (key, body) => { puts++; return store.putIfAbsent(key, body); } }), prefix, log, Date.now);
      await a.append(takeover('a boots'));
      const b = new CommitLog(store, prefix, silentLog, Date.now);
      const newest = (await b.seqs()).at(-1)!;
      const claimed: Commit = { ...takeover('b takes over'), format: 2, seq: newest + 1, writer: b.writer, committedAt: new Date().toISOString() };
      assert.equal(await b.claim(claimed), true);
      await assert.rejects(a.append(takeover('a again')), FencedError);
      assert.deepEqual(a.fenced, { seq: 2, writer: b.writer });
      assert.ok(log.events.some((e) => e.event === 'backups_fenced' && e.level === 'error' && e.otherWriter === b.writer));
      assert.equal((await new CommitLog(store, prefix, silentLog, Date.now).read(2)).writer, b.writer, 'b\'s commit stands');
      const before = puts;
      await assert.rejects(a.append(takeover('a once more')), FencedError);
      assert.equal(puts, before, 'a fenced log does not even try');
      assert.deepEqual(await b.seqs(), [1, 2]);
    });

    test('a commit whose answer was lost (the retry finds the key taken) is its own: append returns it, not a fence', async (t) => {
      const { store, prefix } = await open(t);
      let lose = true;
      const lossy = storeWith(store, {
        async putIfAbsent(key, body) {
          const created = await store.putIfAbsent(key, body);
          if (!lose) return created;
          lose = false;
          return false; // it landed; the SDK's retry of the lost answer then found the key taken
        },
      });
      const log = new CommitLog(lossy, prefix, silentLog, Date.now);
      const commit = await log.append({ ...takeover('boot'), kind: 'takeover' });
      assert.equal(commit.seq, 1);
      assert.equal(log.fenced, null);
      assert.equal((await log.append(takeover('next'))).seq, 2, 'and the next commit takes the next seq');
      assert.deepEqual(await log.seqs(), [1, 2]);
    });

    test('the change sets it remembers are bounded by their bytes: the oldest is read from the store again, the newest from memory', async (t) => {
      const { store, prefix } = await open(t);
      const log = new CommitLog(store, prefix, silentLog, Date.now);
      // Change sets at the inline limit's size (256 KiB of base64), enough to pass the bound by two.
      const inline = 'A'.repeat(256 * 1024);
      const count = Math.ceil(CACHED_CHANGE_SET_BYTES / inline.length) + 2;
      for (let i = 0; i < count; i++) {
        await log.append({ kind: 'changes', reason: 'ship', name: `c${i}`, lineage: 'lineage-a', lsn: i + 1, fromLsn: i + 1, toLsn: i + 1, count: 1, inline } as unknown as Omit<Commit, 'format' | 'seq' | 'writer' | 'committedAt'>);
      }
      // Behind the log's back: an object that is gone reads only if the log still holds it.
      await store.delete(log.key(1));
      await store.delete(log.key(count));
      await assert.rejects(log.read(1), (err: unknown) => err instanceof UnreadableCommitError && /is missing/.test(err.message), 'the oldest was let go');
      assert.equal(((await log.read(count)) as { inline?: string }).inline?.length, inline.length, 'the newest is still in memory');
    });

    test('read: a missing, non-JSON or foreign object is unreadable; a format 1 commit reads as a snapshot', async (t) => {
      const { store, prefix } = await open(t);
      const log = new CommitLog(store, prefix, silentLog, Date.now);
      await assert.rejects(log.read(1), (err: unknown) => err instanceof UnreadableCommitError && /is missing/.test(err.message));
      await store.put(log.key(2), new TextEncoder().encode('{not json'));
      await assert.rejects(log.read(2), (err: unknown) => err instanceof UnreadableCommitError && /not valid JSON/.test(err.message));
      await store.put(log.key(3), bytes({ format: 2, kind: 'mystery', lineage: 'x', lsn: 0 }));
      await assert.rejects(log.read(3), (err: unknown) => err instanceof UnreadableCommitError && /not a cubecache commit/.test(err.message));
      await store.put(log.key(4), bytes({ format: 1, name: 'old', key: `${prefix}backups/old.gz`, sha256: 'ab', bytes: 16 }));
      const old = await log.read(4);
      assert.equal(old.kind, 'snapshot');
      assert.equal(old.seq, 4);
      assert.deepEqual(await log.seqs(), [2, 3, 4]);
    });
  });
}

describe('two servers on one prefix', () => {
  // The commit chain still fences a writer that lost its seq (the unit tests above); a second server started
  // on a live prefix no longer takes it over: it becomes the standby (issue 18) and commits nothing.
  for (const kind of ['s3', 'file'] as const) {
    test(`a second server on a live prefix becomes the standby: it claims nothing, and its writes land on the leader (${kind} store)`, async (t) => {
      if (kind === 's3' && !(await s3Bucket()).server.conditionalWrites) return t.skip('this S3 server ignores conditions (not checked here)');
      const fixture = kind === 's3' ? await openS3Store() : await openFileStore(t);
      const leader = await startServer(t, fixture);
      await leader.post('/request', { action: 1, index: 1, category: 1 });
      await leader.post('/s3dump'); // a commit of the leader's own to tell its writer id by
      const seqsBefore = await fixture.store.list(`${fixture.prefix}commits/`);
      const second = await startServer(t, fixture);
      assert.equal((await second.call('/healthcheck')).json.role, 'standby');
      assert.equal((await leader.call('/healthcheck')).json.role, 'leader');
      assert.equal((await second.post('/request', { action: 1, index: 2, category: 2 })).json.category, 2);
      assert.equal((await leader.post('/request', { index: 2 })).json.category, 2, 'the write sent to the standby is the leader\'s');
      assert.equal((await second.post('/request', { index: 1 })).json.category, 1, 'the standby shows the leader\'s world');
      const writerOf = async (key: string) => (JSON.parse(new TextDecoder().decode(await fixture.store.get(key))) as { writer: string }).writer;
      const leaderWriter = await writerOf(seqsBefore.sort().at(-1)!);
      const added = (await fixture.store.list(`${fixture.prefix}commits/`)).filter((k) => !seqsBefore.includes(k));
      for (const key of added) assert.equal(await writerOf(key), leaderWriter, `${key}: the standby committed nothing`);
      assert.equal((await leader.call('/healthcheck')).json.backup.fenced, null, 'the leader was not fenced');
    });
  }
});
