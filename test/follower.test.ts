/**
 * lib/backup/follower.ts, the standby's side of replication, through two apps in one process on one prefix:
 * catching up from the store (its fallback) then from the stream, a log that mirrors the leader's lineage and
 * lsns, a takeover commit of a new lineage switching it, and history and past reads answered like the leader's.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CommitLog } from '../lib/backup/commit-log.js';
import { AUTH, openFileStore, waitForShipped } from './support/app.js';
import { startFaultProxy } from './support/fault-proxy.js';
import { waitFor } from './support/http.js';
import { silentLog } from './support/log.js';
import { categoryAt, freePort, roleOf, sameWorld, startMember, startMemberAt, startPair, waitInSync, write } from './support/pair.js';

describe('replication, the standby\'s side', () => {
  test('a standby started after the leader wrote and shipped restores, catches up from the store while the stream is cut, then streams; its log mirrors the leader\'s lsns', async (t) => {
    const fixture = await openFileStore(t);
    const port = await freePort();
    const proxy = await startFaultProxy(`http://127.0.0.1:${port}`);
    t.after(() => proxy.close());
    const leader = await startMemberAt(t, fixture, port, { advertiseUrl: proxy.endpoint });
    for (let i = 0; i < 40; i++) assert.equal((await write(leader, i, 1 + i)).status, 200);
    await waitForShipped(leader);
    // The stream cannot start: the standby has only the store to follow.
    proxy.set({ kind: 'refuse' });
    const standby = await startMember(t, fixture);
    assert.equal((await roleOf(standby)).role, 'standby');
    assert.equal(await categoryAt(standby, 39), 40, 'restored from what the leader shipped');
    for (let i = 40; i < 60; i++) assert.equal((await write(leader, i, 1 + i)).status, 200, 'the leader goes on without the standby');
    await waitForShipped(leader);
    await waitFor('the standby caught up from the store', async () => (await categoryAt(standby, 59)) === 60);
    assert.equal((await roleOf(standby)).replication.state, 'seeking', 'no stream');
    assert.deepEqual(await lsnOf(standby), await lsnOf(leader), 'the store\'s change sets numbered as the leader did');
    // Changes the store lacks come by the stream once it can start.
    for (let i = 60; i < 70; i++) assert.equal((await write(leader, i, 1 + i)).status, 200);
    proxy.set({ kind: 'pass' });
    await waitInSync(leader, standby);
    await waitFor('the standby\'s world equals the leader\'s', () => sameWorld(leader, standby));
    assert.deepEqual(await lsnOf(standby), await lsnOf(leader));
    for (let i = 70; i < 90; i++) {
      assert.equal((await write(leader, i, 1 + i)).status, 200);
      assert.equal(await categoryAt(standby, i), 1 + i);
    }
    const s = await lsnOf(standby);
    assert.deepEqual(s, await lsnOf(leader), 'the standby\'s log holds the leader\'s lsns');
    assert.ok(s.lastLsn >= 90, `every write has an lsn (${s.lastLsn})`);
  });

  test('a takeover commit of a new lineage in the store makes the follower switch lineage', async (t) => {
    const fixture = await openFileStore(t);
    const { leader, standby } = await startPair(t, fixture);
    for (let i = 0; i < 5; i++) assert.equal((await write(leader, i, 3)).status, 200);
    await waitForShipped(leader);
    const before = await lsnOf(standby);
    assert.equal(before.lineage, (await lsnOf(leader)).lineage);
    // Another server claims the next seq with a lineage of its own (as a takeover does), at lsn 0.
    const commits = new CommitLog(fixture.store, fixture.prefix, silentLog, Date.now);
    const seqs = await commits.seqs();
    const lineage = 'feedfacecafebeef';
    assert.ok(await commits.claim({ format: 2, kind: 'takeover', seq: seqs.at(-1)! + 1, writer: commits.writer, committedAt: new Date().toISOString(), reason: 'takeover', lineage, lsn: 0 }));
    await waitFor('the standby on the new lineage', async () => (await lsnOf(standby)).lineage === lineage);
    assert.equal((await lsnOf(standby)).lastLsn, 0, 'numbered from the takeover commit\'s lsn');
    assert.equal(await categoryAt(standby, 4), 3, 'the world kept');
    // The old leader's stream (its lineage) is a zombie's now: the standby does not follow it.
    assert.notEqual((await roleOf(standby)).replication.state, 'following');
  });

  test('/history and past reads (`at`) on the standby answer as the leader\'s do', async (t) => {
    const fixture = await openFileStore(t);
    const { leader, standby } = await startPair(t, fixture);
    const instants: string[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 5; i++) {
        const answer = await leader.call(`/cells?start=${10 * round + i}&by=player${round}`, { method: 'PUT', body: Uint8Array.from([round + 1, 0, 0, 0]), auth: AUTH });
        assert.equal(answer.status, 200, answer.text);
      }
      await waitFor('a new instant', () => Date.now() > Date.parse(instants.at(-1) ?? '1970-01-01T00:00:00Z') + 5);
      instants.push(new Date().toISOString());
      await waitFor('a later instant', () => Date.now() > Date.parse(instants.at(-1)!) + 5);
    }
    for (const query of ['/history?start=0&count=40', '/history?by=player2', '/history?by=player0&limit=2']) {
      const [l, s] = await Promise.all([leader.call(query, { auth: AUTH }), standby.call(query, { auth: AUTH })]);
      assert.equal(l.status, 200, l.text);
      assert.equal(s.status, 200, s.text);
      assert.ok(l.json.changes.length > 0, query);
      assert.deepEqual(s.json, l.json, query);
    }
    for (const at of instants) {
      const reads = Array.from({ length: 40 }, (_, index) => ({ index, at }));
      const [l, s] = await Promise.all([leader.post('/request', reads), standby.post('/request', reads)]);
      assert.equal(l.status, 200, l.text);
      assert.deepEqual(s.json, l.json, `the world at ${at}`);
    }
  });
});

/** The lineage and last lsn of `m`'s log. */
async function lsnOf(m: Parameters<typeof roleOf>[0]): Promise<{ lineage: string; lastLsn: number }> {
  const { lineage, lastLsn } = await roleOf(m);
  return { lineage, lastLsn };
}
