/**
 * Time travel: the cells of some ranges as they were at an instant, rebuilt by the one replay (replay.ts)
 * from the newest kept snapshot committed at or before it, the change sets after that snapshot, and the changes the log holds that are not
 * shipped yet, applying only the changes made at or before the instant. Nothing of the world is touched.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CELL_BYTES } from '../cube.js';
import type { SnapshotCommit } from './commit-log.js';
import { openReplay, type ReplaySource } from './replay.js';
import { loadSnapshot, loadSnapshotRanges } from './snapshot.js';
import type { SnapshotCache } from './snapshot-cache.js';

export { OutsideHistoryError } from './replay.js';

/** Consecutive cells: `count` from `start`. */
export interface CellRange { start: number; count: number }

/** What time travel needs of the backups: the store, the commits, the kept snapshots and the log (see replay.ts). */
export type HistorySource = ReplaySource;

/** Sorted, disjoint, merged ranges covering `ranges` (which may overlap or touch). */
export function mergeRanges(ranges: CellRange[]): CellRange[] {
  const sorted = ranges.filter((r) => r.count > 0).sort((a, b) => a.start - b.start);
  const out: CellRange[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r.start <= last.start + last.count) last.count = Math.max(last.count, r.start + r.count - last.start);
    else out.push({ ...r });
  }
  return out;
}

/**
 * The bytes of each range of `ranges` (sorted, disjoint: see mergeRanges) as they were at `at` (ms since the
 * epoch): one buffer per range, 4 bytes a cell. OutsideHistoryError when `at` is before the oldest kept
 * snapshot or after now. With `keep`, the whole snapshot it starts from is read through (and kept in) that cache.
 */
export async function cellsAt(source: HistorySource, at: number, ranges: CellRange[], keep?: SnapshotCache): Promise<Uint8Array[]> {
  const replay = await openReplay(source, at, at);
  const out = keep ? await keptRanges(source, replay.snapshot, ranges, keep) : await loadRanges(source, replay.snapshot, ranges);
  for await (const change of replay.changes) {
    if (change.at > at) continue;
    for (const run of change.runs) applyRun(run.start, run.bytes, ranges, out);
  }
  return out;
}

/** The cells of `ranges` in `snapshot`, one buffer per range, copied out of the whole snapshot as `keep` holds it. */
async function keptRanges(source: HistorySource, snapshot: SnapshotCommit, ranges: CellRange[], keep: SnapshotCache): Promise<Uint8Array[]> {
  const whole = await keep.get(snapshot.key, async () => {
    const bytes = new Uint8Array(snapshot.bytes);
    await loadSnapshot(source.store, snapshot.key, bytes, snapshot.sha256, `backup ${snapshot.name}`);
    return bytes;
  });
  const out: Uint8Array[] = [];
  for (const r of ranges) {
    const part = new Uint8Array(r.count * CELL_BYTES);
    // A piece at a time with a turn for the event loop between: one copy of a whole world would stall it for tens of ms.
    for (let at = 0; at < part.length; at += COPY_PIECE_BYTES) {
      part.set(whole.subarray(r.start * CELL_BYTES + at, r.start * CELL_BYTES + Math.min(part.length, at + COPY_PIECE_BYTES)), at);
      if (at + COPY_PIECE_BYTES < part.length) await nextTurn();
    }
    out.push(part);
  }
  return out;
}

/** Copies out of a kept snapshot go this many bytes between turns of the event loop. */
const COPY_PIECE_BYTES = 4 * 1024 * 1024;

/** The cells of `ranges` in `snapshot`, one buffer per range. */
async function loadRanges(source: HistorySource, snapshot: SnapshotCommit, ranges: CellRange[]): Promise<Uint8Array[]> {
  const out = ranges.map((r) => new Uint8Array(r.count * CELL_BYTES));
  await loadSnapshotRanges(source.store, snapshot.key, snapshot.sha256, snapshot.bytes, ranges, out, `backup ${snapshot.name}`);
  return out;
}

/** One cell's change: when, which cell, its value before and after, and who made it. */
export interface CellChange { at: number; index: number; before: Uint8Array; after: Uint8Array; by: string; lsn: number; seq: number }

/** Where a page of history stops: entries strictly older than this one come next. */
export interface HistoryCursor { at: number; lsn: number; seq: number }

/** What a history query asks: the cells (a region) or an author (anywhere), a window, a page. */
export interface HistoryQuery { ranges?: CellRange[]; by?: string; since: number; until: number; limit: number; cursor?: HistoryCursor }

/**
 * The changes in (since, until] to the region `ranges` (sorted, disjoint) or, without ranges, anywhere by
 * `by`, newest first, at most `limit`, older than `cursor`; and the cursor of the next page when there is
 * one. Memory stays bounded by the region (or the author's cells in the window) and the page.
 */
export async function historyOf(source: HistorySource, query: HistoryQuery): Promise<{ changes: CellChange[]; next?: HistoryCursor }> {
  const older = (c: { at: number; lsn: number; seq: number }) => !query.cursor || c.at < query.cursor.at || (c.at === query.cursor.at && (c.lsn < query.cursor.lsn || (c.lsn === query.cursor.lsn && c.seq < query.cursor.seq)));
  // By author anywhere: only the cells of their newest `limit` (+1, to tell if more follow) changes older than
  // the cursor need tracking, so memory stays bounded by the page, not by how much they changed.
  const ranges = query.ranges ?? (await authorCells(source, query.by!, query.since, query.until, undefined, { limit: query.limit + 1, older }));
  if (ranges.length === 0) return { changes: [] };
  const replay = await openReplay(source, query.since, query.until);
  const state = await loadRanges(source, replay.snapshot, ranges);
  const page: CellChange[] = [];
  let more = false;
  for await (const change of replay.changes) {
    const inWindow = change.at > query.since && change.at <= query.until && (query.by === undefined || change.by === query.by);
    let offset = 0; // a cell's place in its change (across its runs): with at and lsn, its position in history
    for (const run of change.runs) {
      const runOffset = offset;
      offset += run.bytes.byteLength / CELL_BYTES;
      eachTrackedCell(run.start, run.bytes, ranges, state, (index, before, after) => {
        const entry = { at: change.at, index, before, after, by: change.by, lsn: change.lsn, seq: runOffset + index - run.start };
        if (!inWindow || !older(entry)) return;
        page.push(entry);
        if (page.length > query.limit) {
          page.shift(); // keep the newest `limit` of those older than the cursor
          more = true;
        }
      });
    }
  }
  const changes = page.reverse();
  const last = changes.at(-1);
  return more && last ? { changes, next: { at: last.at, lsn: last.lsn, seq: last.seq } } : { changes };
}

/** One cell the rollback puts back (`to`, what it held before the author's first change in the window), or leaves (`skipped`: another changed it later). */
export interface RollbackPlan {
  restore: Array<{ index: number; from: Uint8Array; to: Uint8Array }>;
  skipped: Array<{ index: number; by: string; value: Uint8Array }>;
}

/**
 * For every cell of `ranges` (or anywhere) that `by` changed in (since, until]: the value it held before
 * their first change in that window, unless someone else changed it after their last change (then it is
 * skipped, with who did). Changes up to now count for the "after".
 */
export async function planRollback(source: HistorySource, by: string, since: number, until: number, region?: CellRange[]): Promise<RollbackPlan> {
  const cells = await authorCells(source, by, since, until, region);
  const plan: RollbackPlan = { restore: [], skipped: [] };
  if (cells.length === 0) return plan;
  const replay = await openReplay(source, since);
  const state = await loadRanges(source, replay.snapshot, cells);
  const first = new Map<number, Uint8Array>(); // cell → its value before the author's first change in the window
  const lastBy = new Map<number, string>(); // cell → the author of its newest change after `since`
  for await (const change of replay.changes) {
    for (const run of change.runs) {
      eachTrackedCell(run.start, run.bytes, cells, state, (index, before) => {
        if (change.at <= since) return;
        if (change.by === by && change.at <= until && !first.has(index)) first.set(index, before);
        if (first.has(index)) lastBy.set(index, change.by);
      });
    }
  }
  for (const [index, to] of [...first].sort((a, b) => a[0] - b[0])) {
    const now = valueOf(cells, state, index);
    if (lastBy.get(index) !== by) plan.skipped.push({ index, by: lastBy.get(index)!, value: now });
    else if (!sameBytes(now, to)) plan.restore.push({ index, from: now, to });
  }
  return plan;
}

/**
 * The cells `by` changed in (since, until] (within `region` when given), as sorted single-cell ranges merged;
 * with `newest`, only those of their newest `limit` cell changes that pass `older`.
 */
async function authorCells(source: HistorySource, by: string, since: number, until: number, region?: CellRange[], newest?: { limit: number; older: (c: { at: number; lsn: number; seq: number }) => boolean }): Promise<CellRange[]> {
  const replay = await openReplay(source, since, until);
  const touched = new Set<number>();
  const recent: number[] = []; // with `newest`: the cells of the newest changes seen, oldest first
  for await (const change of replay.changes) {
    if (change.by !== by || change.at <= since || change.at > until) continue;
    let seq = 0;
    for (const run of change.runs) {
      const end = run.start + run.bytes.byteLength / CELL_BYTES;
      for (let i = run.start; i < end; i++, seq++) {
        if (region && !inRanges(region, i)) continue;
        if (!newest) touched.add(i);
        else if (newest.older({ at: change.at, lsn: change.lsn, seq })) {
          recent.push(i);
          if (recent.length > newest.limit) recent.shift();
        }
      }
    }
  }
  for (const i of recent) touched.add(i);
  return mergeRanges([...touched].map((start) => ({ start, count: 1 })));
}

/** Calls `visit` for each cell of a run inside the tracked ranges, with its value before and after, and applies it to `state`. */
function eachTrackedCell(start: number, bytes: Uint8Array, ranges: CellRange[], state: Uint8Array[], visit: (index: number, before: Uint8Array, after: Uint8Array) => void): void {
  const end = start + bytes.byteLength / CELL_BYTES;
  for (let i = firstRangeEndingAfter(ranges, start); i < ranges.length && ranges[i]!.start < end; i++) {
    const r = ranges[i]!;
    for (let index = Math.max(start, r.start); index < Math.min(end, r.start + r.count); index++) {
      const at = (index - r.start) * CELL_BYTES;
      const before = state[i]!.slice(at, at + CELL_BYTES);
      const after = bytes.slice((index - start) * CELL_BYTES, (index - start + 1) * CELL_BYTES);
      state[i]!.set(after, at);
      visit(index, before, after);
    }
  }
}

function valueOf(ranges: CellRange[], state: Uint8Array[], index: number): Uint8Array {
  const i = firstRangeEndingAfter(ranges, index);
  const at = (index - ranges[i]!.start) * CELL_BYTES;
  return state[i]!.slice(at, at + CELL_BYTES);
}

function inRanges(ranges: CellRange[], index: number): boolean {
  const i = firstRangeEndingAfter(ranges, index);
  return i < ranges.length && ranges[i]!.start <= index;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The first of the sorted, disjoint `ranges` that ends after cell `start`. */
function firstRangeEndingAfter(ranges: CellRange[], start: number): number {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid]!.start + ranges[mid]!.count <= start) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Copies the part of a run (cells from `start`) that falls in each range into that range's buffer. */
function applyRun(start: number, bytes: Uint8Array, ranges: CellRange[], out: Uint8Array[]): void {
  const end = start + bytes.byteLength / CELL_BYTES;
  for (let i = firstRangeEndingAfter(ranges, start); i < ranges.length && ranges[i]!.start < end; i++) {
    const r = ranges[i]!;
    const from = Math.max(start, r.start);
    const to = Math.min(end, r.start + r.count);
    out[i]!.set(bytes.subarray((from - start) * CELL_BYTES, (to - start) * CELL_BYTES), (from - r.start) * CELL_BYTES);
  }
}
