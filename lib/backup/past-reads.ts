/**
 * Reads of the past, any number of instants in one replay: the snapshot at or before the earliest instant is
 * loaded once (only the cells asked), the changes after it are replayed once, and each instant's cells are
 * copied out as the replay passes it. A batch of 4,096 reads at 4,096 instants costs one replay, not 4,096.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { CELL_BYTES } from '../cube.js';
import { CellSet } from './cell-set.js';
import { CHANGES_A_TURN, type Change } from './change.js';
import { applyRun, firstRangeEndingAfter, loadRanges, mergeRanges, type CellRange, type HistorySource } from './history.js';
import { openReplay } from './replay.js';

/** One read of the past: the cells of `ranges` (any order, may overlap) as they were at `at` (ms since the epoch). */
export interface PastRead { at: number; ranges: CellRange[] }

/**
 * The cells of every read, one buffer per range (4 bytes a cell), in the order asked; a range of no cells
 * gets an empty buffer. OutsideHistoryError when an instant is outside the history kept.
 */
export async function cellsAtInstants(source: HistorySource, reads: PastRead[]): Promise<Uint8Array[][]> {
  if (reads.length === 0) return [];
  const instants = [...new Set(reads.map((r) => r.at))].sort((a, b) => a - b);
  const latest = instants.at(-1)!;
  // The earliest is checked by openReplay; the latest may lie after now, and openReplay's check names the span.
  if (latest > source.now) await openReplay(source, latest);
  const union = mergeRanges(reads.flatMap((r) => r.ranges));
  const replay = await openReplay(source, instants[0]!, latest);
  if (union.length === 0) {
    await replay.changes.return(undefined);
    return reads.map((r) => r.ranges.map(() => new Uint8Array(0)));
  }
  const state = await loadRanges(source, replay.snapshot, union);
  // Most changes touch none of the cells asked: a bit a cell tells so at once, before any search of `union`.
  const asked = new CellSet(source.cells);
  for (const r of union) asked.add(r.start, r.start + r.count);
  const touches = (start: number, bytes: Uint8Array) => {
    const end = start + bytes.byteLength / CELL_BYTES;
    return asked.nextMember(start, end) < end;
  };

  /** Where each asked range lies in `union`: its index there and the byte offset in that buffer. */
  const place = (r: CellRange) => {
    const i = firstRangeEndingAfter(union, r.start);
    return { i, offset: (r.start - union[i]!.start) * CELL_BYTES };
  };
  // One instant alone (GET /cells?at=, a restore): its cells are views of the replayed state, no copy.
  if (instants.length === 1) {
    await replayInto(replay.changes, latest, state, union, touches);
    return reads.map((read) => read.ranges.map((r) => {
      if (r.count === 0) return new Uint8Array(0);
      const { i, offset } = place(r);
      return state[i]!.subarray(offset, offset + r.count * CELL_BYTES);
    }));
  }

  const out: Uint8Array[][] = reads.map((read) => read.ranges.map((r) => new Uint8Array(r.count * CELL_BYTES)));
  const readsAt = new Map<number, number[]>();
  reads.forEach((read, k) => {
    const same = readsAt.get(read.at);
    if (same) same.push(k);
    else readsAt.set(read.at, [k]);
  });
  const capture = (at: number) => {
    for (const k of readsAt.get(at)!) {
      reads[k]!.ranges.forEach((r, j) => {
        if (r.count === 0) return;
        const { i, offset } = place(r);
        out[k]![j]!.set(state[i]!.subarray(offset, offset + r.count * CELL_BYTES));
      });
    }
  };
  let next = 0; // the first instant not captured yet
  let changes = 0;
  for await (const change of replay.changes) {
    if (++changes % CHANGES_A_TURN === 0) await yieldToEventLoop();
    // The state holds every change so far, all made at or before the instants still ahead: capture those this one passes.
    while (next < instants.length && instants[next]! < change.at) capture(instants[next++]!);
    for (const run of change.runs) if (touches(run.start, run.bytes)) applyRun(run.start, run.bytes, union, state);
    // A clock that stepped back: a change after some captured instants but made before them belongs to them too.
    if (next > 0 && change.at <= instants[next - 1]!) {
      for (let n = next - 1; n >= 0 && instants[n]! >= change.at; n--) {
        for (const k of readsAt.get(instants[n]!)!) applyToRead(change, reads[k]!.ranges, out[k]!);
      }
    }
  }
  while (next < instants.length) capture(instants[next++]!);
  return out;
}

/** Applies to `state` (the buffers of `ranges`) every change made at or before `at`, in order (the runs that `touches` the ranges). */
async function replayInto(changes: AsyncGenerator<Change>, at: number, state: Uint8Array[], ranges: CellRange[], touches: (start: number, bytes: Uint8Array) => boolean): Promise<void> {
  let seen = 0;
  for await (const change of changes) {
    if (++seen % CHANGES_A_TURN === 0) await yieldToEventLoop();
    if (change.at > at) continue;
    for (const run of change.runs) if (touches(run.start, run.bytes)) applyRun(run.start, run.bytes, ranges, state);
  }
}

/** Applies `change` to the buffers of one read's `ranges` (any order, may overlap). */
function applyToRead(change: Change, ranges: CellRange[], out: Uint8Array[]): void {
  for (const run of change.runs) {
    const end = run.start + run.bytes.byteLength / CELL_BYTES;
    ranges.forEach((r, j) => {
      const from = Math.max(run.start, r.start);
      const to = Math.min(end, r.start + r.count);
      if (from < to) out[j]!.set(run.bytes.subarray((from - run.start) * CELL_BYTES, (to - run.start) * CELL_BYTES), (from - r.start) * CELL_BYTES);
    });
  }
}
