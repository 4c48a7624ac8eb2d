/**
 * `npm run crash-rounds -- [--rounds 50] [--store file|s3] [--interval 1] [--cells 65536] [--signal SIGKILL|SIGTERM|mixed]`
 * The long run of test/crash.test.ts: kill the real server round after round under random writes and
 * print what was acknowledged and what was lost. The s3 store is a Ceph RGW (or s3rver) started here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FileStore } from '../lib/store-file.js';
import { S3Store } from '../lib/store-s3.js';
import { runCrashRounds } from '../test/support/crash-rounds.js';
import { createTestBucket, startS3Server, testS3Client } from '../test/support/s3-server.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '50' },
    store: { type: 'string', default: 'file' },
    interval: { type: 'string', default: '1' },
    cells: { type: 'string', default: '65536' },
    signal: { type: 'string', default: 'mixed' },
  },
});
const cleanups: Array<() => unknown> = [];
const owner = { after: (fn: () => unknown) => { cleanups.push(fn); } };
const common = {
  rounds: Number(values.rounds), cells: Number(values.cells), intervalSeconds: Number(values.interval),
  signal: values.signal as 'SIGKILL' | 'SIGTERM' | 'mixed', owner, runMs: [500, Number(values.interval) * 3000 + 500] as [number, number],
  log: (line: string) => console.log(line),
};
try {
  let report;
  if (values.store === 's3') {
    const s3 = await startS3Server();
    cleanups.push(() => s3.stop());
    const client = testS3Client(s3);
    const bucket = await createTestBucket(s3, client);
    report = await runCrashRounds({
      ...common, store: new S3Store(client, bucket), prefix: 'crash/',
      env: { S3_BUCKET: bucket, S3_FORCE_PATH_STYLE: 'true', AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
    });
  } else {
    const dir = await mkdtemp(join(tmpdir(), 'cubecache-crash-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    report = await runCrashRounds({ ...common, store: new FileStore(dir), prefix: 'crash/', env: { DATA_DIR: dir } });
  }
  console.log(JSON.stringify({ store: values.store, intervalSeconds: common.intervalSeconds, cells: common.cells, ...report }));
  const bad = report.lostBeforeSnapshot + report.lostAfterSigterm + report.inconsistentRounds;
  console.log(bad === 0 ? 'OK: no acknowledged write lost beyond the promised window' : 'FAILED: see the rounds above');
  process.exitCode = bad === 0 ? 0 : 1;
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
