/** The durability settings of loadConfig: the write-ahead log, shipping, and prefixes both stores can list back. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../lib/config.js';

const random = () => 'generated-password';

describe('durability configuration', () => {
  test('the log lives in DATA_DIR/wal by default; WAL_DIR moves it; an empty WAL_DIR turns it off', () => {
    assert.deepEqual(loadConfig({ DATA_DIR: '/srv/world/' }, random).wal, { dir: '/srv/world/wal', sync: 'write' });
    assert.deepEqual(loadConfig({ WAL_DIR: '/var/lib/cubecache', WAL_SYNC: 'strict' }, random).wal, { dir: '/var/lib/cubecache', sync: 'strict' });
    assert.equal(loadConfig({ WAL_DIR: '' }, random).wal, undefined);
    assert.throws(() => loadConfig({ WAL_SYNC: 'always' }, random), (err: unknown) => err instanceof ConfigError && err.variable === 'WAL_SYNC');
  });

  test('the one test-only setting: CUBECACHE_TEST_SYNC_MARKS makes the log record what each fdatasync covered (power-loss tests)', () => {
    assert.deepEqual(loadConfig({ WAL_DIR: '/w', CUBECACHE_TEST_SYNC_MARKS: '1' }, random).wal, { dir: '/w', sync: 'write', syncMarks: true });
    assert.deepEqual(loadConfig({ WAL_DIR: '/w', CUBECACHE_TEST_SYNC_MARKS: 'false' }, random).wal, { dir: '/w', sync: 'write' });
    assert.throws(() => loadConfig({ CUBECACHE_TEST_SYNC_MARKS: 'yes please' }, random), (err: unknown) => err instanceof ConfigError && err.variable === 'CUBECACHE_TEST_SYNC_MARKS');
  });

  test('shipping: every second by default, 0 turns it off, a PUT budget is a whole number', () => {
    assert.equal(loadConfig({ SHIP_INTERVAL_SECONDS: '0' }, random).shipIntervalSeconds, 0);
    assert.equal(loadConfig({ SHIP_INTERVAL_SECONDS: '0.25' }, random).shipIntervalSeconds, 0.25);
    assert.equal(loadConfig({ SHIP_PUT_BUDGET: '1000000' }, random).shipPutBudget, 1_000_000);
    assert.throws(() => loadConfig({ SHIP_PUT_BUDGET: 'lots' }, random), (err: unknown) => err instanceof ConfigError && err.variable === 'SHIP_PUT_BUDGET');
  });

  test('prefixes a folder store would normalize away are refused; plain ones are kept as they are', () => {
    for (const prefix of ['./', 'a//b/', 'x/./y/', '../up/', 'a/../b/']) {
      assert.throws(() => loadConfig({ S3_PREFIX: prefix }, random), (err: unknown) => err instanceof ConfigError && err.variable === 'S3_PREFIX', prefix);
    }
    for (const prefix of ['', 'cubecache/', 'games/world-1/']) assert.equal(loadConfig({ S3_PREFIX: prefix }, random).prefix, prefix);
  });
});
