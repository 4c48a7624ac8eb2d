/** The change log kept in memory (no WAL_DIR): follow() switches it to another lineage and position. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryLog } from '../lib/backup/memory-log.js';

const cell = (index: number, value: number) => [{ start: index, bytes: Uint8Array.of(value, 0, 0, value) }];
const NEW_LINEAGE = 'bbbbbbbbbbbbbbbb';

test('follow drops every change held; appends go on at lsn + 1 of the new lineage, and only they are unshipped', async () => {
  const log = new MemoryLog(1);
  for (let i = 1; i <= 5; i++) log.append(i, 'old', cell(i, i));
  await log.follow(NEW_LINEAGE, 2); // lsns the old changes had: none of them may come back
  assert.equal(log.lineage, NEW_LINEAGE);
  assert.equal(log.lastLsn, 2);
  assert.equal(log.durableLsn, 2);
  assert.deepEqual([log.append(4, 'new', cell(4, 4)).lsn, log.append(5, 'new', cell(5, 5)).lsn], [3, 4]);
  const read = await log.unshipped(undefined, 2, 1 << 20);
  assert.deepEqual(read.changes.list().map((c) => [c.lsn, c.by]), [[3, 'new'], [4, 'new']]);
  assert.equal(read.gap, false);
  assert.equal((await log.unshipped(undefined, 0, 1 << 20)).gap, true, 'a reader from before lsn 2 would miss changes this log never held');
});

test('follow refuses a lineage that is not 16 hex digits and an lsn below 0, changing nothing', async () => {
  const log = new MemoryLog(1);
  const lineage = log.lineage;
  log.append(1, 'a', cell(1, 1));
  await assert.rejects(log.follow('BBBB', 3), RangeError);
  await assert.rejects(log.follow(NEW_LINEAGE, -1), RangeError);
  assert.equal(log.lineage, lineage);
  assert.equal(log.append(2, 'a', cell(2, 2)).lsn, 2);
  assert.equal((await log.unshipped(undefined, 0, 1 << 20)).changes.count, 2);
});
