import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { basicChecker, parseBasic } from '../lib/auth.js';
import { CorruptBackupError, decodeBackup, encodeBackupWhole as encodeBackup, sha256Hex } from '../lib/backup-format.js';
import { ConfigError, loadConfig } from '../lib/config.js';
import { Cube, SNAPSHOT_SLICE_BYTES } from '../lib/cube.js';
import { createLog } from '../lib/log.js';

const header = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('auth', () => {
  test('parseBasic reads user and password, colons allowed in the password', () => {
    assert.deepEqual(parseBasic(header('u', 'p:w:d')), { user: 'u', password: 'p:w:d' });
    assert.deepEqual(parseBasic('basic ' + Buffer.from('a:').toString('base64')), { user: 'a', password: '' });
    assert.equal(parseBasic(undefined), undefined);
    assert.equal(parseBasic('Bearer abc'), undefined);
    assert.equal(parseBasic('Basic ' + Buffer.from('nocolon').toString('base64')), undefined);
  });

  test('basicChecker accepts exactly the configured pair', () => {
    const check = basicChecker({ user: 'user', password: 'password' });
    assert.equal(check(header('user', 'password')), true);
    assert.equal(check(header('user', 'passwordx')), false);
    assert.equal(check(header('User', 'password')), false);
    assert.equal(check(header('user', '')), false);
    assert.equal(check(undefined), false);
    assert.equal(check('Basic !!!'), false);
    assert.equal(check(header('user', 'password') + 'x'), false, 'a longer header');
    assert.equal(check(header('user', 'password').slice(0, -1)), false, 'a shorter header');
    assert.equal(check(header('user', 'password').replace('Basic', 'basic')), true, 'the scheme in another case, off the fast path');
    assert.equal(check(header('user', 'password').replace('Basic ', 'Basic   ')), true, 'more spaces, off the fast path');
  });

  test('basicChecker: long credentials and non-ASCII ones take the full path and still match exactly', () => {
    const long = { user: 'u'.repeat(150), password: 'p'.repeat(300) };
    const check = basicChecker(long);
    assert.equal(check(header(long.user, long.password)), true);
    assert.equal(check(header(long.user, long.password.slice(1))), false);
    const unicode = basicChecker({ user: 'jöran', password: 'pässwörd✓' });
    assert.equal(unicode(header('jöran', 'pässwörd✓')), true);
    assert.equal(unicode(header('joran', 'passwords')), false);
  });
  test('basicChecker with a previous password (a rotation): both passwords log in, for the same user only', () => {
    const check = basicChecker({ user: 'user', password: 'new-password', previousPassword: 'old-password' });
    assert.equal(check(header('user', 'new-password')), true);
    assert.equal(check(header('user', 'old-password')), true);
    assert.equal(check(header('other', 'old-password')), false);
    assert.equal(check(header('user', 'older-password')), false);
    assert.equal(check(header('user', 'old-password').replace('Basic', 'basic')), true, 'the previous password off the fast path too');
    assert.equal(basicChecker({ user: 'user', password: 'new-password' })(header('user', 'old-password')), false, 'no previous password: only the current one');
  });
});

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
});

describe('cube', () => {
  test('reads back what it wrote, counts versions, snapshots are copies', () => {
    const cube = new Cube(8);
    cube.write(7, { category: 1, rotation: 2, sideA: 3, sideB: 4 });
    assert.deepEqual(cube.read(7), { category: 1, rotation: 2, sideA: 3, sideB: 4 });
    assert.deepEqual([...cube.bytes.subarray(28)], [1, 2, 3, 4]);
    const snapshot = cube.snapshot();
    cube.write(7, { category: 9, rotation: 9, sideA: 9, sideB: 9 });
    assert.equal(snapshot.slices, 1);
    assert.deepEqual([...snapshot.readSlice(0).subarray(28)], [1, 2, 3, 4]);
    snapshot.release();
    assert.equal(snapshot.version, 1);
    assert.equal(cube.version, 2);
  });

  test('a snapshot is the world at one instant, whatever is written while it is read, slice by slice', () => {
    const cells = (3 * SNAPSHOT_SLICE_BYTES) / 4 + 10; // three whole slices and a short fourth
    const cube = new Cube(cells);
    for (let i = 0; i < cells; i += 1000) cube.write(i, { category: i & 255, rotation: 1, sideA: 0, sideB: 0 });
    const before = cube.bytes.slice();
    const snapshot = cube.snapshot();
    assert.equal(snapshot.slices, 4);
    assert.throws(() => cube.snapshot(), /already/);
    const sliceCells = SNAPSHOT_SLICE_BYTES / 4;
    cube.write(5, { category: 200, rotation: 0, sideA: 0, sideB: 0 }); // slice 0, before it is read
    const read: Uint8Array[] = [snapshot.readSlice(0)];
    cube.write(6, { category: 201, rotation: 0, sideA: 0, sideB: 0 }); // slice 0, after it is read: no copy needed
    cube.writeRange(sliceCells - 1, new Uint8Array(8).fill(9)); // across slices 0 and 1
    cube.write(2 * sliceCells + 3, { category: 202, rotation: 0, sideA: 0, sideB: 0 });
    read.push(snapshot.readSlice(1), snapshot.readSlice(2));
    cube.replace(new Uint8Array(cells * 4).fill(3)); // everything, slice 3 not yet read
    read.push(snapshot.readSlice(3));
    snapshot.release();
    assert.ok(Buffer.concat(read).equals(before));
    assert.equal(cube.cellsInUse, cells);
    cube.snapshot().release(); // released: a new one may start
  });

  test('keeps cells in use, the category histogram and bytes written up to date through every kind of write', () => {
    const cube = new Cube(8);
    const recount = () => {
      const categories = new Array(256).fill(0);
      let used = 0;
      for (let i = 0; i < 8; i++) {
        const c = cube.read(i);
        categories[c.category]++;
        if (c.category || c.rotation || c.sideA || c.sideB) used++;
      }
      assert.equal(cube.cellsInUse, used);
      assert.deepEqual([...cube.categories], categories);
    };
    recount();
    cube.write(1, { category: 5, rotation: 0, sideA: 0, sideB: 0 });
    cube.write(2, { category: 0, rotation: 0, sideA: 0, sideB: 1 });
    cube.write(1, { category: 6, rotation: 0, sideA: 0, sideB: 0 });
    recount();
    cube.write(2, { category: 0, rotation: 0, sideA: 0, sideB: 0 });
    recount();
    cube.writeRange(6, new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0]));
    recount();
    const world = new Uint8Array(32).map((_, i) => (i % 3 === 0 ? i : 0));
    cube.replace(world);
    recount();
    assert.equal(cube.bytesWritten, 4 * 4 + 8 + 32);
    assert.ok(cube.holds(3, { category: 12, rotation: 0, sideA: 0, sideB: 15 }));
    assert.ok(!cube.holds(3, { category: 12, rotation: 0, sideA: 0, sideB: 0 }));
  });

  test('refuses bytes of the wrong size', () => {
    assert.throws(() => new Cube(8).replace(new Uint8Array(33)), RangeError);
  });
});

describe('backup format', () => {
  test('round-trips and gunzip gives the raw cells', async () => {
    const cells = new Uint8Array(3 * 1024 * 1024 + 5).map((_, i) => (i * 31) % 251);
    const encoded = await encodeBackup(cells);
    assert.equal(encoded.sha256, createHash('sha256').update(cells).digest('hex'));
    assert.equal(encoded.bytes, cells.byteLength);
    assert.equal(encoded.compressedBytes, encoded.body.length);
    assert.deepEqual(new Uint8Array(await decodeBackup(encoded.body, cells.byteLength, encoded.sha256)), cells);
    assert.equal(await sha256Hex(cells), encoded.sha256);
  });

  test('refuses a bad stream, a wrong size and a wrong checksum', async () => {
    const cells = new Uint8Array(4096).fill(7);
    const { body, sha256 } = await encodeBackup(cells);
    await assert.rejects(decodeBackup(body.subarray(0, body.length - 10), 4096, sha256), CorruptBackupError);
    await assert.rejects(decodeBackup(new Uint8Array([1, 2, 3]), 4096, sha256), CorruptBackupError);
    await assert.rejects(decodeBackup(body, 4092, sha256), /more than 4092 bytes/);
    await assert.rejects(decodeBackup(gzipSync(cells.subarray(0, 4000)), 4096, sha256), /holds 4000 bytes, expected 4096/);
    await assert.rejects(decodeBackup(body, 4096, '0'.repeat(64)), /SHA-256/);
  });
});

describe('log', () => {
  test('one JSON line per event, errors spelled out', () => {
    const lines: string[] = [];
    const log = createLog((line) => lines.push(line));
    log.error('boom', { err: Object.assign(new Error('bad'), { code: 'EX' }), n: 1 });
    assert.equal(lines.length, 1);
    assert.ok(lines[0]!.endsWith('\n'));
    const event = JSON.parse(lines[0]!);
    assert.equal(event.level, 'error');
    assert.equal(event.event, 'boom');
    assert.equal(event.n, 1);
    assert.equal(event.err.message, 'bad');
    assert.equal(event.err.code, 'EX');
  });
});
