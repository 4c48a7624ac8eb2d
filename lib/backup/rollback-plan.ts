/**
 * The plan of a rollback of one author's changes, in memory bounded by the cells they changed (a bit a cell
 * of the world, and a few bytes a changed cell), never an object a cell: two replays, the first finding the
 * cells (a CellSet), the second following only those from the snapshot on. The plan lists runs and counts,
 * and the first SKIPPED_DETAIL cells of each kind in detail.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { CELL_BYTES } from '../cube.js';
import { CHANGES_A_TURN, type Run } from './change.js';
import { CellSet } from './cell-set.js';
import { firstRangeEndingAfter, mergeRanges, type CellRange, type HistorySource } from './history.js';
import { openReplay } from './replay.js';
import { streamSnapshot } from './snapshot.js';

/** How many restored and skipped cells a plan lists one by one (the runs and counts cover them all). */
export const SKIPPED_DETAIL = 1000;
/** Cells worked through between two yields to the event loop (a few milliseconds). */
const CELLS_A_TURN = 1 << 18;
/** Who a cell is skipped for when it was written between the plan and the rollback's step. */
export const RACED = '(written while the rollback was planned)';

/** What a rollback puts back and what it leaves (see CONTRACTS.md: branch history builds it, core consumes it). */
export interface RollbackPlan {
  /** Runs to put back, sorted and disjoint: each cell's value before the author's first change in the window. */
  restore: Run[];
  /** Cells in restore. */
  restored: number;
  /** Cells the author changed but someone else changed later (left as they are), sorted, disjoint, as runs. */
  skippedRuns: CellRange[];
  /** Cells in skippedRuns. */
  skipped: number;
  /** The first SKIPPED_DETAIL skipped cells with who changed them last and their value now. */
  skippedCells: Array<{ index: number; by: string; value: Uint8Array }>;
  /** The first SKIPPED_DETAIL restored cells with their value now (`from`) and the one put back (`to`): an answer lists them, and after the step the world no longer holds `from`. */
  restoredCells: Array<{ index: number; from: Uint8Array; to: Uint8Array }>;
}

/**
 * For every cell of `region` (sorted, disjoint; the whole world when undefined) that `by` changed in
 * (since, until]: the value it held before their first change in that window, unless someone else changed
 * it after their last change (then it is skipped, with who did). Changes up to now count for the "after".
 * A cell that already holds that value is neither restored nor skipped.
 */
export async function planRollback(source: HistorySource, by: string, since: number, until: number, region?: CellRange[]): Promise<RollbackPlan> {
  const cells = await authorCellSet(source, by, since, until, region);
  const n = cells.size;
  const plan: RollbackPlan = { restore: [], restored: 0, skippedRuns: [], skipped: 0, skippedCells: [], restoredCells: [] };
  if (n === 0) return plan;
  // Dense, one entry a tracked cell, by slot: its value as the replay goes, its value before the author's
  // first change in the window, and who made its newest change since then (0: the author has not changed it
  // yet; 1: the author; 2 on: the others, in `names`). 16 bits an entry until there are more authors.
  const state = new Uint8Array(n * CELL_BYTES);
  const first = new Uint8Array(n * CELL_BYTES);
  let lastBy: Uint16Array | Uint32Array = new Uint16Array(n);
  const AUTHOR = 1;
  const authors = new Map<string, number>([[by, AUTHOR]]);
  const names = ['', by];

  const replay = await openReplay(source, since);
  const snapshot = replay.snapshot;
  await streamSnapshot(source.store, snapshot.key, snapshot.sha256, snapshot.bytes, `backup ${snapshot.name}`, (chunk, at) => {
    const end = at + chunk.length;
    cells.eachRun(Math.floor(at / CELL_BYTES), Math.ceil(end / CELL_BYTES), (a, b) => {
      const from = Math.max(a * CELL_BYTES, at);
      const to = Math.min(b * CELL_BYTES, end);
      state.set(chunk.subarray(from - at, to - at), cells.slot(a) * CELL_BYTES + (from - a * CELL_BYTES));
    });
  });

  let work = 0; // cells since the last yield
  let changes = 0;
  for await (const change of replay.changes) {
    const inWindow = change.at > since;
    const mine = inWindow && change.by === by && change.at <= until;
    let author = 0;
    if (inWindow) {
      author = authors.get(change.by) ?? names.push(change.by) - 1;
      authors.set(change.by, author);
      if (author > 0xffff && lastBy instanceof Uint16Array) lastBy = Uint32Array.from(lastBy);
    }
    for (const run of change.runs) {
      const runEnd = run.start + run.bytes.byteLength / CELL_BYTES;
      // A big run (a whole-world restore) in pieces, with a yield between them.
      for (let pieceStart = run.start; pieceStart < runEnd; pieceStart += CELLS_A_TURN) {
        const pieceEnd = Math.min(runEnd, pieceStart + CELLS_A_TURN);
        cells.eachRun(pieceStart, pieceEnd, (a, b) => {
          const slot0 = cells.slot(a);
          if (inWindow) {
            for (let slot = slot0; slot < slot0 + (b - a); slot++) {
              if (lastBy[slot] === 0) {
                if (!mine) continue; // before the author's first change to it: only its value matters
                const o = slot * CELL_BYTES;
                first[o] = state[o]!;
                first[o + 1] = state[o + 1]!;
                first[o + 2] = state[o + 2]!;
                first[o + 3] = state[o + 3]!;
              }
              lastBy[slot] = author;
            }
          }
          state.set(run.bytes.subarray((a - run.start) * CELL_BYTES, (b - run.start) * CELL_BYTES), slot0 * CELL_BYTES);
        });
        work += pieceEnd - pieceStart;
        if (work >= CELLS_A_TURN) {
          work = 0;
          await yieldToEventLoop();
        }
      }
    }
    if (++changes % CHANGES_A_TURN === 0) await yieldToEventLoop();
  }

  // Each tracked cell, in order: skipped (someone else changed it last), restored (it differs from its value
  // before the author), or neither. Runs of restored cells are views of `first` and `state`: slots in a row.
  let restoreStart = -1;
  let skipStart = -1;
  const endRestore = (end: number) => {
    if (restoreStart < 0) return;
    const a = cells.slot(restoreStart) * CELL_BYTES;
    const b = a + (end - restoreStart) * CELL_BYTES;
    plan.restore.push({ start: restoreStart, bytes: first.subarray(a, b) });
    plan.restored += end - restoreStart;
    restoreStart = -1;
  };
  const endSkip = (end: number) => {
    if (skipStart < 0) return;
    plan.skippedRuns.push({ start: skipStart, count: end - skipStart });
    plan.skipped += end - skipStart;
    skipStart = -1;
  };
  let visited = 0;
  for (let start = cells.nextMember(0, cells.cells); start < cells.cells;) {
    // A stretch of members, at most CELLS_A_TURN of it between two yields; the runs go on across pieces.
    const gap = cells.nextGap(start, cells.cells);
    const end = Math.min(gap, start + CELLS_A_TURN);
    let slot = cells.slot(start);
    for (let index = start; index < end; index++, slot++) {
      const o = slot * CELL_BYTES;
      if (lastBy[slot] === 0) {
        // The first replay saw the author change it, this one did not (the window's changes moved between
        // the two reads): nothing is known of its value before them, so it is left alone.
        endRestore(index);
        endSkip(index);
      } else if (lastBy[slot] !== AUTHOR) {
        endRestore(index);
        if (skipStart < 0) skipStart = index;
        if (plan.skippedCells.length < SKIPPED_DETAIL) plan.skippedCells.push({ index, by: names[lastBy[slot]!]!, value: state.slice(o, o + CELL_BYTES) });
      } else if (state[o] !== first[o] || state[o + 1] !== first[o + 1] || state[o + 2] !== first[o + 2] || state[o + 3] !== first[o + 3]) {
        endSkip(index);
        if (restoreStart < 0) restoreStart = index;
        if (plan.restoredCells.length < SKIPPED_DETAIL) plan.restoredCells.push({ index, from: state.slice(o, o + CELL_BYTES), to: first.slice(o, o + CELL_BYTES) });
      } else {
        endRestore(index);
        endSkip(index);
      }
    }
    if (end === gap) {
      endRestore(end);
      endSkip(end);
    }
    visited += end - start;
    if (visited >= CELLS_A_TURN) {
      visited = 0;
      await yieldToEventLoop();
    }
    start = end === gap ? cells.nextMember(gap, cells.cells) : end;
  }
  return plan;
}

/**
 * The cells `by` changed in (since, until], within `region` when given (sorted, disjoint), as a sealed
 * CellSet: one replay of the window's changes, without the snapshot.
 */
async function authorCellSet(source: HistorySource, by: string, since: number, until: number, region?: CellRange[]): Promise<CellSet> {
  const replay = await openReplay(source, since, until);
  const cells = new CellSet(source.cells);
  let seen = 0;
  for await (const change of replay.changes) {
    if (++seen % CHANGES_A_TURN === 0) await yieldToEventLoop();
    if (change.by !== by || change.at <= since || change.at > until) continue;
    for (const run of change.runs) {
      const end = run.start + run.bytes.byteLength / CELL_BYTES;
      if (!region) {
        cells.add(run.start, end);
        continue;
      }
      for (let i = firstRangeEndingAfter(region, run.start); i < region.length && region[i]!.start < end; i++) {
        cells.add(Math.max(run.start, region[i]!.start), Math.min(end, region[i]!.start + region[i]!.count));
      }
    }
  }
  cells.seal();
  return cells;
}

/**
 * The plan as the rollback's step applies it: `kept` are its restore runs less the cells written since it
 * was made (`raced`, sorted and disjoint, seen by the write path's watcher whatever their value), which are
 * left and listed as skipped (by RACED) with their value in `world` now.
 */
export function withoutRaced(plan: RollbackPlan, kept: Run[], raced: CellRange[], world: Uint8Array): RollbackPlan {
  if (raced.length === 0) return plan;
  let racedCount = 0;
  const racedCells: RollbackPlan['skippedCells'] = [];
  for (const r of raced) {
    racedCount += r.count;
    for (let i = r.start; i < r.start + r.count && racedCells.length < SKIPPED_DETAIL; i++) racedCells.push({ index: i, by: RACED, value: world.slice(i * CELL_BYTES, (i + 1) * CELL_BYTES) });
  }
  const isRaced = (index: number) => {
    const i = firstRangeEndingAfter(raced, index);
    return i < raced.length && raced[i]!.start <= index;
  };
  return {
    restore: kept,
    restored: plan.restored - racedCount,
    skippedRuns: mergeRanges([...plan.skippedRuns, ...raced]),
    skipped: plan.skipped + racedCount,
    skippedCells: [...plan.skippedCells, ...racedCells].sort((a, b) => a.index - b.index).slice(0, SKIPPED_DETAIL),
    restoredCells: plan.restoredCells.filter((c) => !isRaced(c.index)),
  };
}
