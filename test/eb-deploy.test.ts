/**
 * Plays Elastic Beanstalk's Node.js deploy on this machine: the bundle `npm run bundle` builds, unpacked into
 * a fresh folder, `npm install` in production mode, the Buildfile's command, then the Procfile's web command
 * with PORT set. The health check must answer, and nothing from devDependencies may be needed.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
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
  for (const file of ['Procfile', 'Buildfile', 'package.json', 'package-lock.json', 'dist/server.js', '.ebextensions/cubecache.config', '.platform/nginx/conf.d/cubecache.conf']) {
    assert.ok(existsSync(join(app, file)), `the bundle holds ${file}`);
  }

  // What the platform runs: production install (no devDependencies), then the Buildfile.
  await run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund'], { cwd: app, env: { ...process.env, NODE_ENV: 'production' } });
  for (const dev of ['typescript', 'tsx', 'c8', 's3rver']) assert.ok(!existsSync(join(app, 'node_modules', dev)), `${dev} is not installed in production`);
  const build = await run('sh', ['-c', commandOf(join(app, 'Buildfile'), 'build')], { cwd: app });
  assert.match(build.stdout, /bundle verified/);

  const port = await freePort();
  const web = spawn('sh', ['-c', `exec ${commandOf(join(app, 'Procfile'), 'web')}`], {
    cwd: app,
    env: { PATH: process.env.PATH ?? '', PORT: String(port), DATA_DIR: join(work, 'data'), AUTH_USER: 'eb', AUTH_PASSWORD: 'eb-password', CUBE_CELLS: '4096' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  web.stdout.on('data', (c) => { output += c; });
  web.stderr.on('data', (c) => { output += c; });
  const exited = once(web, 'exit');
  t.after(() => { if (web.exitCode === null) web.kill('SIGKILL'); });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`the health check on port ${port}`, async () => (await call(url, '/healthcheck').catch(() => undefined))?.status === 200, 30_000);
  assert.equal((await call(url, '/request', { body: { action: 1, index: 1, category: 7 }, auth: { user: 'eb', password: 'eb-password' } })).json.category, 7);
  web.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, output);
  assert.match(output, /"finalBackup":"written"/);
});
