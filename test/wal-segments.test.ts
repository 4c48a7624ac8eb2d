/** The write-ahead log's segment files (wal-segments.ts) on their own: start, write, read back, sync, cut back, rotate, release, retire, probe. */
import assert from 'node:assert/strict';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { ByteWriter } from '../lib/backup/change.js';
import { writeFrame } from '../lib/backup/wal-frames.js';
import { listSegments } from '../lib/backup/wal-recovery.js';
import { SegmentFiles } from '../lib/backup/wal-segments.js';
import { openTinyDisk } from './support/tiny-disk.js';

const CELLS = 65536;
const LINEAGE = '0123456789abcdef';
const name = (firstLsn: number) => `${LINEAGE}-${String(firstLsn).padStart(16, '0')}.wal`;

async function folder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-segments-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Segment files in `dir`, closed when the test ends. */
function segmentFiles(t: TestContext, dir: string, options: { segmentBytes?: number; syncMarks?: boolean } = {}): SegmentFiles {
  const files = new SegmentFiles({ dir, cells: CELLS, segmentBytes: options.segmentBytes ?? 1 << 20, syncMarks: options.syncMarks ?? true });
  t.after(() => files.close());
  return files;
}

/** Frames of single-cell changes numbered `lsns`, as the log's writer hands them over: buffers and their bytes. */
function frames(lsns: number[], cellBytes = 4): { buffers: Buffer[]; bytes: number } {
  const out = new ByteWriter();
  for (const lsn of lsns) writeFrame(out, { lsn, at: 1000 + lsn, by: `p${lsn}`, runs: [{ start: lsn, bytes: new Uint8Array(cellBytes).fill(lsn) }] });
  return { buffers: [Buffer.from(out.view())], bytes: out.length };
}

async function write(files: SegmentFiles, lsns: number[], cellBytes?: number): Promise<number> {
  const { buffers, bytes } = frames(lsns, cellBytes);
  await files.write(buffers, bytes, false);
  return bytes;
}

/** Every lsn readable from the oldest segment on. */
async function lsns(files: SegmentFiles): Promise<number[]> {
  return (await files.read(undefined, 0, 1 << 20)).changes.list().map((c) => c.lsn);
}

const sizeOf = async (path: string) => (await stat(path)).size;
const markOf = (path: string) => readFile(`${path}.synced`, 'utf8').catch(() => undefined);
const wals = async (dir: string) => (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort();

test('start opens an empty segment named for its lineage and first lsn; syncName makes the name durable and marks it', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir);
  assert.equal(files.isOpen, false);
  await files.start(LINEAGE, 7);
  assert.equal(files.isOpen, true);
  assert.deepEqual(await wals(dir), [name(7)]);
  assert.equal(await sizeOf(join(dir, name(7))), 0);
  assert.deepEqual(files.segments, [{ name: name(7), firstLsn: 7, lineage: LINEAGE }]);
  assert.equal(files.nameDirty, true, 'the name is not durable yet');
  assert.equal(await markOf(join(dir, name(7))), undefined);
  await files.syncName();
  assert.equal(files.nameDirty, false);
  assert.equal(await markOf(join(dir, name(7))), '0');
});

test('a start that reuses the newest segment\'s name (nothing was appended after it) begins that segment anew', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir);
  await files.start(LINEAGE, 1);
  await write(files, [1, 2]);
  await files.close();
  await files.start(LINEAGE, 1);
  assert.deepEqual(files.segments.map((s) => s.name), [name(1)], 'one segment, not two of one name');
  assert.equal(await sizeOf(join(dir, name(1))), 0, 'begun anew, empty');
});

test('write appends at the durable size; read gives the changes back after the floor, within its budget, and goes on from its cursor', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir);
  await files.start(LINEAGE, 1);
  const first = await write(files, [1, 2, 3]);
  const second = await write(files, [4]);
  assert.equal(await sizeOf(join(dir, name(1))), first + second);
  const all = await files.read(undefined, 0, 1 << 20);
  assert.deepEqual(all.changes.list().map((c) => [c.lsn, c.by, c.at, c.runs[0]!.start]), [[1, 'p1', 1001, 1], [2, 'p2', 1002, 2], [3, 'p3', 1003, 3], [4, 'p4', 1004, 4]]);
  assert.equal(all.more, false);
  assert.deepEqual((await files.read(undefined, 2, 1 << 20)).changes.list().map((c) => c.lsn), [3, 4], 'those at or below the floor are left out');
  const small = await files.read(undefined, 0, 40);
  assert.ok(small.more && small.changes.count > 0 && small.changes.count < 4, `the budget stops the read (${small.changes.count} read)`);
  const rest = await files.read(small.next, small.changes.last()!.lsn, 1 << 20);
  assert.deepEqual([...small.changes.list(), ...rest.changes.list()].map((c) => c.lsn), [1, 2, 3, 4], 'the cursor goes on where the read stopped');
  await write(files, [5]);
  assert.deepEqual((await files.read(all.next, 4, 1 << 20)).changes.list().map((c) => c.lsn), [5], 'a later read goes on from the end of an earlier one');
});

test('read stops at the open segment\'s durable size: bytes past it are not read', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir);
  await files.start(LINEAGE, 1);
  await write(files, [1, 2]);
  await appendFile(join(dir, name(1)), frames([3]).buffers[0]!); // a whole frame, but no write() counted it durable
  assert.deepEqual(await lsns(files), [1, 2]);
});

test('cutTail cuts the open segment back to its last durable frame, marks that length, and the next write lands right after it', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir);
  const path = join(dir, name(1));
  await files.start(LINEAGE, 1);
  const durable = await write(files, [1, 2]);
  await appendFile(path, Buffer.alloc(100, 0xee)); // what a torn write leaves
  assert.equal(await sizeOf(path), durable + 100);
  await files.cutTail();
  assert.equal(await sizeOf(path), durable);
  assert.equal(await markOf(path), String(durable));
  assert.equal(files.tail, false);
  await write(files, [3]);
  assert.deepEqual(await lsns(files), [1, 2, 3]);
});

test('a write the disk cannot take throws and leaves a tail; cutTail removes it; the probe fails until the disk has room and leaves no file behind', { timeout: 60_000 }, async (t) => {
  const disk = await openTinyDisk(t, { bytes: 256 * 1024 });
  if (!disk) return;
  const dir = join(disk.dir, 'wal');
  await mkdir(dir);
  const files = segmentFiles(t, dir);
  const path = join(dir, name(1));
  await files.start(LINEAGE, 1);
  await files.syncName();
  const durable = await write(files, [1]);
  await disk.fill(4096); // one page left: a frame of 12 KiB does not fit
  await assert.rejects(write(files, [2], 12 * 1024), (err: unknown) => (err as { code?: string }).code === 'ENOSPC');
  assert.equal(files.tail, true, 'bytes past the durable size may be in the file');
  await files.cutTail();
  assert.equal(files.tail, false);
  assert.equal(await sizeOf(path), durable, 'cut back to the last durable frame');
  await assert.rejects(files.probe(12 * 1024), (err: unknown) => (err as { code?: string }).code === 'ENOSPC');
  assert.ok(!(await readdir(dir)).includes('probe.tmp'), 'a failed probe removes its file');
  await disk.free();
  await files.probe(12 * 1024);
  assert.ok(!(await readdir(dir)).includes('probe.tmp'), 'a probe removes its file');
  await write(files, [2], 12 * 1024);
  assert.deepEqual(await lsns(files), [1, 2]);
});

test('sync marks the bytes written since the last mark; a write alone does not', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir);
  const path = join(dir, name(1));
  await files.start(LINEAGE, 1);
  await files.syncName();
  const bytes = await write(files, [1, 2]);
  assert.equal(await markOf(path), '0', 'not synced yet: the mark lags');
  await files.sync();
  assert.equal(await markOf(path), String(bytes));
});

test('without syncMarks no mark is written; with them, mark records what it is told (recovery\'s cut)', async (t) => {
  const dir = await folder(t);
  const plain = segmentFiles(t, dir, { syncMarks: false });
  await plain.start(LINEAGE, 1);
  await plain.syncName();
  await write(plain, [1]);
  await plain.sync();
  await plain.cutTail();
  assert.deepEqual((await readdir(dir)).filter((n) => n.includes('.synced')), []);
  const marking = segmentFiles(t, dir, { syncMarks: true });
  await marking.mark('elsewhere.wal', 42);
  assert.equal(await markOf(join(dir, 'elsewhere.wal')), '42');
});

test('a full segment rotates: it is closed, the next start begins its successor, and reads go across both', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir, { segmentBytes: 50 });
  await files.start(LINEAGE, 1);
  await write(files, [1]);
  assert.equal(files.full, false);
  await write(files, [2, 3]);
  assert.equal(files.full, true, 'it holds segmentBytes or more');
  await files.rotate();
  assert.equal(files.isOpen, false);
  assert.equal(files.full, false);
  await files.start(LINEAGE, 4);
  await write(files, [4]);
  assert.deepEqual(await wals(dir), [name(1), name(4)]);
  assert.deepEqual(await lsns(files), [1, 2, 3, 4]);
});

/** Three segments starting at lsns 1, 4 and 7 (three frames each), the last one open; returns the files. */
async function threeSegments(t: TestContext, dir: string): Promise<SegmentFiles> {
  const files = segmentFiles(t, dir, { segmentBytes: 50 });
  for (const first of [1, 4, 7]) {
    if (files.isOpen) await files.rotate();
    await files.start(LINEAGE, first);
    await files.syncName();
    await write(files, [first, first + 1, first + 2]);
    await files.sync();
  }
  return files;
}

test('release deletes the segments whose changes are all at or below the lsn, with their marks, and never the newest', async (t) => {
  const dir = await folder(t);
  const files = await threeSegments(t, dir);
  await files.release(2);
  assert.deepEqual(await wals(dir), [name(1), name(4), name(7)], 'lsn 3 is not released yet');
  await files.release(3);
  assert.deepEqual(await wals(dir), [name(4), name(7)]);
  assert.equal(await markOf(join(dir, name(1))), undefined, 'its mark goes too');
  assert.deepEqual(files.segments.map((s) => s.name), [name(4), name(7)]);
  await files.release(1000);
  assert.deepEqual(await wals(dir), [name(7)], 'the newest is kept');
  assert.deepEqual(await lsns(files), [7, 8, 9]);
});

test('adopt takes segments listed from the folder: reads and release see them', async (t) => {
  const dir = await folder(t);
  const before = await threeSegments(t, dir);
  await before.close();
  const files = segmentFiles(t, dir);
  files.adopt(await listSegments(dir));
  await files.start(LINEAGE, 10);
  await write(files, [10]);
  assert.deepEqual(await lsns(files), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await files.release(6);
  assert.deepEqual(await wals(dir), [name(7), name(10)]);
});

test('retire drops every segment from the list at once; dropStale deletes their files and marks, so a segment of the same name can start again', async (t) => {
  const dir = await folder(t);
  const files = await threeSegments(t, dir);
  await files.retire();
  assert.deepEqual(files.segments, []);
  assert.equal(files.isOpen, false);
  assert.equal(files.hasStale, true);
  assert.deepEqual(await lsns(files), [], 'reads see none of them');
  await files.release(1000); // nothing left to release: the files stay for dropStale
  assert.deepEqual(await wals(dir), [name(1), name(4), name(7)]);
  await files.dropStale();
  assert.equal(files.hasStale, false);
  assert.deepEqual(await readdir(dir), [], 'segments and marks are gone');
  await files.start(LINEAGE, 1); // 'wx': an old file of that name would be EEXIST
  await write(files, [1]);
  assert.deepEqual(await lsns(files), [1]);
});

test('close syncs and closes the open segment, and may be called again', async (t) => {
  const dir = await folder(t);
  const files = segmentFiles(t, dir);
  await files.start(LINEAGE, 1);
  await write(files, [1]);
  await files.close();
  assert.equal(files.isOpen, false);
  await files.close();
  assert.deepEqual(await wals(dir), [name(1)]);
});
