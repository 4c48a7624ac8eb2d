/** server.ts as a process: configuration, signals, exit codes, logs. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { AUTH, openFileStore, openS3Store } from './support/app.js';
import { call } from './support/http.js';
import { spawnServer, startServerProcess } from './support/process.js';

const CELLS = '4096';

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal}: finishes, writes a final backup, exits 0, and the write is there after a restart`, async (t) => {
    const { dir } = await openFileStore(t);
    const env = { DATA_DIR: dir, CUBE_CELLS: CELLS, AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password, BACKUP_INTERVAL_SECONDS: '0' };
    const a = await startServerProcess(t, env);
    assert.equal((await call(a.url, '/request', { body: { action: 1, index: 9, category: 42 }, auth: AUTH })).status, 200);
    a.child.kill(signal);
    assert.equal(await a.exited, 0);
    assert.equal((await a.waitForEvent('shutdown_finished')).finalBackup, 'written');
    const b = await startServerProcess(t, env);
    assert.equal((await call(b.url, '/request', { body: { index: 9 }, auth: AUTH })).json.category, 42);
    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0);
    assert.equal((await b.waitForEvent('shutdown_finished')).finalBackup, 'unchanged');
  });
}

test('a port already in use: non-zero exit with the reason', async (t) => {
  const holder = createServer().listen(0, '127.0.0.1');
  await once(holder, 'listening');
  t.after(() => holder.close());
  const { dir } = await openFileStore(t);
  const port = String((holder.address() as { port: number }).port);
  const proc = spawnServer(t, { DATA_DIR: dir, CUBE_CELLS: CELLS, AUTH_PASSWORD: 'x', HOST: '127.0.0.1', PORT: port });
  assert.equal(await proc.exited, 1);
  assert.match(proc.output(), new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
});

test('a bad variable: exit 2 with one error naming it', async (t) => {
  const proc = spawnServer(t, { CUBE_CELLS: 'lots', AUTH_PASSWORD: 'x' });
  assert.equal(await proc.exited, 2);
  const event = await proc.waitForEvent('config_invalid');
  assert.equal(event.variable, 'CUBE_CELLS');
  assert.match(String(event.message), /^CUBE_CELLS: must be a whole number/);
});

test('WORLD_SHAPE and CUBE_CELLS that disagree: exit 2 naming both; WORLD_SHAPE alone shapes the world /stats shows', async (t) => {
  const proc = spawnServer(t, { WORLD_SHAPE: '16x8x12', CUBE_CELLS: CELLS, AUTH_PASSWORD: 'x' });
  assert.equal(await proc.exited, 2);
  const event = await proc.waitForEvent('config_invalid');
  assert.equal(event.variable, 'WORLD_SHAPE');
  assert.match(String(event.message), /^WORLD_SHAPE: 16x8x12 holds 1536 cells but CUBE_CELLS is 4096/);
  const { dir } = await openFileStore(t);
  const a = await startServerProcess(t, { DATA_DIR: dir, WORLD_SHAPE: '16x8x12', WORLD_ORDER: 'zxy', AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password });
  const stats = await call(a.url, '/stats', { auth: AUTH });
  assert.equal(stats.json.cells, 1536);
  assert.deepEqual([stats.json.shape, stats.json.order], [{ x: 16, y: 8, z: 12 }, 'zxy']);
  a.child.kill('SIGTERM');
  assert.equal(await a.exited, 0);
});

test('REQUIRE_S3_BUCKET=true without S3_BUCKET: exit 2 naming S3_BUCKET, nothing listens', async (t) => {
  const { dir } = await openFileStore(t);
  const proc = spawnServer(t, { REQUIRE_S3_BUCKET: 'true', DATA_DIR: dir, AUTH_PASSWORD: 'x', CUBE_CELLS: CELLS });
  assert.equal(await proc.exited, 2);
  const event = await proc.waitForEvent('config_invalid');
  assert.equal(event.variable, 'S3_BUCKET');
  assert.match(String(event.message), /^S3_BUCKET: is required here \(REQUIRE_S3_BUCKET=true\): set S3_BUCKET/);
  assert.doesNotMatch(proc.output(), /"listening"|world_empty/);
});

test('AUTH_PASSWORD_PREVIOUS: the new and the previous password both log in during a rotation, neither is logged', async (t) => {
  const { dir } = await openFileStore(t);
  const a = await startServerProcess(t, { DATA_DIR: dir, CUBE_CELLS: CELLS, AUTH_USER: 'game', AUTH_PASSWORD: 'the-new-password', AUTH_PASSWORD_PREVIOUS: 'the-old-password' });
  for (const password of ['the-new-password', 'the-old-password']) {
    assert.equal((await call(a.url, '/request', { body: { index: 1 }, auth: { user: 'game', password } })).status, 200, password);
  }
  assert.equal((await call(a.url, '/request', { body: { index: 1 }, auth: { user: 'game', password: 'a-guess' } })).status, 401);
  a.child.kill('SIGTERM');
  assert.equal(await a.exited, 0);
  assert.doesNotMatch(a.output(), /the-new-password|the-old-password/);
});

test('no AUTH_PASSWORD: a random password, logged once, that works; no credentials in any other line', async (t) => {
  const { dir } = await openFileStore(t);
  const a = await startServerProcess(t, { DATA_DIR: dir, CUBE_CELLS: CELLS });
  const generated = await a.waitForEvent('auth_password_generated');
  const password = String(generated.password);
  assert.ok(password.length >= 20);
  assert.equal((await call(a.url, '/request', { body: { index: 1 }, auth: { user: 'cubecache', password } })).status, 200);
  assert.equal((await call(a.url, '/request', { body: { index: 1 }, auth: { user: 'cubecache', password: 'password' } })).status, 401);
  a.child.kill('SIGTERM');
  await a.exited;
  const b = await startServerProcess(t, { DATA_DIR: dir, CUBE_CELLS: CELLS });
  assert.notEqual((await b.waitForEvent('auth_password_generated')).password, password, 'never a fixed default');
  const lines = a.output().split('\n').filter((line) => line.includes(password));
  assert.equal(lines.length, 1);
});

test('a backup that cannot be read: the process exits 1 without listening, saying what to do', async (t) => {
  const { dir, store } = await openFileStore(t);
  await store.put('cubecache/commits/000000000001.json', new TextEncoder().encode('{not json'));
  const proc = spawnServer(t, { DATA_DIR: dir, CUBE_CELLS: CELLS, AUTH_PASSWORD: 'x', PORT: '0', HOST: '127.0.0.1' });
  assert.equal(await proc.exited, 1);
  assert.ok(!proc.events.some((e) => e.event === 'listening'));
  assert.match(proc.output(), /cannot restore the world .* not valid JSON.*move its commit object/);
});

test('S3 from the environment: S3_BUCKET, AWS_ENDPOINT_URL_S3, S3_FORCE_PATH_STYLE, the SDK credential chain', async (t) => {
  const fixture = await openS3Store();
  const env = {
    S3_BUCKET: fixture.bucket, S3_PREFIX: fixture.prefix, S3_FORCE_PATH_STYLE: 'true', AWS_ENDPOINT_URL_S3: fixture.server.endpoint,
    AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: fixture.server.accessKeyId, AWS_SECRET_ACCESS_KEY: fixture.server.secretAccessKey,
    CUBE_CELLS: CELLS, AUTH_USER: AUTH.user, AUTH_PASSWORD: AUTH.password, BACKUP_INTERVAL_SECONDS: '0',
  };
  const a = await startServerProcess(t, env);
  await call(a.url, '/request', { body: { action: 1, index: 5, category: 5 }, auth: AUTH });
  const dump = await call(a.url, '/s3dump', { body: {}, auth: AUTH });
  assert.equal(dump.status, 200, dump.text);
  a.child.kill('SIGTERM');
  assert.equal(await a.exited, 0);
  assert.ok((await fixture.store.list(`${fixture.prefix}commits/`)).length >= 1);
  const b = await startServerProcess(t, env);
  assert.equal((await call(b.url, '/request', { body: { index: 5 }, auth: AUTH })).json.category, 5);
  assert.ok(!b.output().includes(AUTH.password) && !b.output().includes(fixture.server.secretAccessKey), 'no secret in the log');
});
