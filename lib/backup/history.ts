/**
 * The past, read from the store and the log through the one replay (replay.ts): the cells of some ranges
 * as they were at an instant, and pages of who changed which cells. Nothing of the world is touched.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CELL_BYTES } from '../cube.js';
import { CHANGES_A_TURN } from './change.js';
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

/** The cells of `ranges` in `snapshot`, one buffer per range (borrowed from `keep`), copied out of the whole snapshot as `keep` holds it. */
async function keptRanges(source: HistorySource, snapshot: SnapshotCommit, ranges: CellRange[], keep: SnapshotCache): Promise<Uint8Array[]> {
  const whole = await keep.get(snapshot.key, async () => {
    const bytes = new Uint8Array(snapshot.bytes);
    await loadSnapshot(source.store, snapshot.key, bytes, snapshot.sha256, `backup ${snapshot.name}`);
    return bytes;
  });
  const out: Uint8Array[] = [];
  for (const r of ranges) {
    const part = keep.borrow(r.count * CELL_BYTES);
    // A piece at a time with a turn for the event loop between: one copy of a whole world would stall it for tens of ms.
    for (let at = 0; at < part.length; at += COPY_PIECE_BYTES) {
      part.set(whole.subarray(r.start * CELL_BYTES + at, r.start * CELL_BYTES + Math.min(part.length, at + COPY_PIECE_BYTES)), at);
      if (at + COPY_PIECE_BYTES < part.length) await nextTurn();
    }
    out.push(part);
  }
  return out;
}

/** Copies out of a kept snapshot go this many bytes between turns of the event loop (into memory not touched before, a piece can take tens of ms on a VM). */
const COPY_PIECE_BYTES = 1024 * 1024;

/** The cells of `ranges` (sorted, disjoint) in `snapshot`, one buffer per range. */
export async function loadRanges(source: HistorySource, snapshot: SnapshotCommit, ranges: CellRange[]): Promise<Uint8Array[]> {
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
  const ranges = query.ranges ?? (await authorCells(source, query.by!, query.since, query.until, { limit: query.limit + 1, older }));
  if (ranges.length === 0) return { changes: [] };
  const replay = await openReplay(source, query.since, query.until);
  const state = await loadRanges(source, replay.snapshot, ranges);
  const page: CellChange[] = [];
  let more = false;
  let seen = 0;
  for await (const change of replay.changes) {
    if (++seen % CHANGES_A_TURN === 0) await nextTurn(); // change sets may come from memory, with no wait between them
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

/**
 * The cells of the newest `limit` cell changes by `by` in (since, until] that pass `older`, as sorted merged
 * ranges: a page of an author's history tracks only these, so its memory stays bounded by the page.
 */
async function authorCells(source: HistorySource, by: string, since: number, until: number, newest: { limit: number; older: (c: { at: number; lsn: number; seq: number }) => boolean }): Promise<CellRange[]> {
  const replay = await openReplay(source, since, until);
  const recent: number[] = []; // the cells of the newest changes seen, oldest first
  let seen = 0;
  for await (const change of replay.changes) {
    if (++seen % CHANGES_A_TURN === 0) await nextTurn();
    if (change.by !== by || change.at <= since || change.at > until) continue;
    let seq = 0;
    for (const run of change.runs) {
      const end = run.start + run.bytes.byteLength / CELL_BYTES;
      for (let i = run.start; i < end; i++, seq++) {
        if (!newest.older({ at: change.at, lsn: change.lsn, seq })) continue;
        recent.push(i);
        if (recent.length > newest.limit) recent.shift();
      }
    }
  }
  return mergeRanges([...new Set(recent)].map((start) => ({ start, count: 1 })));
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

/** The first of the sorted, disjoint `ranges` that ends after cell `start` (ranges.length when none does). */
export function firstRangeEndingAfter(ranges: CellRange[], start: number): number {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid]!.start + ranges[mid]!.count <= start) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Copies the part of a run (cells from `start`) that falls in each of the sorted, disjoint `ranges` into that range's buffer. */
export function applyRun(start: number, bytes: Uint8Array, ranges: CellRange[], out: Uint8Array[]): void {
  const end = start + bytes.byteLength / CELL_BYTES;
  for (let i = firstRangeEndingAfter(ranges, start); i < ranges.length && ranges[i]!.start < end; i++) {
    const r = ranges[i]!;
    const from = Math.max(start, r.start);
    const to = Math.min(end, r.start + r.count);
    out[i]!.set(bytes.subarray((from - start) * CELL_BYTES, (to - start) * CELL_BYTES), (from - r.start) * CELL_BYTES);
  }
}
