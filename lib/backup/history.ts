/**
 * Time travel: the cells of some ranges as they were at an instant, rebuilt from the newest kept snapshot
 * taken at or before it, the change sets after that snapshot, and the changes the log holds that are not
 * shipped yet, applying only the changes made at or before the instant. Nothing of the world is touched.
 */
import { CELL_BYTES } from '../cube.js';
import type { BlobStore } from '../store.js';
import type { Change } from './change.js';
import type { ChangeLog } from './change-log.js';
import { readChangeSet } from './change-set.js';
import type { CommitLog, SnapshotCommit } from './commit-log.js';
import type { SnapshotRef } from './retention.js';
import { loadSnapshotRanges } from './snapshot.js';

/** Consecutive cells: `count` from `start`. */
export interface CellRange { start: number; count: number }

/** The instant asked for lies outside the history kept; the message names the span. */
export class OutsideHistoryError extends Error {
  override name = 'OutsideHistoryError';
}

/** What time travel needs of the backups: the store, the commits, the kept snapshots and the log. */
export interface HistorySource {
  store: BlobStore;
  commits: CommitLog;
  cells: number;
  /** Kept snapshots, newest first. */
  snapshots: SnapshotRef[];
  changeLog: ChangeLog;
  /** The store holds the log up to this lsn; later changes are read from the log. */
  storeLsn: number;
  now: number;
}

/** The span that can be read: from the oldest kept snapshot up to now; undefined before the first snapshot. */
export function historySpan(source: Pick<HistorySource, 'snapshots' | 'now'>): { earliest: string; latest: string } | undefined {
  const oldest = source.snapshots.at(-1);
  return oldest ? { earliest: oldest.createdAt, latest: new Date(source.now).toISOString() } : undefined;
}

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
 * snapshot or after now.
 */
export async function cellsAt(source: HistorySource, at: number, ranges: CellRange[]): Promise<Uint8Array[]> {
  const span = historySpan(source);
  if (!span) throw new OutsideHistoryError('no history is kept yet: it starts with the first snapshot (POST /s3dump takes one now)');
  if (!(at >= Date.parse(span.earliest) && at <= source.now)) {
    throw new OutsideHistoryError(`${new Date(at).toISOString()} is outside the history kept, from ${span.earliest} to ${span.latest}`);
  }
  // The log first: what it holds now and the store lacks. Read before the commits are listed, so a shipment
  // (and the release of its log segment) in between leaves each change in one of the two, at worst in both,
  // and both are applied in lsn order, which gives the same cells.
  const local = await source.changeLog.unshipped(undefined, source.storeLsn, Number.MAX_SAFE_INTEGER);
  if (local.gap) throw new OutsideHistoryError('the changes since the last snapshot are not all kept (the write-ahead log is off and more than 64 MiB changed): take a snapshot (POST /s3dump), or turn WAL_DIR on');
  const ref = source.snapshots.find((s) => Date.parse(s.createdAt) <= at)!;
  const snapshot = (await source.commits.read(ref.seq)) as SnapshotCommit;
  const out = ranges.map((r) => new Uint8Array(r.count * CELL_BYTES));
  await loadSnapshotRanges(source.store, snapshot.key, snapshot.sha256, snapshot.bytes, ranges, out, `backup ${snapshot.name}`);
  const covered = (change: Change, lineage: string) => lineage === snapshot.lineage && change.lsn <= snapshot.snapshotLsn;
  const apply = (change: Change) => {
    if (change.at > at) return;
    for (const run of change.runs) applyRun(run.start, run.bytes, ranges, out);
  };
  // The change sets after the snapshot (from the first one it may lack), oldest first, until one begins after `at`.
  const from = snapshot.replayFrom > 0 ? Math.min(snapshot.replayFrom, snapshot.seq) : snapshot.seq + 1;
  const seqs = (await source.commits.seqs()).filter((seq) => seq >= from && seq !== snapshot.seq);
  for await (const commit of source.commits.inOrder(seqs)) {
    if (commit.kind !== 'changes') continue;
    if (Date.parse(commit.firstAt) > at) break;
    for (const change of await readChangeSet(source.store, commit, source.cells)) if (!covered(change, commit.lineage)) apply(change);
  }
  for (const change of local.changes) if (!covered(change, source.changeLog.lineage)) apply(change);
  return out;
}

/** Copies the part of a run (cells from `start`) that falls in each range into that range's buffer. */
function applyRun(start: number, bytes: Uint8Array, ranges: CellRange[], out: Uint8Array[]): void {
  const end = start + bytes.byteLength / CELL_BYTES;
  // The first range that ends after `start` (ranges are sorted and disjoint).
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid]!.start + ranges[mid]!.count <= start) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < ranges.length && ranges[i]!.start < end; i++) {
    const r = ranges[i]!;
    const from = Math.max(start, r.start);
    const to = Math.min(end, r.start + r.count);
    out[i]!.set(bytes.subarray((from - start) * CELL_BYTES, (to - start) * CELL_BYTES), (from - r.start) * CELL_BYTES);
  }
}
