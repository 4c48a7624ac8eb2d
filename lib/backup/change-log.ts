/** The interface of a change log: where every change is recorded before its answer goes out. */
import type { Change, Run } from './change.js';

/** Where a reader of unshipped changes stands; opaque to callers. */
export type LogCursor = unknown;

/** Changes read back for shipping: those after the floor, and where the next read starts. */
export interface UnshippedChanges {
  changes: Change[];
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
  /** Every change up to `lsn` is in the store: the log may drop it. */
  release(lsn: number): Promise<void>;
  /** Writes what is pending and closes; the log keeps its contents for the next start. */
  close(): Promise<void>;
}
