/**
 * Crash rounds against the real server process (kill -9 under concurrent single writes, batches and range
 * writes): a process crash loses nothing acknowledged, in both log modes and both stores; a power loss in
 * strict mode loses nothing; an instance loss (the log's disk gone) loses at most the last shipping cadence
 * plus one upload.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { fileStoreEnv, s3StoreEnv } from './support/app.js';
import { runCrashRounds, type CrashRoundsOptions, type CrashRoundsReport } from './support/crash-rounds.js';

const SHIP_SECONDS = 0.2;



async function rounds(t: TestContext, env: Record<string, string>, options: Partial<CrashRoundsOptions>): Promise<CrashRoundsReport> {
  const report = await runCrashRounds({
    rounds: 4, signal: 'mixed', cells: 1024, owner: t, log: (line) => t.diagnostic(line), ...options,
    env: { SHIP_INTERVAL_SECONDS: String(SHIP_SECONDS), BACKUP_INTERVAL_SECONDS: '0.7', ...env, ...options.env },
  });
  t.diagnostic(JSON.stringify(report));
  assert.equal(report.inconsistentRounds, 0, 'a restored world held a value that was never sent, or an older one over a newer');
  assert.ok(report.writesAcknowledged > 100, `only ${report.writesAcknowledged} writes acknowledged`);
  return report;
}

for (const [store, env] of [['file', fileStoreEnv], ['s3', s3StoreEnv]] as const) {
  for (const sync of ['write', 'strict']) {
    test(`kill -9 loses no acknowledged write (${store} store, WAL_SYNC=${sync})`, async (t) => {
      const report = await rounds(t, { ...(await env(t)), WAL_SYNC: sync }, {});
      assert.equal(report.lost, 0, `${report.lost} acknowledged writes lost`);
    });
  }
}

test('a power loss in strict mode loses no acknowledged write (what no fdatasync covered is dropped)', async (t) => {
  const report = await rounds(t, { ...(await fileStoreEnv(t)), WAL_SYNC: 'strict' }, { signal: 'SIGKILL', loss: 'power', rounds: 3 });
  assert.equal(report.lost, 0, `${report.lost} acknowledged writes lost`);
});

test('an instance loss (kill -9, the log deleted) loses at most the last shipping cadence plus one upload', async (t) => {
  const report = await rounds(t, await s3StoreEnv(t), { signal: 'SIGKILL', loss: 'instance', rounds: 3 });
  // One cadence plus one upload; generous for a busy 2-core CI machine.
  assert.ok(report.maxLossWindowMs <= SHIP_SECONDS * 1000 + 1500, `lost a write acknowledged ${report.maxLossWindowMs} ms before the kill`);
});
