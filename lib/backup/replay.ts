/**
 * The one replay: a snapshot, then the change sets committed after it, then the log's changes the store
 * lacks, each change once (per lineage, by lsn). Boot replays it to the newest state, time travel and
 * history to an instant, and retention keeps what the oldest kept snapshot's replay needs.
 */
import type { BlobStore } from '../store.js';
import type { Change } from './change.js';
import type { ChangeLog } from './change-log.js';
import { readChangeSet } from './change-set.js';
import { UnreadableCommitError, type CommitLog, type SnapshotCommit, type SnapshotRef } from './commit-log.js';

/** What a replay reads: the store, its commits, the kept snapshots (newest first) and the log. */
export interface ReplaySource {
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

/** The instant asked for lies outside the history kept; the message names the span. */
export class OutsideHistoryError extends Error {
  override name = 'OutsideHistoryError';
}

/** A change set was shipped from a world of another size (CUBE_CELLS) than the one replayed; the message names both. */
export class WorldSizeError extends Error {
  override name = 'WorldSizeError';
}

/**
 * The first seq a snapshot's replay needs: the snapshot itself, or the first change set that may hold changes
 * it lacks (sets committed while it uploaded, named by `replayFrom`). Retention keeps from here on.
 */
export function firstSeqNeeded(snapshot: Pick<SnapshotRef, 'seq' | 'replayFrom'>): number {
  return snapshot.replayFrom > 0 ? Math.min(snapshot.replayFrom, snapshot.seq) : snapshot.seq;
}

/**
 * When a snapshot took its place in the sequence of commits (ms). Bases are chosen by it: every change
 * it holds was made before its commit, and every later change is in a set after it. Not `createdAt`, which a
 * commit written by an older version for a restore of a named backup copied from the old snapshot.
 */
export function placedAt(ref: Pick<SnapshotRef, 'committedAt' | 'createdAt'>): number {
  return Date.parse(ref.committedAt ?? ref.createdAt);
}

/** The span that can be read: from the oldest kept snapshot's commit up to now; undefined before the first snapshot. */
export function historySpan(source: Pick<ReplaySource, 'snapshots' | 'now'>): { earliest: string; latest: string } | undefined {
  const oldest = source.snapshots.at(-1);
  return oldest ? { earliest: new Date(placedAt(oldest)).toISOString(), latest: new Date(source.now).toISOString() } : undefined;
}

/** A replay: the snapshot it starts from, and every change after that snapshot, oldest first. */
export interface Replay { snapshot: SnapshotCommit; changes: AsyncGenerator<Change> }

/**
 * Opens a replay for an instant `from` (ms): the newest kept snapshot committed at or before it, then the
 * change sets after that snapshot (stopping once one begins after `until`) and the changes only the log
 * holds. OutsideHistoryError when `from` is before the oldest kept snapshot or after now.
 */
export async function openReplay(source: ReplaySource, from: number, until = Number.POSITIVE_INFINITY): Promise<Replay> {
  const span = historySpan(source);
  if (!span) throw new OutsideHistoryError('no history is kept yet: it starts with the first snapshot');
  if (!(from >= Date.parse(span.earliest) && from <= source.now)) {
    throw new OutsideHistoryError(`${new Date(from).toISOString()} is outside the history kept, from ${span.earliest} to ${span.latest}`);
  }
  // The log first: what it holds now and the store lacks. Read before the commits are listed, so a shipment
  // (and the release of its log segment) in between leaves each change in one of the two, at worst in both.
  const local = await source.changeLog.unshipped(undefined, source.storeLsn, Number.MAX_SAFE_INTEGER);
  if (local.gap) throw new OutsideHistoryError('the changes since the last snapshot are not all kept (the write-ahead log is off and more than 64 MiB changed): take a snapshot (POST /s3dump), or turn WAL_DIR on');
  const ref = source.snapshots.find((s) => placedAt(s) <= from)!;
  const snapshot = (await source.commits.read(ref.seq)) as SnapshotCommit;
  const seqs = await source.commits.seqs();
  return { snapshot, changes: replayChanges(source, snapshot, seqs, until, { lineage: source.changeLog.lineage, changes: local.changes.list() }) };
}

/**
 * The changes after `snapshot` (or, undefined, every change set: the base is the empty or legacy world), oldest first, each once: those of the change sets among `seqs` from the
 * first the snapshot needs (stopping once a set begins after `until`), then `local` (the log's changes the
 * store lacks). A change can come twice (from the log and a set shipped while the read began, or from two
 * sets after a lost reply): each lineage's lsns only grow, so a change at or below one seen is dropped, as is
 * one the snapshot holds.
 */
export async function* replayChanges(
  source: Pick<ReplaySource, 'store' | 'commits' | 'cells'>, snapshot: SnapshotCommit | undefined, seqs: number[], until = Number.POSITIVE_INFINITY,
  local?: { lineage: string; changes: Change[] },
): AsyncGenerator<Change> {
  // Without a snapshot (a prefix written before the first boot committed one), every set applies to the base.
  const first = snapshot ? firstSeqNeeded(snapshot) : 0;
  const after = seqs.filter((seq) => seq >= first && seq !== snapshot?.seq);
  const newest = new Map<string, number>(snapshot ? [[snapshot.lineage, snapshot.snapshotLsn]] : []);
  const once = (change: Change, lineage: string) => {
    if (change.lsn <= (newest.get(lineage) ?? 0)) return false;
    newest.set(lineage, change.lsn);
    return true;
  };
  for await (const commit of source.commits.inOrder(after)) {
    if (commit.kind !== 'changes') continue;
    if (Date.parse(commit.firstAt) > until) return; // nothing later matters, and the log holds only later ones
    // Its cells may all fit a smaller world too: only the recorded size tells it belongs to another world.
    if (commit.cells !== undefined && commit.cells !== source.cells) {
      throw new WorldSizeError(`change set #${commit.seq} (${commit.name}) was shipped from a world of ${commit.cells} cells, but this world has ${source.cells} cells (CUBE_CELLS)`);
    }
    for (const change of await readChangeSet(source.store, commit, source.cells)) if (once(change, commit.lineage)) yield change;
  }
  for (const change of local?.changes ?? []) if (once(change, local!.lineage)) yield change;
}

/**
 * `work` (a read of the past at `instant`), with a store object that went missing under it answered as
 * OutsideHistoryError when retention has moved the span past `instant` meanwhile (a read racing a prune).
 */
export async function withinSpan<T>(source: () => Pick<ReplaySource, 'snapshots' | 'now'>, instant: number, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    const span = historySpan(source());
    if (span && instant < Date.parse(span.earliest) && (err instanceof UnreadableCommitError || /is missing/.test((err as Error)?.message ?? ''))) {
      throw new OutsideHistoryError(`${new Date(instant).toISOString()} is outside the history kept, from ${span.earliest} (retention moved it while this was read)`);
    }
    throw err;
  }
}
