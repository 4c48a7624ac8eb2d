/**
 * lib/backup/snapshot.ts: a snapshot is the whole world as one gzip object under backups/, named by its time;
 * loading streams it back and refuses (CorruptBackupError) anything but the exact bytes it was written with.
 * Run on the file store and on S3.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { CorruptBackupError } from '../lib/backup/backup-format.js';
import { loadSnapshot, loadSnapshotRanges, writeSnapshot } from '../lib/backup/snapshot.js';
import { Cube } from '../lib/cube.js';
import { openFileStore, openS3Store, type StoreFixture } from './support/app.js';

const STORES: Array<[string, (t: TestContext) => Promise<StoreFixture>]> = [['file', openFileStore], ['s3', () => openS3Store()]];
/** 3 MiB of cells: several slices of the cube's snapshot, and several gzip chunks. */
const CELLS = 786_432;

/** A world with a pattern in it, so any misplaced byte shows. */
function world(): Cube {
  const cube = new Cube(CELLS);
  for (let i = 0; i < CELLS; i += 997) cube.write(i, { category: 1 + (i % 250), rotation: i & 3, sideA: (i >> 2) & 255, sideB: (i >> 10) & 255 });
  return cube;
}

/** Writes `cube`'s snapshot to `fixture`, releasing it after. */
async function snapshotOf(fixture: StoreFixture, cube: Cube, at = new Date('2026-01-02T03:04:05.678Z')) {
  const snapshot = cube.snapshot();
  try {
    return await writeSnapshot(fixture.store, fixture.prefix, snapshot, at);
  } finally {
    snapshot.release();
  }
}

for (const [kind, open] of STORES) {
  describe(`snapshots (${kind} store)`, () => {
    test('written as one gzip object under backups/, named by its time, and loaded back byte for byte', async (t) => {
      const fixture = await open(t);
      const cube = world();
      const info = await snapshotOf(fixture, cube);
      assert.match(info.name, /^20260102T030405678Z-[0-9a-f]{8}$/);
      assert.equal(info.key, `${fixture.prefix}backups/${info.name}.gz`);
      assert.equal(info.createdAt, '2026-01-02T03:04:05.678Z');
      assert.equal(info.bytes, CELLS * 4);
      assert.equal(info.sha256, createHash('sha256').update(cube.bytes).digest('hex'));
      assert.deepEqual(await fixture.store.list(`${fixture.prefix}backups/`), [info.key]);
      const target = new Uint8Array(CELLS * 4);
      await loadSnapshot(fixture.store, info.key, target, info.sha256, 'the snapshot');
      assert.ok(Buffer.from(target).equals(cube.bytes));
    });

    test('ranges of cells are copied out of the stream, and nothing else', async (t) => {
      const fixture = await open(t);
      const cube = world();
      const info = await snapshotOf(fixture, cube);
      const ranges = [{ start: 0, count: 3 }, { start: 997, count: 1 }, { start: 300_000, count: 70_000 }, { start: CELLS - 2, count: 2 }];
      const out = ranges.map((r) => new Uint8Array(r.count * 4));
      await loadSnapshotRanges(fixture.store, info.key, info.sha256, info.bytes, ranges, out, 'the snapshot');
      ranges.forEach((r, i) => assert.ok(Buffer.from(out[i]!).equals(cube.bytes.subarray(r.start * 4, (r.start + r.count) * 4)), `range ${r.start}+${r.count}`));
    });

    test('a missing, cut, resized or altered object is a CorruptBackupError naming what is wrong', async (t) => {
      const fixture = await open(t);
      const cube = world();
      const info = await snapshotOf(fixture, cube);
      const good = (await fixture.store.get(info.key))!;
      const load = () => loadSnapshot(fixture.store, info.key, new Uint8Array(CELLS * 4), info.sha256, 'the snapshot');
      const refused = async (body: Uint8Array | undefined, cause: RegExp) => {
        if (body) await fixture.store.put(info.key, body);
        else await fixture.store.delete(info.key);
        await assert.rejects(load(), (err: unknown) => err instanceof CorruptBackupError && cause.test(err.message));
      };
      await refused(good.subarray(0, good.byteLength - 8), /not a valid gzip stream|holds \d+ bytes/);
      const other = Buffer.from(cube.bytes);
      other[12345] ^= 1;
      await refused(gzipSync(other), /SHA-256/);
      await refused(gzipSync(cube.bytes.subarray(4)), /holds \d+ bytes, expected/);
      await refused(gzipSync(Buffer.concat([cube.bytes, Buffer.alloc(4)])), /holds more than/);
      await refused(undefined, /is missing/);
      await fixture.store.put(info.key, good);
      await load();
    });

    test('an aborted upload stops with the abort\'s reason and leaves no snapshot', async (t) => {
      const fixture = await open(t);
      const controller = new AbortController();
      controller.abort(new Error('shutting down'));
      const snapshot = world().snapshot();
      await assert.rejects(writeSnapshot(fixture.store, fixture.prefix, snapshot, new Date(), controller.signal), /shutting down/);
      snapshot.release();
      assert.deepEqual((await fixture.store.list(`${fixture.prefix}backups/`)).filter((key) => key.endsWith('.gz')), []);
    });
  });
}
