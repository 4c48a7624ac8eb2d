/**
 * lib/backup/replicator.ts, the leader's side of replication, through two apps in one process on one prefix:
 * sync writes are in the standby's world when answered, a stalled standby is left behind after
 * REPLICATION_TIMEOUT_MS and caught up again, async does not wait, the stream's refusals, and the lease's gate.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { AUTH, openFileStore, openS3Store, type StoreFixture } from './support/app.js';
import { startFaultProxy } from './support/fault-proxy.js';
import { basicHeader, waitFor } from './support/http.js';
import { rig } from './support/s3-rig.js';
import { categoryAt, freePort, logged, roleOf, sameWorld, startMember, startMemberAt, startPair, waitInSync, within, write, type Member } from './support/pair.js';

const stores: Array<[string, (t: TestContext) => Promise<StoreFixture>]> = [['the folder store', openFileStore], ['S3', () => openS3Store()]];

/** GET /replication with the upgrade headers, as a standby asks: the refusal's status and JSON, or 101. */
function askToStream(m: Member, query: Record<string, string>, authorization = basicHeader(AUTH.user, AUTH.password)): Promise<{ status: number; json?: { error: string } }> {
  const url = new URL('/replication', m.url);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { Connection: 'Upgrade', Upgrade: 'cubecache-replication', Authorization: authorization }, agent: false });
    req.on('error', reject);
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0 });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.end();
  });
}

describe('replication, the leader\'s side', () => {
  for (const [name, open] of stores) {
    test(`sync: a write the leader answered is in the standby's world at once (read-your-writes), on ${name}`, async (t) => {
      const fixture = await open(t);
      const { leader, standby } = await startPair(t, fixture);
      for (let i = 0; i < 30; i++) {
        const answer = await write(leader, i, 1 + (i % 200));
        assert.equal(answer.status, 200, answer.text);
        assert.equal(await categoryAt(standby, i), 1 + (i % 200), `write ${i} read back from the standby right after the leader's 200`);
      }
      // A batch too: every cell of it.
      const batch = await leader.post('/request', Array.from({ length: 20 }, (_, i) => ({ action: 1, index: 100 + i, category: 9 })));
      assert.equal(batch.status, 200, batch.text);
      for (let i = 0; i < 20; i++) assert.equal(await categoryAt(standby, 100 + i), 9);
      const status = await roleOf(leader);
      assert.equal(status.replication.state, 'sync');
      assert.equal(status.replication.lagLsn, 0);
      assert.equal(status.replication.standbyUrl, standby.url);
      assert.ok(sameWorld(leader, standby));
    });
  }

  test('sync: with the stream stalled the answer waits for REPLICATION_TIMEOUT_MS, then the leader goes on alone; back to sync once the standby caught up', async (t) => {
    const fixture = await openFileStore(t);
    const port = await freePort();
    const proxy = await startFaultProxy(`http://127.0.0.1:${port}`);
    t.after(() => proxy.close());
    const replication = { mode: 'sync' as const, timeoutMs: 300 };
    // The standby reaches the leader through the proxy: the address the leader advertises in the lease.
    const leader = await startMemberAt(t, fixture, port, { advertiseUrl: proxy.endpoint, replication });
    const standby = await startMember(t, fixture, { replication });
    await waitInSync(leader, standby);
    assert.equal((await write(leader, 1, 1)).status, 200);
    assert.equal(await categoryAt(standby, 1), 1);

    // A slow link: 700 ms each way (the stream is cut once, the standby comes back through the delay).
    proxy.set({ kind: 'delay', ms: 700 });
    await waitFor('the standby back through the slow link', async () => (await roleOf(leader)).replication.state === 'sync' && proxy.counts.faulted > 0);
    const mark = leader.log.events.length;
    // The states the leader reports while the write waits (sampled: the ack that ends 'alone' may come soon after).
    const states = new Set<string>();
    const sampler = setInterval(() => states.add(leader.app.backups.role.status().state), 5);
    const sent = performance.now();
    const answer = await write(leader, 2, 7).finally(() => clearInterval(sampler));
    const waited = performance.now() - sent;
    states.add(leader.app.backups.role.status().state);
    assert.equal(answer.status, 200, answer.text);
    assert.ok(waited >= replication.timeoutMs, `the answer waited for the standby (${Math.round(waited)} ms)`);
    const alone = leader.log.events.slice(mark).find((e) => e.event === 'replication_alone');
    assert.ok(alone, 'replication_alone logged before the answer');
    assert.match(String(alone.reason), /did not confirm within 300 ms/);
    assert.ok(states.has('alone'), `role.status() said 'alone' (${[...states].join(', ')})`);
    // The slow standby acks in the end: sync again, with the leader's world.
    await logged(leader, 'replication_sync', mark);
    await waitFor('the standby caught up over the slow link', () => sameWorld(leader, standby));
    assert.equal(await categoryAt(standby, 2), 7);

    // The link cut: the leader answers alone; when it returns, the standby catches up and sync resumes.
    proxy.set({ kind: 'refuse' });
    await waitFor('the leader without its standby', async () => (await roleOf(leader)).replication.state === 'alone');
    for (let i = 0; i < 10; i++) assert.equal((await within(write(leader, 10 + i, 3), 5000, 'a write with the standby gone')).status, 200);
    assert.equal(await categoryAt(standby, 10), 0, 'the standby has not seen it');
    const back = leader.log.events.length;
    proxy.set({ kind: 'pass' });
    await logged(leader, 'replication_sync', back);
    await waitFor('the standby\'s world equals the leader\'s', () => sameWorld(leader, standby));
    await waitInSync(leader, standby);
    assert.equal(await categoryAt(standby, 19), 3);
    // And sync holds again: read-your-writes on the standby.
    assert.equal((await write(leader, 30, 4)).status, 200);
    assert.equal(await categoryAt(standby, 30), 4);
  });

  test('async: the leader answers without waiting for the standby, which gets the write later', async (t) => {
    const fixture = await openFileStore(t);
    const port = await freePort();
    const proxy = await startFaultProxy(`http://127.0.0.1:${port}`);
    t.after(() => proxy.close());
    const replication = { mode: 'async' as const, timeoutMs: 10_000 };
    const leader = await startMemberAt(t, fixture, port, { advertiseUrl: proxy.endpoint, replication });
    const standby = await startMember(t, fixture, { replication });
    await waitInSync(leader, standby);
    proxy.set({ kind: 'delay', ms: 700 });
    await waitFor('the standby back through the slow link', async () => (await roleOf(leader)).replication.state === 'sync' && proxy.counts.faulted > 0);
    const mark = leader.log.events.length;
    assert.equal((await write(leader, 5, 8)).status, 200);
    assert.equal(await categoryAt(standby, 5), 0, 'answered before the standby had the write');
    assert.equal(leader.app.backups.role.status().mode, 'async');
    await waitFor('the standby has the write', async () => (await categoryAt(standby, 5)) === 8);
    assert.equal((await roleOf(leader)).replication.state, 'sync', 'never left behind');
    assert.equal(leader.log.events.slice(mark).find((e) => e.event === 'replication_alone'), undefined);
  });

  test('GET /replication: 409 from a position the leader cannot stream from, 401 without the credentials, 503 from the standby, 400 without an id', async (t) => {
    const fixture = await openFileStore(t);
    const { leader, standby } = await startPair(t, fixture);
    for (let i = 0; i < 5; i++) assert.equal((await write(leader, i, 2)).status, 200);
    const { lineage, lastLsn } = await roleOf(leader);
    const wrongLineage = await askToStream(leader, { lineage: '00000000deadbeef', after: '0', id: 'x', url: 'http://127.0.0.1:1' });
    assert.equal(wrongLineage.status, 409);
    assert.match(wrongLineage.json!.error, /lineage .*catch up from the store/);
    const ahead = await askToStream(leader, { lineage, after: String(lastLsn + 5), id: 'x', url: 'http://127.0.0.1:1' });
    assert.equal(ahead.status, 409);
    assert.match(ahead.json!.error, /ahead of this leader/);
    const badAuth = await askToStream(leader, { lineage, after: String(lastLsn), id: 'x', url: 'http://127.0.0.1:1' }, basicHeader(AUTH.user, 'wrong'));
    assert.equal(badAuth.status, 401);
    const noAuth = await askToStream(leader, { lineage, after: String(lastLsn), id: 'x', url: 'http://127.0.0.1:1' }, '');
    assert.equal(noAuth.status, 401);
    assert.equal((await askToStream(leader, { lineage, after: String(lastLsn), url: 'http://127.0.0.1:1' })).status, 400);
    const notLeader = await askToStream(standby, { lineage, after: String(lastLsn), id: 'x', url: 'http://127.0.0.1:1' });
    assert.equal(notLeader.status, 503);
    // None of them took the standby's place: it is still the one in sync.
    assert.equal((await roleOf(leader)).replication.standbyUrl, standby.url);
    assert.equal((await write(leader, 9, 9)).status, 200);
    assert.equal(await categoryAt(standby, 9), 9);
    // A position it can stream from is taken (and replaces the standby's stream, which comes back).
    assert.equal((await askToStream(leader, { lineage, after: String(lastLsn), id: 'x', url: 'http://127.0.0.1:1' })).status, 101);
    await waitInSync(leader, standby);
  });

  test('the gate: a leader whose lease cannot be renewed acknowledges no write until it holds the lease again (Ceph behind the fault proxy)', async (t) => {
    const r = await rig(t);
    const leader = await startMember(t, r.proxied, { shipIntervalMs: 0 });
    assert.equal((await write(leader, 1, 1)).status, 200);
    r.proxy.set({ kind: 'refuse' });
    // Once the lease has lapsed a whole term (writes in between wait in the gate), new writes are refused.
    await waitFor('the lease lapsed a whole term', async () => (leader.app.backups.role.status().leaseLapsedMs ?? 0) > 2000);
    const i = 1;
    const refused = await within(write(leader, 100 + i, 5), 5000, 'a write while the store is cut off');
    assert.equal(refused.status, 503, refused.text);
    assert.equal(await categoryAt(leader, 100 + i), 0, 'the refused write changed nothing');
    for (let k = 0; k < 3; k++) {
      const again = await within(write(leader, 200 + k, 6), 5000, 'a write with the lease lapsed');
      assert.equal(again.status, 503, again.text);
    }
    // The store back: the renewal goes through and writes are taken again.
    r.proxy.set({ kind: 'pass' });
    await waitFor('writes taken again', async () => (await within(write(leader, 300, 7), 5000, 'a write with the store back')).status === 200);
    assert.equal(await categoryAt(leader, 300), 7);
    assert.equal(await categoryAt(leader, 200), 0);
  });
});
