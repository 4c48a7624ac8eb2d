/**
 * Plays Elastic Beanstalk's Node.js deploy on this machine, on the node the suite runs on (Node 24 in CI): the
 * bundle `npm run bundle` builds, unpacked into a fresh folder, `npm install` in production mode, the
 * Buildfile's command, then the Procfile's web command with the bundle's environment properties
 * (.ebextensions) plus those the README sets on the environment, against the test S3 server. The health
 * check must answer, nothing from devDependencies may be needed, and without S3_BUCKET it must refuse.
 */
import assert from 'node:assert/strict';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { s3Bucket } from './support/app.js';
import { environmentProperties } from './support/ebextensions.js';
import { call, waitFor } from './support/http.js';

const run = promisify(execFile);

/** The command of a `name: command` line in a Procfile or Buildfile. */
function commandOf(file: string, name: string): string {
  const line = readFileSync(file, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
  assert.ok(line, `${file} has no ${name}: line`);
  return line.slice(name.length + 1).trim();
}

async function freePort(): Promise<number> {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as { port: number };
  await new Promise((r) => probe.close(r));
  return port;
}

test('the bundle deploys as Elastic Beanstalk deploys it and answers its health check', { timeout: 300_000 }, async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'cubecache-eb-'));
  t.after(() => rm(work, { recursive: true, force: true }));
  const zip = join(work, 'cubecache.zip');
  const app = join(work, 'app');
  await run(process.execPath, ['scripts/bundle.mjs', zip]);
  // Unpacked by Python's zipfile, not by our own writer's logic: an independent check of the archive.
  await run('python3', ['-m', 'zipfile', '-e', zip, app]);

  const { stdout: listing } = await run('python3', ['-m', 'zipfile', '-l', zip]);
  assert.ok(!/\.ts\s/.test(listing.replace(/\.d\.ts/g, '')), 'no TypeScript sources in the bundle');
  assert.ok(!/test\/|bench\/|node_modules\//.test(listing), 'no tests, benchmarks or modules in the bundle');
  assert.ok(!/\.map\s/.test(listing), 'no source maps (production node does not read them)');
  assert.ok(!/cloudscript\//.test(listing), 'no PlayFab modules (they deploy to PlayFab and Azure, not here)');
  for (const file of ['Procfile', 'Buildfile', 'package.json', 'package-lock.json', 'dist/server.js', 'dist/lib/console/page.html', 'dist/lib/console/console.js', '.ebextensions/cubecache.config', '.platform/nginx/conf.d/cubecache.conf', '.platform/hooks/prebuild/01-cubecache-state.sh', '.platform/confighooks/prebuild/01-cubecache-state.sh']) {
    assert.ok(existsSync(join(app, file)), `the bundle holds ${file}`);
  }

  // The platform's node first on PATH: the one this suite runs on, so CI plays the deploy on Node 24.
  const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ''}`;
  const { stdout: nodeVersion } = await run('sh', ['-c', 'node --version'], { cwd: app, env: { ...process.env, PATH } });
  assert.equal(nodeVersion.trim(), process.version);
  t.diagnostic(`deploy played on node ${process.version}`);

  // What the platform runs: production install (no devDependencies), then the Buildfile.
  await run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund'], { cwd: app, env: { ...process.env, PATH, NODE_ENV: 'production' } });
  for (const dev of ['typescript', 'tsx', 'c8', 's3rver', '@types/node']) assert.ok(!existsSync(join(app, 'node_modules', dev)), `${dev} is not installed in production`);
  const buildCommand = commandOf(join(app, 'Buildfile'), 'build');
  const minimum = Number(/>=\s*(\d+)/.exec(JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')).engines.node)![1]);
  if (Number(process.versions.node.split('.')[0]) < minimum) {
    // A platform branch older than engines (a machine's own node 20): the Buildfile fails the deploy, saying why.
    const refused = await run('sh', ['-c', buildCommand], { cwd: app, env: { ...process.env, PATH } }).then(() => undefined, (err: { code: number; stderr: string }) => err);
    assert.ok(refused, `the Buildfile accepted Node.js ${process.version}`);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /needs >=22 \(package\.json engines\)\. Choose the Node\.js 24 platform branch/);
    t.diagnostic(`node ${process.version} is older than engines: the Buildfile refused the deploy, as it should; the rest of the play runs on Node 24 (bash .ci/run)`);
    return;
  }
  const build = await run('sh', ['-c', buildCommand], { cwd: app, env: { ...process.env, PATH } });
  assert.match(build.stdout, new RegExp(`bundle verified on Node\\.js ${process.version.replace(/\./g, '\\.')}`));

  // The environment as Elastic Beanstalk builds it: the bundle's properties, then the environment's own.
  const bundled = environmentProperties(join(app, '.ebextensions/cubecache.config'));
  // The write-ahead log lives outside the app folder, in the folder the prebuild hook makes; here under a temp root.
  assert.match(bundled.WAL_DIR ?? '', /^\/var\/lib\/cubecache\//);
  const stateRoot = await mkdtemp(join(tmpdir(), 'cubecache-eb-state-'));
  t.after(() => rm(stateRoot, { recursive: true, force: true }));
  const stateDir = join(stateRoot, 'var/lib/cubecache');
  // Python's zipfile does not restore modes: the hook's executable bit is read from the archive itself.
  const { stdout: mode } = await run('python3', ['-c', 'import sys, zipfile; print(oct(zipfile.ZipFile(sys.argv[1]).getinfo(sys.argv[2]).external_attr >> 16))', zip, '.platform/hooks/prebuild/01-cubecache-state.sh']);
  assert.equal(mode.trim(), '0o100755', 'the platform hook is executable in the bundle');
  const hook = await run('bash', [join(app, '.platform/hooks/prebuild/01-cubecache-state.sh')], { cwd: app, env: { ...process.env, PATH, CUBECACHE_STATE_DIR: stateDir } });
  assert.match(hook.stdout, /state folder .* ready/);
  const walDir = join(stateRoot, bundled.WAL_DIR!);
  const { server, bucket, client } = await s3Bucket();
  const properties = {
    ...bundled, WAL_DIR: walDir, PATH, PORT: String(await freePort()), CUBE_CELLS: '4096', AUTH_USER: 'eb', AUTH_PASSWORD: 'eb-password', AWS_REGION: 'us-east-1',
    // The test S3 server stands in for S3 (on AWS the endpoint is the default and credentials the instance role's).
    AWS_ENDPOINT_URL_S3: server.endpoint, S3_FORCE_PATH_STYLE: 'true', AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
    AWS_REQUEST_CHECKSUM_CALCULATION: 'WHEN_REQUIRED', AWS_RESPONSE_CHECKSUM_VALIDATION: 'WHEN_REQUIRED',
  };
  const web = (env: Record<string, string>) => {
    const child = spawn('sh', ['-c', `exec ${commandOf(join(app, 'Procfile'), 'web')}`], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => { output += c; });
    child.stderr.on('data', (c) => { output += c; });
    t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
    return { child, exited: once(child, 'exit'), output: () => output };
  };

  // Forgetting S3_BUCKET: a refusal naming it, not a world in the app folder that the next deploy deletes.
  const unconfigured = web(properties);
  const [refusedCode] = await unconfigured.exited;
  assert.equal(refusedCode, 2, unconfigured.output());
  assert.match(unconfigured.output(), /"variable":"S3_BUCKET"/);
  assert.ok(!existsSync(join(app, 'data')), 'nothing written to the app folder');

  const deployed = web({ ...properties, S3_BUCKET: bucket });
  const url = `http://127.0.0.1:${properties.PORT}`;
  await waitFor(`the health check on port ${properties.PORT}`, async () => (await call(url, '/healthcheck').catch(() => undefined))?.status === 200, 30_000);
  assert.equal((await call(url, '/request', { body: { action: 1, index: 1, category: 7 }, auth: { user: 'eb', password: 'eb-password' } })).json.category, 7);
  // The console's files are not TypeScript: the bundle carries them beside the compiled route that serves them.
  assert.equal((await call(url, '/console/console.js', { auth: { user: 'eb', password: 'eb-password' } })).status, 200);
  deployed.child.kill('SIGTERM');
  const [code] = await deployed.exited;
  assert.equal(code, 0, deployed.output());
  assert.match(deployed.output(), /"finalBackup":"written"/);
  const listed = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${bundled.S3_PREFIX}commits/` }));
  assert.ok((listed.KeyCount ?? 0) >= 1, 'the final backup is in the bucket, under the bundle\'s prefix');
  assert.ok(!deployed.output().includes('eb-password') && !deployed.output().includes(server.secretAccessKey), 'no secret in the log');
  assert.ok((await readdir(walDir)).some((name) => name.endsWith('.wal')), 'the log was kept in the state folder');
  assert.ok(!existsSync(join(app, 'data')), 'and nothing in the app folder');
});
