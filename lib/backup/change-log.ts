/** The interface of a change log: where every change is recorded before its answer goes out. */
import type { ChangeBatch } from './change-batch.js';
import type { Change, Run } from './change.js';

/** A lineage as logs name it (16 lowercase hex digits: it is part of segment file names); RangeError otherwise, and for an lsn that is not a whole number >= 0. */
export function checkPosition(lineage: string, lsn: number): void {
  if (!/^[0-9a-f]{16}$/.test(lineage)) throw new RangeError(`a lineage is 16 hex digits, not ${JSON.stringify(lineage.slice(0, 40))}`);
  if (!Number.isSafeInteger(lsn) || lsn < 0) throw new RangeError(`an lsn is a whole number >= 0, not ${lsn}`);
}

/** Where a reader of unshipped changes stands; opaque to callers. */
export type LogCursor = unknown;

/** Changes read back for shipping: those after the floor, and where the next read starts. */
export interface UnshippedChanges {
  changes: ChangeBatch;
  /** The cursor after the last change returned. */
  next: LogCursor;
  /** True when the log no longer holds every change since the cursor (a memory log that overflowed): take a snapshot instead. */
  gap: boolean;
  /** True when more changes wait after `next` (the read stopped at its byte budget). */
  more: boolean;
}

/**
 * An append-only log of changes, written in groups (one write per event-loop turn). A group that cannot be
 * written is dropped with every change appended after it: afterWrite's error means those changes were not
 * logged and never will be (not even after a restart): undo them. Their lsns are given again to later changes.
 */
export interface ChangeLog {
  /** Set while the log cannot be written (disk full, EIO, no segment): writes must be refused, and append takes nothing. Cleared when a retry finds the log writable. */
  readonly failure: Error | undefined;
  /** The lsn of the newest change appended (after a failure, back to durableLsn). */
  readonly lastLsn: number;
  /** The lsn of the newest change known written (synced, in strict mode): no failure can take it back. */
  readonly durableLsn: number;
  /** The lineage this log belongs to: an id that ties it to the commits it continues. */
  readonly lineage: string;
  /** Records a change (already applied to the world) and returns it numbered; durable once afterWrite says so. */
  append(at: number, by: string, runs: Run[]): Change;
  /**
   * Calls `done` once every change appended so far is written (and synced in strict mode), or with the error
   * that made the log drop them (see above); the waiters of dropped changes are called newest first, so undoing
   * each change in that order restores the durable state.
   */
  afterWrite(done: (err?: Error) => void): void;
  /** Changes after `floor`, from `cursor` (undefined: the oldest kept), at most about `maxBytes` of cells. */
  unshipped(cursor: LogCursor | undefined, floor: number, maxBytes: number): Promise<UnshippedChanges>;
  /**
   * From now on this log continues `lineage` after `lsn` (a standby mirroring its leader, a takeover starting a
   * new lineage): waits until what is pending is written, drops every change the log holds (the caller
   * guarantees the store holds them, or they were never acknowledged), and the next append gets lsn + 1 of
   * `lineage`. Do not append until it resolves. Rejects with the log's failure (the log then retries the switch
   * as after any failure), or RangeError for a lineage that is not 16 hex digits. A cursor from before it is stale.
   */
  follow(lineage: string, lsn: number): Promise<void>;
  /** Every change up to `lsn` is in the store: the log may drop it. */
  release(lsn: number): Promise<void>;
  /** Writes what is pending and closes; the log keeps its contents for the next start. */
  close(): Promise<void>;
}
