/**
 * `npm test`: starts one S3 test server for the whole run (Ceph RGW where installed, else s3rver, said
 * loudly), then runs every test file under c8 with node:test, and stops the server whatever happens.
 * Arguments are passed to node --test (e.g. a file name to run just that file).
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { startS3Server } from './support/s3-server.js';

/** The whole suite takes a few minutes on 2 cores; this is far past that, and far short of CI's limit. */
const SUITE_DEADLINE_MS = 30 * 60_000;

const files = process.argv.slice(2).filter((arg) => !arg.startsWith('-'));
const flags = process.argv.slice(2).filter((arg) => arg.startsWith('-'));
const testFiles = files.length > 0 ? files : readdirSync('test').filter((name) => name.endsWith('.test.ts')).sort().map((name) => `test/${name}`);

// Said first, so a log shows which runtime each run used (CI runs on Node 24, see .ci/with-node24).
console.log(`cubecache tests: node ${process.version} (${process.execPath})`);
const s3 = await startS3Server();
let code = 1;
try {
  const child = spawn(
    process.execPath,
    ['node_modules/c8/bin/c8.js', '--reporter=text-summary', '--reporter=lcov', '--include=lib/**', '--include=server.ts',
      process.execPath, '--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', '--test-timeout=120000', ...flags, ...testFiles],
    {
      stdio: 'inherit',
      detached: true,
      env: {
        ...process.env,
        TEST_S3_ENDPOINT: s3.endpoint,
        TEST_S3_ACCESS_KEY: s3.accessKeyId,
        TEST_S3_SECRET_KEY: s3.secretAccessKey,
        TEST_S3_KIND: s3.kind,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
    },
  );
  // A test file that never ends (a server process nobody stopped keeps its event loop alive) would hold the run
  // until CI's own limit, with no word of why: past the deadline the whole tree goes, and the run fails saying so.
  const deadline = setTimeout(() => {
    console.error(`\n!! the suite did not finish within ${SUITE_DEADLINE_MS / 60_000} minutes: stopping it. The spec output above shows the files that finished; a file missing from it is the one that hung.\n`);
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* already gone */ }
  }, SUITE_DEADLINE_MS);
  // The tree runs in a process group of its own, so that it can be stopped whole; an interrupt still reaches it.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => { try { process.kill(-child.pid!, signal); } catch { /* already gone */ } });
  }
  code = await new Promise<number>((resolve) => child.on('exit', (status, signal) => resolve(status ?? (signal ? 1 : 0))));
  clearTimeout(deadline);
} finally {
  await s3.stop();
}
if (s3.kind !== 'ceph') {
  console.error('\n!! The S3 suite ran against s3rver, a fake: conditional writes (commit races, two servers on one prefix) and signature checks were NOT verified. Install radosgw ceph-mon ceph-osd (see README) for the full suite.\n');
}
process.exit(code);
