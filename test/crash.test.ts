/**
 * Crash rounds against the real server process (kill -9 under concurrent single writes, batches and range
 * writes): a process crash loses nothing acknowledged, in both log modes and both stores; a power loss in
 * strict mode loses nothing; an instance loss (the log's disk gone) loses at most the last shipping cadence
 * plus one upload.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openFileStore, openS3Store, openWalDir } from './support/app.js';
import { runCrashRounds, type CrashRoundsOptions, type CrashRoundsReport } from './support/crash-rounds.js';

const SHIP_SECONDS = 0.2;


async function fileEnv(t: TestContext): Promise<Record<string, string>> {
  const { dir } = await openFileStore(t);
  return { DATA_DIR: dir, S3_PREFIX: 'world/', WAL_DIR: join(dir, 'wal') };
}

async function s3Env(t: TestContext): Promise<Record<string, string>> {
  const f = await openS3Store();
  return {
    S3_BUCKET: f.bucket, S3_PREFIX: f.prefix, S3_FORCE_PATH_STYLE: 'true', AWS_ENDPOINT_URL_S3: f.server.endpoint, AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: f.server.accessKeyId, AWS_SECRET_ACCESS_KEY: f.server.secretAccessKey, WAL_DIR: await openWalDir(t),
  };
}

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

for (const [store, env] of [['file', fileEnv], ['s3', s3Env]] as const) {
  for (const sync of ['write', 'strict']) {
    test(`kill -9 loses no acknowledged write (${store} store, WAL_SYNC=${sync})`, async (t) => {
      const report = await rounds(t, { ...(await env(t)), WAL_SYNC: sync }, {});
      assert.equal(report.lost, 0, `${report.lost} acknowledged writes lost`);
    });
  }
}

test('a power loss in strict mode loses no acknowledged write (what no fdatasync covered is dropped)', async (t) => {
  const report = await rounds(t, { ...(await fileEnv(t)), WAL_SYNC: 'strict' }, { signal: 'SIGKILL', loss: 'power', rounds: 3 });
  assert.equal(report.lost, 0, `${report.lost} acknowledged writes lost`);
});

test('an instance loss (kill -9, the log deleted) loses at most the last shipping cadence plus one upload', async (t) => {
  const report = await rounds(t, await s3Env(t), { signal: 'SIGKILL', loss: 'instance', rounds: 3 });
  // One cadence plus one upload; generous for a busy 2-core CI machine.
  assert.ok(report.maxLossWindowMs <= SHIP_SECONDS * 1000 + 1500, `lost a write acknowledged ${report.maxLossWindowMs} ms before the kill`);
});
