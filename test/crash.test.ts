/** Crash rounds against the real server process: SIGKILL loses at most the last interval, SIGTERM loses nothing. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openFileStore, openS3Store } from './support/app.js';
import { runCrashRounds, type CrashRoundsReport } from './support/crash-rounds.js';

const INTERVAL_SECONDS = 0.1;

function check(t: { diagnostic(message: string): void }, report: CrashRoundsReport, rounds: number) {
  t.diagnostic(JSON.stringify(report));
  assert.equal(report.rounds, rounds);
  assert.ok(report.writesAcknowledged > 100, `only ${report.writesAcknowledged} writes acknowledged`);
  assert.equal(report.inconsistentRounds, 0, 'a restored world was not exactly the newest committed backup');
  assert.equal(report.lostBeforeSnapshot, 0, 'a write acknowledged before the restored snapshot was lost');
  assert.equal(report.lostAfterSigterm, 0, 'SIGTERM lost acknowledged writes');
  // The promise: a crash loses at most the last interval plus one backup's duration (a generous bound for a busy CI machine).
  assert.ok(report.maxLossWindowMs <= INTERVAL_SECONDS * 1000 + 2000, `lost a write acknowledged ${report.maxLossWindowMs} ms before the kill`);
}

test('crash rounds on the file store: SIGKILL and SIGTERM alternating', async (t) => {
  const { dir, store, prefix } = await openFileStore(t);
  const report = await runCrashRounds({
    rounds: 6, signal: 'mixed', cells: 1024, intervalSeconds: INTERVAL_SECONDS, env: { DATA_DIR: dir }, store, prefix, owner: t,
    log: (line) => t.diagnostic(line),
  });
  check(t, report, 6);
});

test('crash rounds on S3: SIGKILL and SIGTERM alternating', async (t) => {
  const fixture = await openS3Store();
  const report = await runCrashRounds({
    rounds: 4, signal: 'mixed', cells: 1024, intervalSeconds: INTERVAL_SECONDS, store: fixture.store, prefix: fixture.prefix, owner: t,
    env: {
      S3_BUCKET: fixture.bucket, S3_FORCE_PATH_STYLE: 'true', AWS_ENDPOINT_URL_S3: fixture.server.endpoint, AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: fixture.server.accessKeyId, AWS_SECRET_ACCESS_KEY: fixture.server.secretAccessKey,
    },
    log: (line) => t.diagnostic(line),
  });
  check(t, report, 4);
});
