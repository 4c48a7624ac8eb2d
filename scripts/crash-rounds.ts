/**
 * `npm run crash-rounds -- [--rounds 50] [--store file|s3] [--ship 1] [--snapshot 10] [--cells 65536] [--signal SIGKILL|SIGTERM|mixed] [--sync write|strict] [--loss process|instance|power]`
 * The long run of test/crash.test.ts: kill the real server round after round under concurrent writes and
 * print what was acknowledged and what was lost. The s3 store is a Ceph RGW (or s3rver) started here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runCrashRounds } from '../test/support/crash-rounds.js';
import { createTestBucket, startS3Server, testS3Client } from '../test/support/s3-server.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '50' },
    store: { type: 'string', default: 'file' },
    ship: { type: 'string', default: '1' },
    snapshot: { type: 'string', default: '10' },
    sync: { type: 'string', default: 'write' },
    loss: { type: 'string', default: 'process' },
    cells: { type: 'string', default: '65536' },
    signal: { type: 'string', default: 'mixed' },
  },
});
const cleanups: Array<() => unknown> = [];
const owner = { after: (fn: () => unknown) => { cleanups.push(fn); } };
const common = {
  rounds: Number(values.rounds), cells: Number(values.cells), loss: values.loss as 'process' | 'instance' | 'power',
  signal: values.signal as 'SIGKILL' | 'SIGTERM' | 'mixed', owner, runMs: [500, 3000] as [number, number],
  log: (line: string) => console.log(line),
};
const settings = { SHIP_INTERVAL_SECONDS: values.ship!, BACKUP_INTERVAL_SECONDS: values.snapshot!, WAL_SYNC: values.sync!, S3_PREFIX: 'crash/' };
const dir = await mkdtemp(join(tmpdir(), 'cubecache-crash-'));
cleanups.push(() => rm(dir, { recursive: true, force: true }));
try {
  let report;
  if (values.store === 's3') {
    const s3 = await startS3Server();
    cleanups.push(() => s3.stop());
    const client = testS3Client(s3);
    const bucket = await createTestBucket(s3, client);
    report = await runCrashRounds({
      ...common,
      env: { ...settings, WAL_DIR: join(dir, 'wal'), S3_BUCKET: bucket, S3_FORCE_PATH_STYLE: 'true', AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
    });
  } else {
    report = await runCrashRounds({ ...common, env: { ...settings, DATA_DIR: dir, WAL_DIR: join(dir, 'wal') } });
  }
  console.log(JSON.stringify({ store: values.store, ...settings, loss: common.loss, cells: common.cells, ...report }));
  // A process crash, SIGTERM and (strict) power loss must lose nothing; an instance loss may lose the last cadence.
  const bad = report.inconsistentRounds + report.lostAfterSigterm + (common.loss === 'instance' || (common.loss === 'power' && values.sync !== 'strict') ? 0 : report.lostAfterSigkill);
  console.log(bad === 0 ? 'OK: no acknowledged write lost beyond what this kind of loss may take' : 'FAILED: see the rounds above');
  process.exitCode = bad === 0 ? 0 : 1;
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
