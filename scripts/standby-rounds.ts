/**
 * `npm run standby-rounds -- [--rounds 20] [--store file|s3] [--fault kill|kill-wal|stop|term|all] [--cells 4096] [--writers 4] [--replication sync|async]`
 * The long run of test/standby.test.ts: a leader and its standby (two real server processes on one store),
 * writers through both, a fault to the leader round after round; prints per round the fault, the writes
 * acknowledged and lost, and the window in which writes failed, then a summary. The s3 store is a Ceph RGW
 * started here; on the s3rver fallback (no conditional writes) the script refuses to run.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createTestBucket, startS3Server, testS3Client } from '../test/support/s3-server.js';
import { runStandbyRounds, StandbyPair, STANDBY_FAULTS, type RoundReport, type StandbyFault } from '../test/support/standby-round.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '20' },
    store: { type: 'string', default: 'file' },
    fault: { type: 'string', default: 'all' },
    cells: { type: 'string', default: '4096' },
    writers: { type: 'string', default: '4' },
    replication: { type: 'string', default: 'sync' },
  },
});
const fault = values.fault!;
if (fault !== 'all' && !STANDBY_FAULTS.includes(fault as StandbyFault)) throw new Error(`--fault must be one of ${STANDBY_FAULTS.join(', ')} or all, not ${fault}`);
if (values.store !== 'file' && values.store !== 's3') throw new Error(`--store must be file or s3, not ${values.store}`);
if (values.replication !== 'sync' && values.replication !== 'async') throw new Error(`--replication must be sync or async, not ${values.replication}`);
const faults: readonly StandbyFault[] = fault === 'all' ? STANDBY_FAULTS : [fault as StandbyFault];

const cleanups: Array<() => unknown> = [];
const owner = { after: (fn: () => unknown) => { cleanups.push(fn); } };
const dir = await mkdtemp(join(tmpdir(), 'cubecache-standby-rounds-'));
cleanups.push(() => rm(dir, { recursive: true, force: true }));
try {
  let storeEnv: Record<string, string>;
  if (values.store === 's3') {
    const s3 = await startS3Server();
    cleanups.push(() => s3.stop());
    if (!s3.conditionalWrites) throw new Error(`the S3 server is ${s3.kind}, which ignores conditional writes: the lease cannot hold there, so the rounds would prove nothing (install Ceph RGW)`);
    const bucket = await createTestBucket(s3, testS3Client(s3));
    storeEnv = { S3_BUCKET: bucket, S3_PREFIX: 'standby/', S3_FORCE_PATH_STYLE: 'true', AWS_ENDPOINT_URL_S3: s3.endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
  } else {
    storeEnv = { DATA_DIR: dir, S3_PREFIX: 'standby/' };
  }
  const log = (line: string) => console.log(line);
  const pair = await StandbyPair.start({ owner, storeEnv, cells: Number(values.cells), env: { REPLICATION: values.replication! }, log: () => {} });
  console.log(`store ${values.store}, REPLICATION=${values.replication}, ${values.cells} cells, ${values.writers} writers, faults ${faults.join(', ')}`);
  const reports = await runStandbyRounds(pair, { rounds: Number(values.rounds), faults, writers: Number(values.writers), log, runMs: [500, 3000] });
  summarize(reports, values.replication === 'sync');
} finally {
  for (const fn of cleanups.reverse()) await fn();
}

function summarize(reports: RoundReport[], sync: boolean): void {
  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]! : NaN;
  };
  console.log('\nfault                 rounds  acked    lost  unequal  window p50  window p99  window max  rejoin gap max');
  for (const f of [...new Set(reports.map((r) => r.fault))]) {
    const rs = reports.filter((r) => r.fault === f);
    const w = rs.map((r) => r.windowMs);
    const sum = (g: (r: RoundReport) => number) => rs.reduce((n, r) => n + g(r), 0);
    console.log(`${f.padEnd(20)}  ${String(rs.length).padStart(6)}  ${String(sum((r) => r.acked)).padStart(6)}  ${String(sum((r) => r.lost)).padStart(6)}  ${String(rs.filter((r) => !r.standbyEqual).length).padStart(7)}  ` +
      `${Math.round(pct(w, 50)).toString().padStart(7)} ms  ${Math.round(pct(w, 99)).toString().padStart(7)} ms  ${Math.round(Math.max(...w)).toString().padStart(7)} ms  ${Math.round(Math.max(...rs.map((r) => r.rejoinGapMs))).toString().padStart(11)} ms`);
  }
  const lost = reports.reduce((n, r) => n + r.lost, 0);
  const bad = reports.filter((r) => !r.standbyEqual || r.odd.length > 0 || !r.recovered).length;
  const oldest = Math.max(0, ...reports.map((r) => r.maxLossAgeMs));
  console.log(JSON.stringify({ rounds: reports.length, acked: reports.reduce((n, r) => n + r.acked, 0), lost, oldestLossMs: Math.round(oldest), badRounds: bad }));
  const ok = bad === 0 && (!sync || lost === 0);
  console.log(ok ? `OK: ${sync ? 'no acknowledged write lost' : `async: oldest lost write acknowledged ${Math.round(oldest)} ms before the fault`}` : 'FAILED: see the rounds above');
  process.exitCode = ok ? 0 : 1;
}
