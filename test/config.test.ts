/** lib/config.ts: loadConfig's defaults, variables and errors (the durability settings are in durability-config.test.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../lib/config.js';

describe('config', () => {
  const random = () => 'generated-password';

  test('defaults: port 5000, all interfaces, local folder, a generated password', () => {
    const config = loadConfig({}, random);
    assert.equal(config.port, 5000);
    assert.equal(config.host, '0.0.0.0');
    assert.equal(config.cells, 16_777_216);
    assert.deepEqual(config.store, { kind: 'file', dir: './data' });
    assert.deepEqual(config.auth, { user: 'cubecache', password: 'generated-password', generated: true });
    assert.equal(config.prefix, 'cubecache/');
    assert.equal(config.legacyKey, 'data.bin');
    assert.equal(config.backupRetain, 24);
    assert.equal(config.backupIntervalSeconds, 600);
    assert.equal(config.shipIntervalSeconds, 1);
    assert.deepEqual(config.wal, { dir: './data/wal', sync: 'write' });
    assert.equal(config.advertiseUrl, undefined, 'derived once the server listens');
    assert.deepEqual(config.replication, { mode: 'sync', timeoutMs: 1000 });
  });

  test('ADVERTISE_URL, REPLICATION and REPLICATION_TIMEOUT_MS', () => {
    const config = loadConfig({ ADVERTISE_URL: 'http://10.0.1.23:5000', REPLICATION: 'async', REPLICATION_TIMEOUT_MS: '250' }, random);
    assert.equal(config.advertiseUrl, 'http://10.0.1.23:5000');
    assert.deepEqual(config.replication, { mode: 'async', timeoutMs: 250 });
    // One spelling of each origin: a trailing slash, an upper-case host or a default port change nothing.
    assert.equal(loadConfig({ ADVERTISE_URL: 'http://Box.Internal:5000/' }, random).advertiseUrl, 'http://box.internal:5000');
    assert.equal(loadConfig({ ADVERTISE_URL: 'https://[fd00::17]:443' }, random).advertiseUrl, 'https://[fd00::17]');
    assert.equal(loadConfig({ REPLICATION: 'SYNC' }, random).replication.mode, 'sync');
    for (const bad of ['10.0.1.23:5000', 'ftp://10.0.1.23:5000', 'http://10.0.1.23:5000/world', 'http://10.0.1.23:5000/?a=1',
      'http://u:p@10.0.1.23:5000', 'http://10.0.1.23:5000/#x', 'http://', 'not a url']) {
      assert.throws(() => loadConfig({ ADVERTISE_URL: bad }, random), (err: unknown) => err instanceof ConfigError && err.variable === 'ADVERTISE_URL', bad);
    }
    assert.throws(() => loadConfig({ ADVERTISE_URL: 'ftp://u:secret@h:1/x' }, random), (err: unknown) => !(err as Error).message.includes('secret'), 'the password is not repeated');
    for (const [env, variable] of [[{ REPLICATION: 'semi' }, 'REPLICATION'], [{ REPLICATION_TIMEOUT_MS: '49' }, 'REPLICATION_TIMEOUT_MS'],
      [{ REPLICATION_TIMEOUT_MS: '60001' }, 'REPLICATION_TIMEOUT_MS'], [{ REPLICATION_TIMEOUT_MS: '1.5' }, 'REPLICATION_TIMEOUT_MS']] as const) {
      assert.throws(() => loadConfig(env, random), (err: unknown) => err instanceof ConfigError && err.variable === variable, JSON.stringify(env));
    }
  });

  test('reads every variable', () => {
    const config = loadConfig({
      PORT: '8080', HOST: '127.0.0.1', AUTH_USER: 'u', AUTH_PASSWORD: 'p', CUBE_CELLS: '1024', S3_BUCKET: 'b',
      S3_PREFIX: 'w/', S3_LEGACY_KEY: 'old.bin', S3_FORCE_PATH_STYLE: 'true', BACKUP_RETAIN: '3', BACKUP_INTERVAL_SECONDS: '0',
      TRUST_PROXY: '2', MAX_CONNECTIONS: '50', LOG_REQUESTS: 'true', AUTH_FAILURE_LIMIT: '0',
    }, random);
    assert.equal(config.authFailureLimit, 0);
    assert.equal(loadConfig({}, random).authFailureLimit, 20);
    assert.equal(config.trustedProxies, 2);
    assert.equal(config.maxConnections, 50);
    assert.equal(config.logRequests, true);
    assert.equal(loadConfig({ TRUST_PROXY: 'true' }, random).trustedProxies, 1);
    assert.equal(loadConfig({}, random).trustedProxies, 0);
    assert.equal(config.port, 8080);
    assert.deepEqual(config.auth, { user: 'u', password: 'p', generated: false });
    assert.deepEqual(config.store, { kind: 's3', bucket: 'b', forcePathStyle: true });
    assert.equal(config.cells, 1024);
    assert.equal(config.prefix, 'w/');
    assert.equal(config.legacyKey, 'old.bin');
    assert.equal(config.backupRetain, 3);
    assert.equal(config.backupIntervalSeconds, 0);
    assert.equal(loadConfig({ BACKUP_INTERVAL_SECONDS: '0.25' }, random).backupIntervalSeconds, 0.25);
  });

  test('AUTH_PASSWORD_PREVIOUS is accepted beside AUTH_PASSWORD; equal to it, it is ignored', () => {
    assert.deepEqual(loadConfig({ AUTH_PASSWORD: 'new', AUTH_PASSWORD_PREVIOUS: 'old' }, random).auth, { user: 'cubecache', password: 'new', previousPassword: 'old', generated: false });
    assert.deepEqual(loadConfig({ AUTH_PASSWORD: 'same', AUTH_PASSWORD_PREVIOUS: 'same' }, random).auth, { user: 'cubecache', password: 'same', generated: false });
    assert.deepEqual(loadConfig({ AUTH_PASSWORD: 'new', AUTH_PASSWORD_PREVIOUS: '' }, random).auth, { user: 'cubecache', password: 'new', generated: false }, 'empty is unset');
  });

  test('REQUIRE_S3_BUCKET=true refuses a start without S3_BUCKET, saying what to set and why', () => {
    assert.throws(() => loadConfig({ REQUIRE_S3_BUCKET: 'true' }, random), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.variable, 'S3_BUCKET');
      assert.match(err.message, /set S3_BUCKET/);
      assert.match(err.message, /next deploy deletes/);
      return true;
    });
    assert.deepEqual(loadConfig({ REQUIRE_S3_BUCKET: 'true', S3_BUCKET: 'world' }, random).store, { kind: 's3', bucket: 'world', forcePathStyle: false });
    assert.deepEqual(loadConfig({ REQUIRE_S3_BUCKET: 'false' }, random).store, { kind: 'file', dir: './data' });
  });

  test('one clear error naming the bad variable', () => {
    const bad: Array<[Record<string, string>, string]> = [
      [{ PORT: 'eighty' }, 'PORT'], [{ PORT: '70000' }, 'PORT'], [{ CUBE_CELLS: '0' }, 'CUBE_CELLS'], [{ CUBE_CELLS: '-5' }, 'CUBE_CELLS'],
      [{ CUBE_CELLS: '1.5' }, 'CUBE_CELLS'], [{ S3_PREFIX: 'noslash' }, 'S3_PREFIX'], [{ S3_FORCE_PATH_STYLE: 'maybe' }, 'S3_FORCE_PATH_STYLE'],
      [{ BACKUP_RETAIN: '0' }, 'BACKUP_RETAIN'], [{ BACKUP_INTERVAL_SECONDS: 'often' }, 'BACKUP_INTERVAL_SECONDS'],
      [{ BACKUP_INTERVAL_SECONDS: '-1' }, 'BACKUP_INTERVAL_SECONDS'], [{ TRUST_PROXY: 'nginx' }, 'TRUST_PROXY'],
      [{ MAX_CONNECTIONS: '0' }, 'MAX_CONNECTIONS'], [{ LOG_REQUESTS: 'loud' }, 'LOG_REQUESTS'],
    ];
    bad.push([{ AUTH_USER: 'team:one', AUTH_PASSWORD: 'p' }, 'AUTH_USER'], [{ AUTH_PASSWORD_PREVIOUS: 'old' }, 'AUTH_PASSWORD_PREVIOUS'],
      [{ REQUIRE_S3_BUCKET: 'true' }, 'S3_BUCKET'], [{ REQUIRE_S3_BUCKET: 'sure', S3_BUCKET: 'b' }, 'REQUIRE_S3_BUCKET']);
    for (const [env, variable] of bad) {
      assert.throws(() => loadConfig(env, random), (err: unknown) => err instanceof ConfigError && err.variable === variable && err.message.startsWith(variable), JSON.stringify(env));
    }
  });

  test('the world\'s shape: 256x256x256 in xzy order by default, flat for any other CUBE_CELLS, WORLD_SHAPE sets the cells', () => {
    assert.deepEqual(loadConfig({}, random).shape, { x: 256, y: 256, z: 256, order: 'xzy' });
    assert.equal(loadConfig({ CUBE_CELLS: '4096' }, random).shape, undefined, 'another count is a flat world');
    assert.deepEqual(loadConfig({ CUBE_CELLS: '16777216', WORLD_ORDER: 'YXZ' }, random).shape, { x: 256, y: 256, z: 256, order: 'yxz' });
    const shaped = loadConfig({ WORLD_SHAPE: '16x8x12' }, random);
    assert.equal(shaped.cells, 1536);
    assert.deepEqual(shaped.shape, { x: 16, y: 8, z: 12, order: 'xzy' });
    assert.equal(loadConfig({ WORLD_SHAPE: '16x8x12', CUBE_CELLS: '1536' }, random).cells, 1536, 'both set and agreeing');
  });

  test('WORLD_SHAPE and CUBE_CELLS that disagree, a bad shape or a bad order: one error naming the variable (and both, when they disagree)', () => {
    assert.throws(() => loadConfig({ WORLD_SHAPE: '16x8x12', CUBE_CELLS: '1000' }, random), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.variable, 'WORLD_SHAPE');
      assert.match(err.message, /^WORLD_SHAPE: 16x8x12 holds 1536 cells but CUBE_CELLS is 1000/);
      return true;
    });
    for (const [env, variable] of [
      [{ WORLD_SHAPE: '16x8' }, 'WORLD_SHAPE'], [{ WORLD_SHAPE: '0x8x8' }, 'WORLD_SHAPE'], [{ WORLD_SHAPE: '1024x1024x1024' }, 'WORLD_SHAPE'],
      [{ WORLD_ORDER: 'xxy' }, 'WORLD_ORDER'], [{ WORLD_ORDER: 'up' }, 'WORLD_ORDER'], [{ WORLD_SHAPE: '2x2x2', CUBE_CELLS: 'eight' }, 'CUBE_CELLS'],
    ] as const) {
      assert.throws(() => loadConfig(env, random), (err: unknown) => err instanceof ConfigError && err.variable === variable, JSON.stringify(env));
    }
  });
});
