/** The write-ahead log on its own: group commit, recovery, torn and corrupt logs, the lock, failing writes. */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, readlink, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Change } from '../lib/backup/change.js';
import { LogCorruptError, LogLockedError, WriteAheadLog } from '../lib/backup/wal.js';
import { memoryLog } from './support/log.js';
import { openTinyDisk } from './support/tiny-disk.js';

const CELLS = 1024;

async function folder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cubecache-wal-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function written(wal: WriteAheadLog): Promise<Error | undefined> {
  return new Promise((resolve) => wal.afterWrite(resolve));
}

const cell = (index: number, value: number) => [{ start: index, bytes: Uint8Array.of(value, 0, 0, value) }];

/** Opens the log in `dir` and recovers it as the store's lineage `lineage` at `storeLsn`; returns the replayed changes. */
async function reopen(t: TestContext, dir: string, lineage: string | undefined, storeLsn = 0, options: Partial<Parameters<typeof WriteAheadLog.open>[0]> = {}) {
  const log = memoryLog();
  const wal = await WriteAheadLog.open({ dir, sync: 'write', cells: CELLS, log, ...options });
  t.after(() => wal.close());
  const replayed: Change[] = [];
  const recovery = await wal.recover(lineage, storeLsn, (change) => replayed.push(change));
  return { wal, replayed, recovery, log };
}

/** A log holding `n` single-cell changes, closed; returns its folder, lineage and segment path. */
async function logWith(t: TestContext, n: number): Promise<{ dir: string; lineage: string; segment: string }> {
  const dir = await folder(t);
  const { wal } = await reopen(t, dir, undefined);
  for (let i = 1; i <= n; i++) wal.append(1000 + i, `p${i}`, cell(i, i));
  assert.equal(await written(wal), undefined);
  const lineage = wal.lineage;
  await wal.close();
  const segment = (await readdir(dir)).find((name) => name.endsWith('.wal'))!;
  return { dir, lineage, segment: join(dir, segment) };
}

test('changes of one turn are one group; recovery replays those after the store, with their author and instant', async (t) => {
  const { dir, lineage } = await logWith(t, 5);
  const { replayed, recovery } = await reopen(t, dir, lineage, 2);
  assert.deepEqual(replayed.map((c) => c.lsn), [3, 4, 5]);
  assert.deepEqual(replayed.map((c) => [c.by, c.at, c.runs[0]!.start, [...c.runs[0]!.bytes]]), [['p3', 1003, 3, [3, 0, 0, 3]], ['p4', 1004, 4, [4, 0, 0, 4]], ['p5', 1005, 5, [5, 0, 0, 5]]]);
  assert.equal(recovery.lastLsn, 5);
});

test('a log of another lineage is moved aside, never replayed, and a new lineage begins', async (t) => {
  const { dir, lineage } = await logWith(t, 3);
  const { wal, replayed, recovery } = await reopen(t, dir, 'ffffffffffffffff', 9);
  assert.deepEqual(replayed, []);
  assert.ok(recovery.setAside);
  assert.notEqual(wal.lineage, lineage);
  assert.equal((await readdir(recovery.setAside!)).filter((n) => n.endsWith('.wal')).length, 1);
});

test('an empty log of another lineage (a start that wrote nothing) is dropped, not moved aside', async (t) => {
  const dir = await folder(t);
  const first = await reopen(t, dir, undefined);
  await first.wal.close();
  const { recovery } = await reopen(t, dir, 'ffffffffffffffff', 9);
  assert.equal(recovery.setAside, undefined);
  assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('aside-')), []);
});

test('a torn last frame is cut at every byte inside it, and the rest replays', async (t) => {
  const { dir, lineage, segment } = await logWith(t, 4);
  const whole = await readFile(segment);
  const frame = whole.length / 4; // four equal frames
  for (let cut = whole.length - frame + 1; cut < whole.length; cut += 3) {
    await writeFile(segment, whole.subarray(0, cut));
    const { wal, replayed, recovery } = await reopen(t, dir, lineage);
    assert.deepEqual(replayed.map((c) => c.lsn), [1, 2, 3], `cut at ${cut}`);
    assert.equal(recovery.cut?.bytes, cut - (whole.length - frame));
    assert.equal((await stat(segment)).size, whole.length - frame, 'the torn tail is cut off');
    assert.ok((await stat(`${segment}.broken`)).size > 0, 'and kept aside');
    await wal.close();
    await rm(`${segment}.broken`);
    for (const name of await readdir(dir)) if (name.endsWith('.wal') && join(dir, name) !== segment) await rm(join(dir, name));
  }
});

test('a cut at a frame boundary and a zero-filled tail are a clean end', async (t) => {
  const { dir, lineage, segment } = await logWith(t, 4);
  const whole = await readFile(segment);
  await truncate(segment, whole.length / 2);
  const a = await reopen(t, dir, lineage);
  assert.deepEqual(a.replayed.map((c) => c.lsn), [1, 2]);
  assert.equal(a.recovery.cut, undefined);
  await a.wal.close();
  for (const name of await readdir(dir)) if (name.endsWith('.wal') && join(dir, name) !== segment) await rm(join(dir, name));
  await writeFile(segment, Buffer.concat([whole.subarray(0, whole.length / 2), Buffer.alloc(4096)]));
  const b = await reopen(t, dir, lineage);
  assert.deepEqual(b.replayed.map((c) => c.lsn), [1, 2]);
  assert.ok(b.recovery.cut, 'the zeros are cut');
});

test('a flipped bit mid-log, with good frames after it, refuses recovery', async (t) => {
  const { dir, lineage, segment } = await logWith(t, 4);
  const data = await readFile(segment);
  data[Math.floor(data.length / 4) + 12]! ^= 0x10; // inside the second frame's payload
  await writeFile(segment, data);
  const wal = await WriteAheadLog.open({ dir, sync: 'write', cells: CELLS, log: memoryLog() });
  t.after(() => wal.close());
  await assert.rejects(wal.recover(lineage, 0, () => {}), (err: unknown) => err instanceof LogCorruptError && /good frames after it/.test(err.message));
});

test('one folder, one server: a second open is refused while the first holds the lock; a dead holder\'s lock is taken', async (t) => {
  const dir = await folder(t);
  const first = await WriteAheadLog.open({ dir, sync: 'write', cells: CELLS, log: memoryLog() });
  await assert.rejects(WriteAheadLog.open({ dir, sync: 'write', cells: CELLS, log: memoryLog() }), LogLockedError);
  await first.close();
  // A crashed process's lock: same PID namespace and boot, a PID that is gone.
  await writeFile(join(dir, 'LOCK'), JSON.stringify({ pid: 999_999_999, start: '1', ns: await readlink('/proc/self/ns/pid'), boot: (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim(), host: 'h', token: 'deadbeefdeadbeef', beat: 3 }));
  const second = await WriteAheadLog.open({ dir, sync: 'write', cells: CELLS, log: memoryLog() });
  await second.close();
});

/** Copies the log's segments (what a kill -9 now would leave) to a new folder. */
async function crashCopy(t: TestContext, from: string): Promise<string> {
  const to = await folder(t);
  for (const name of await readdir(from)) if (name.endsWith('.wal')) await writeFile(join(to, name), await readFile(join(from, name)));
  return to;
}

async function waitUntil(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a group that cannot be written (disk full) is dropped with every change after it, cut off the segment, never replayed, and writes resume once the disk has room', { timeout: 60_000 }, async (t) => {
  const disk = await openTinyDisk(t, { bytes: 256 * 1024 });
  if (!disk) return;
  const dir = join(disk.dir, 'wal');
  const cells = 65536;
  const { wal, log } = await reopen(t, dir, undefined, 0, { cells, retryMs: 20 });
  wal.append(1, 'kept', [{ start: 0, bytes: new Uint8Array(4).fill(1) }]);
  assert.equal(await written(wal), undefined);
  await disk.fill(4096); // one page left: a small frame fits, a group of 12 KiB does not
  const big = { start: 100, bytes: new Uint8Array(12 * 1024).fill(2) };
  wal.append(2, 'small', cell(7, 7));
  wal.append(2, 'big', [big]);
  const first = written(wal);
  await yieldToEventLoop(); // the group's write is in flight now
  wal.append(3, 'after', cell(8, 8));
  const after = written(wal);
  assert.equal(((await first) as { code?: string })?.code, 'ENOSPC');
  assert.equal(((await after) as { code?: string })?.code, 'ENOSPC', 'a change appended after the failed group is dropped too');
  assert.ok(wal.failure, 'writes are refused');
  assert.ok(log.events.some((e) => e.event === 'wal_write_failed'));
  assert.equal(wal.lastLsn, 1, 'lsns roll back to the last durable change');
  assert.equal(wal.durableLsn, 1);
  const crashed = await reopen(t, await crashCopy(t, dir), wal.lineage);
  assert.deepEqual(crashed.replayed.map((c) => c.by), ['kept'], 'a kill -9 now replays nothing of the failed group');
  assert.equal(crashed.recovery.cut, undefined, 'nothing torn was left either');
  await crashed.wal.close();
  wal.append(4, 'while failed', cell(9, 9));
  assert.equal(((await written(wal)) as { code?: string })?.code, 'ENOSPC', 'a failed log takes nothing');
  assert.equal(wal.lastLsn, 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(wal.failure, 'still failed while the disk is full');
  await disk.free();
  await waitUntil('the log writable again', () => !wal.failure);
  assert.ok(log.events.some((e) => e.event === 'wal_recovered'));
  wal.append(5, 'resumed', [big]);
  assert.equal(await written(wal), undefined);
  const lineage = wal.lineage;
  await wal.close();
  const { replayed } = await reopen(t, dir, lineage, 0, { cells });
  assert.deepEqual(replayed.map((c) => [c.lsn, c.by]), [[1, 'kept'], [2, 'resumed']]);
});

test('a segment that cannot be started (no inode left) is a failure like any other: refused, its waiters told, and writes resume once it can be', { timeout: 60_000 }, async (t) => {
  const disk = await openTinyDisk(t, { bytes: 4 * 1024 * 1024, inodes: 64 });
  if (!disk) return;
  const dir = join(disk.dir, 'wal');
  const { wal, log } = await reopen(t, dir, undefined, 0, { segmentBytes: 100, retryMs: 20 });
  for (let i = 1; i <= 4; i++) wal.append(i, 'a', cell(i, i));
  assert.equal(await written(wal), undefined);
  await disk.fillInodes();
  wal.append(5, 'a', cell(5, 5)); // 5 frames of 20 bytes: the segment is full, the next write needs a new one
  assert.equal(await written(wal), undefined);
  assert.equal((await stat(join(dir, (await readdir(dir)).find((n) => n.endsWith('.wal'))!))).size, 100);
  wal.append(6, 'b', cell(6, 6));
  assert.equal(((await written(wal)) as { code?: string })?.code, 'ENOSPC', 'told, not left waiting');
  assert.ok(wal.failure);
  assert.ok(log.events.some((e) => e.event === 'wal_write_failed'));
  assert.equal(wal.lastLsn, 5);
  wal.append(7, 'c', cell(7, 7));
  assert.ok(await written(wal), 'refused while no segment can be started');
  await disk.free();
  await waitUntil('a new segment', () => !wal.failure);
  wal.append(8, 'd', cell(8, 8));
  assert.equal(await written(wal), undefined, 'written again');
  const lineage = wal.lineage;
  await wal.close();
  const { replayed } = await reopen(t, dir, lineage);
  assert.deepEqual(replayed.map((c) => [c.lsn, c.by]), [[1, 'a'], [2, 'a'], [3, 'a'], [4, 'a'], [5, 'a'], [6, 'd']]);
});

test('segments rotate, shipping reads across them, and released ones are deleted', async (t) => {
  const dir = await folder(t);
  const { wal } = await reopen(t, dir, undefined, 0, { segmentBytes: 200 });
  for (let i = 1; i <= 40; i++) {
    wal.append(i, 'x', cell(i, i));
    await written(wal);
  }
  const segments = (await readdir(dir)).filter((n) => n.endsWith('.wal'));
  assert.ok(segments.length > 3, `${segments.length} segments`);
  const read = await wal.unshipped(undefined, 10, 1 << 20);
  assert.deepEqual(read.changes.list().map((c) => c.lsn), Array.from({ length: 30 }, (_, i) => i + 11));
  const small = await wal.unshipped(undefined, 0, 50);
  assert.ok(small.more && small.changes.count < 40 && small.changes.count > 0, 'a byte budget stops the read');
  const rest = await wal.unshipped(small.next, small.changes.last()!.lsn, 1 << 20);
  assert.equal(rest.changes.first()!.lsn, small.changes.last()!.lsn + 1, 'the cursor continues where the read stopped');
  await wal.release(35);
  const left = (await readdir(dir)).filter((n) => n.endsWith('.wal'));
  assert.ok(left.length < segments.length, 'covered segments are deleted');
  const after = await wal.unshipped(undefined, 35, 1 << 20);
  assert.deepEqual(after.changes.list().map((c) => c.lsn), [36, 37, 38, 39, 40]);
});

test('a read of unshipped changes while writes fill and rotate the open segment skips nothing; the next read goes on from its end', async (t) => {
  const dir = await folder(t);
  const segmentBytes = 1_000_000;
  const { wal } = await reopen(t, dir, undefined, 0, { segmentBytes });
  // The open segment just short of full (500 frames are about 11 KB), so the first writes during the read rotate it.
  const open = join(dir, (await readdir(dir)).find((n) => n.endsWith('.wal'))!);
  while ((await stat(open)).size < segmentBytes - 15_000) {
    for (let i = 0; i < 500; i++) wal.append(1, '', cell(i, 1));
    assert.equal(await written(wal), undefined);
  }
  const segmentsBefore = (await readdir(dir)).filter((n) => n.endsWith('.wal')).length;
  let done = false;
  const reading = wal.unshipped(undefined, 0, 8 << 20).finally(() => { done = true; });
  // The read yields while it decodes: meanwhile, a turn at a time, more writes fill the segment it is reading and rotate.
  let turnsDuringRead = 0;
  for (let k = 0; k < 50; k++) {
    for (let i = 0; i < 500; i++) wal.append(1, '', cell(i, 2));
    await yieldToEventLoop();
    if (!done) turnsDuringRead++;
  }
  assert.equal(await written(wal), undefined);
  assert.ok(turnsDuringRead > 0, 'writes landed while the read ran');
  assert.ok((await readdir(dir)).filter((n) => n.endsWith('.wal')).length > segmentsBefore, 'the log rotated');
  const first = await reading;
  const rest = await wal.unshipped(first.next, first.changes.last()!.lsn, 8 << 20);
  const lsns = [...first.changes.list(), ...rest.changes.list()].map((c) => c.lsn);
  assert.deepEqual(lsns, Array.from({ length: wal.lastLsn }, (_, i) => i + 1), 'every lsn once, in order');
});

const NEW_LINEAGE = 'aaaaaaaaaaaaaaaa';

test('follow: the log drops what it held, appends go on at lsn + 1 of the new lineage, a restart replays exactly those, and the old lineage sets them aside', async (t) => {
  const dir = await folder(t);
  const { wal } = await reopen(t, dir, undefined);
  for (let i = 1; i <= 3; i++) wal.append(i, 'old', cell(i, i));
  assert.equal(await written(wal), undefined);
  const oldLineage = wal.lineage;
  await wal.follow(NEW_LINEAGE, 100);
  assert.equal(wal.lineage, NEW_LINEAGE);
  assert.equal(wal.lastLsn, 100);
  assert.equal(wal.durableLsn, 100);
  assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.wal')), [`${NEW_LINEAGE}-0000000000000101.wal`], 'the old segments are gone, the new one is named for lsn 101');
  assert.deepEqual([wal.append(4, 'new', cell(4, 4)).lsn, wal.append(5, 'new', cell(5, 5)).lsn], [101, 102]);
  assert.equal(await written(wal), undefined);
  assert.deepEqual((await wal.unshipped(undefined, 100, 1 << 20)).changes.list().map((c) => c.lsn), [101, 102]);
  await wal.close();
  const copy = await crashCopy(t, dir);
  const restarted = await reopen(t, dir, NEW_LINEAGE, 100);
  assert.deepEqual(restarted.replayed.map((c) => [c.lsn, c.by]), [[101, 'new'], [102, 'new']]);
  assert.equal(restarted.recovery.setAside, undefined);
  const asOld = await reopen(t, copy, oldLineage, 3);
  assert.deepEqual(asOld.replayed, [], 'the old lineage replays nothing of the new one');
  assert.ok(asOld.recovery.setAside, 'it is moved aside');
});

test('follow right after recover, and again in the same lineage: each time the next append is lsn + 1', async (t) => {
  const dir = await folder(t);
  const { wal } = await reopen(t, dir, undefined);
  await wal.follow(NEW_LINEAGE, 0);
  assert.equal(wal.append(1, 'a', cell(1, 1)).lsn, 1);
  assert.equal(await written(wal), undefined);
  await wal.follow(NEW_LINEAGE, 0); // a name the log used already: begun anew
  assert.equal(wal.append(1, 'b', cell(1, 2)).lsn, 1);
  assert.equal(await written(wal), undefined);
  await wal.close();
  const { replayed } = await reopen(t, dir, NEW_LINEAGE, 0);
  assert.deepEqual(replayed.map((c) => [c.lsn, c.by]), [[1, 'b']]);
});

test('follow while a group is in flight and another pending: every waiter is told the changes are written, none of them lands in the new lineage', { timeout: 30_000 }, async (t) => {
  const dir = await folder(t);
  const { wal } = await reopen(t, dir, undefined, 0, { sync: 'strict' });
  for (let i = 1; i <= 50; i++) wal.append(i, 'first', cell(i, 1));
  const first = written(wal);
  await yieldToEventLoop(); // the first group's write is in flight now
  for (let i = 1; i <= 50; i++) wal.append(i, 'second', cell(i, 2));
  const second = written(wal);
  const following = wal.follow(NEW_LINEAGE, 500);
  assert.deepEqual(await Promise.all([first, second, following]), [undefined, undefined, undefined]);
  assert.equal(wal.append(9, 'new', cell(9, 9)).lsn, 501);
  assert.equal(await written(wal), undefined);
  await wal.close();
  const { replayed } = await reopen(t, dir, NEW_LINEAGE, 500);
  assert.deepEqual(replayed.map((c) => [c.lsn, c.by]), [[501, 'new']]);
});

test('follow on a log that cannot be written rejects with its failure; on a closed log, and with a lineage that is not 16 hex digits, it rejects too', { timeout: 60_000 }, async (t) => {
  const dir = await folder(t);
  const plain = await reopen(t, dir, undefined);
  await assert.rejects(plain.wal.follow('not-a-lineage', 1), RangeError);
  await assert.rejects(plain.wal.follow(NEW_LINEAGE, -1), RangeError);
  await plain.wal.close();
  await assert.rejects(plain.wal.follow(NEW_LINEAGE, 1), /closed/);
  const disk = await openTinyDisk(t, { bytes: 256 * 1024 });
  if (!disk) return;
  const { wal } = await reopen(t, join(disk.dir, 'wal'), undefined, 0, { cells: 65536, retryMs: 60_000 });
  await disk.fill(4096);
  wal.append(1, 'big', [{ start: 0, bytes: new Uint8Array(12 * 1024).fill(2) }]);
  const failed = (await written(wal)) as { code?: string };
  assert.equal(failed?.code, 'ENOSPC');
  await assert.rejects(wal.follow(NEW_LINEAGE, 7), (err: unknown) => err === failed);
  assert.equal(wal.lineage === NEW_LINEAGE, false, 'nothing switched');
});
