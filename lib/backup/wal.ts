/**
 * The write-ahead log: every change is appended as a checksummed frame before its answer goes out. The
 * changes of one event-loop turn are one write (group commit); in `strict` mode that write is followed by
 * fdatasync before anyone is answered, in `write` mode fdatasync runs at least every second. One writer loop
 * decides all file work and has it done in order (each step on the files is wal-segments.ts): writes, syncs,
 * rotation, the repair after a failure, and follow() (a standby mirroring its leader, a takeover): the switch
 * to another lineage, which deletes every segment.
 *
 * A write that fails (disk full, EIO), or a segment that cannot be started, is a failure: the group and every
 * change after it are dropped (their waiters told), the segment is cut back to its last durable frame, and
 * writes are refused until a retry finds the log writable again.
 *
 * Layout of the folder: `LOCK` (its owner: wal-lock.ts), `ID` (the server's id: wal-id.ts), segments named
 * `<lineage>-<first lsn>.wal`, and for a moment after a failed write `probe.tmp` (does the disk take writes
 * again?): their files are wal-segments.ts. A frame is [payload length u32 LE][CRC-32 of payload u32 LE]
 * [payload] (change.ts); wal-frames.ts reads them back, wal-recovery.ts replays them at start.
 */
import { mkdir } from 'node:fs/promises';
import type { Log } from '../log.js';
import { ByteWriter, type Change, type Run } from './change.js';
import { checkPosition, type ChangeLog, type LogCursor, type UnshippedChanges } from './change-log.js';
import { writeFrame } from './wal-frames.js';
import { folderId } from './wal-id.js';
import { FolderLock, type LockTiming } from './wal-lock.js';
import { listSegments, recoverSegments, type Recovery } from './wal-recovery.js';
import { SegmentFiles } from './wal-segments.js';

export { FolderIdError } from './wal-id.js';
export { LogLockedError } from './wal-lock.js';
export { LogCorruptError, type Recovery } from './wal-recovery.js';

/** How the log makes a frame durable before the answer: `write` survives a process crash, `strict` a power loss. */
export type WalSync = 'write' | 'strict';

export interface WalOptions {
  dir: string;
  sync: WalSync;
  /** Cells in the world: frames naming cells beyond it are corrupt. */
  cells: number;
  log: Log;
  /** A segment is closed and a new one begun once it holds this many bytes. */
  segmentBytes?: number;
  /** In `write` mode, the longest a written frame waits for fdatasync. */
  syncIntervalMs?: number;
  /** After a failure, the wait before the log tries again to become writable. */
  retryMs?: number;
  /** Test-only (CUBECACHE_TEST_SYNC_MARKS, see config.ts): after each fdatasync, `<segment>.synced` records the bytes it made durable, so a power-loss test knows what a power loss would keep. */
  syncMarks?: boolean;
  /** The lock's heartbeat and watch (wal-lock.ts). */
  lock?: LockTiming;
}

/** Frames waiting for one write: `buffers`, then the frames appended into `out` since (sealed into `buffers` when written). */
interface Group { buffers: Buffer[]; out: ByteWriter | undefined; bytes: number; lastLsn: number; waiters: Array<(err?: Error) => void> }
/** A follow() the writer has not done yet. */
interface FollowRequest { lineage: string; lsn: number; resolve: () => void; reject: (err: Error) => void }

/** After a failed write, the disk must take this much (at most) in a probe file before writes are taken again. */
const PROBE_MAX_BYTES = 1024 * 1024;

const newGroup = (): Group => ({ buffers: [], out: undefined, bytes: 0, lastLsn: 0, waiters: [] });
/** Bytes a group's writer starts with: a few dozen single-cell frames before it grows. */
const GROUP_START_BYTES = 4096;

/** Moves the frames in `group.out` to the end of `group.buffers`. */
function seal(group: Group): void {
  if (group.out === undefined) return;
  group.buffers.push(group.out.view());
  group.out = undefined;
}

/** A write-ahead log in one folder, owned by one server at a time. Open, then recover() once, then append. */
export class WriteAheadLog implements ChangeLog {
  lastLsn = 0;
  durableLsn = 0;
  lineage = '';
  private serverId = '';
  /** The segments and the open one's file: the writer alone changes them, but for release() (and read() reads beside it). */
  private readonly files: SegmentFiles;
  private followRequest: FollowRequest | undefined;
  /** `write` mode: frames written since the last fdatasync, which is due at `syncDueAt`. */
  private unsynced = false;
  private syncDueAt = 0;
  /** After a failed write: bytes the disk must take in a probe before writes are taken again. */
  private probeBytes = 0;
  /** Why the log cannot be written now (cleared by a retry that makes it writable). */
  private broken: Error | undefined;
  /** The lock was taken by another process: nothing is written again. */
  private lockLost: Error | undefined;
  private pending = newGroup();
  private inflight: Group | undefined;
  private flushQueued = false;
  private wakeUp: (() => void) | undefined;
  private writer: Promise<void> | undefined;
  /** Set by close(): nothing new is taken once the writer has written what was pending. */
  private closed = false;
  private stopped = false;
  private closing: Promise<void> | undefined;
  private lock: FolderLock | undefined;

  private constructor(private readonly options: WalOptions) {
    this.files = new SegmentFiles({ dir: options.dir, cells: options.cells, segmentBytes: options.segmentBytes ?? 64 * 1024 * 1024, syncMarks: options.syncMarks ?? false });
  }

  /** The id of the server that runs on this folder (its `ID` file, made once: wal-id.ts): the lease knows it across restarts. */
  get id(): string {
    return this.serverId;
  }

  /** Set while the log cannot be written (disk full, EIO, no segment, the lock lost): writes must be refused. */
  get failure(): Error | undefined {
    return this.lockLost ?? this.broken ?? (this.stopped ? new Error('the write-ahead log is closed') : undefined);
  }

  /** True once recover() has run (the log takes appends). */
  get recovered(): boolean {
    return this.writer !== undefined;
  }

  /** Creates the folder if needed, takes its lock and reads its id; LogLockedError if a live server holds it, FolderIdError if its ID file is unreadable, the file system's error if it cannot be written. */
  static async open(options: WalOptions): Promise<WriteAheadLog> {
    const wal = new WriteAheadLog(options);
    await mkdir(options.dir, { recursive: true });
    wal.lock = await FolderLock.take(options.dir, options.lock ?? {}, (err) => wal.loseLock(err));
    try {
      wal.serverId = await folderId(options.dir);
      wal.files.adopt(await listSegments(options.dir));
    } catch (err) {
      await wal.lock.release();
      throw err;
    }
    return wal;
  }

  /**
   * Replays into `apply` every frame after `storeLsn` when the folder's segments belong to `lineage` (the
   * store's newest commit continues them); otherwise moves them aside unread. Then opens a new segment for
   * appends, continuing the lineage (or starting a new one). LogCorruptError if a bad frame precedes good ones.
   */
  async recover(lineage: string | undefined, storeLsn: number, apply: (change: Change) => void): Promise<Recovery> {
    const found = await recoverSegments(this.options, this.files.segments.slice(), lineage, storeLsn, apply, (segment, bytes) => this.files.mark(segment, bytes));
    this.files.adopt(found.segments);
    this.lineage = found.lineage;
    this.lastLsn = found.lastLsn;
    this.durableLsn = found.lastLsn;
    await this.startSegment(found.lastLsn + 1);
    await this.files.syncName();
    this.writer = this.run();
    return found.recovery;
  }

  append(at: number, by: string, runs: Run[]): Change {
    const change: Change = { lsn: this.lastLsn + 1, at, by, runs };
    // A failed or closed log takes nothing: the change is not logged, and afterWrite says so.
    if (this.failure || !this.writer) return change;
    // Encoded in place at the end of the group's buffer: no buffer of its own per frame.
    const group = this.pending;
    const bytes = writeFrame((group.out ??= new ByteWriter(GROUP_START_BYTES)), change);
    this.lastLsn = change.lsn;
    group.bytes += bytes;
    group.lastLsn = change.lsn;
    this.scheduleFlush();
    return change;
  }

  afterWrite(done: (err?: Error) => void): void {
    const failure = this.failure;
    if (failure) done(failure);
    else if (this.pending.bytes > 0) this.pending.waiters.push(done);
    else if (this.inflight) this.inflight.waiters.push(done);
    else done();
  }

  unshipped(cursor: LogCursor | undefined, floor: number, maxBytes: number): Promise<UnshippedChanges> {
    return this.files.read(cursor, floor, maxBytes);
  }

  async follow(lineage: string, lsn: number): Promise<void> {
    checkPosition(lineage, lsn);
    const failure = this.failure ?? (!this.writer || this.closed ? new Error('the write-ahead log is not open for writes') : undefined);
    if (failure) throw failure;
    if (this.followRequest) throw new Error('a follow() is already under way');
    // The writer does it, between two pieces of its file work: it never races a write, a sync or a rotation.
    return new Promise((resolve, reject) => {
      this.followRequest = { lineage, lsn, resolve, reject };
      this.wake();
    });
  }

  release(lsn: number): Promise<void> {
    return this.files.release(lsn);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.wake();
      await this.writer; // writes what is pending (unless the log has failed), then ends
      this.stopped = true;
      await this.files.close();
      await this.lock?.release();
    })();
    return this.closing;
  }

  /**
   * The writer: one loop that does every piece of file work in turn. It writes the pending group once the turn
   * that appended it has ended, syncs in `write` mode when a sync is due, and after a failure tries every
   * `retryMs` to make the log writable again. It ends on close, once what was pending is written.
   */
  private async run(): Promise<void> {
    try {
      await this.writeLoop();
    } finally {
      this.stopped = true;
      this.followRequest?.reject(this.failure!);
      this.followRequest = undefined;
    }
  }

  private async writeLoop(): Promise<void> {
    const syncIntervalMs = this.options.syncIntervalMs ?? 1000;
    for (;;) {
      if (this.closed && (this.failure || this.pending.bytes === 0)) return;
      // A follow waits for the pending group (written below first), never drops it: its waiters are told.
      if (this.followRequest && (this.failure || this.pending.bytes === 0)) {
        await this.switchLineage(this.followRequest);
        continue;
      }
      if (this.lockLost) {
        if (this.pending.bytes > 0) this.drop(this.lockLost);
        await this.wait(); // nothing is written again; close() ends the loop
        continue;
      }
      if (!this.broken && this.unsynced && (this.closed || Date.now() >= this.syncDueAt)) {
        await this.sync().catch((err: unknown) => this.fail(err as Error));
        continue;
      }
      if (this.broken) {
        await this.wait(this.options.retryMs ?? 1000);
        if (this.closed || this.lockLost) continue; // the top of the loop ends it, or stops writing for good
      } else if (this.pending.bytes === 0 || (this.flushQueued && !this.closed)) {
        // Nothing to write yet (or the turn that appended is still running: its other changes join the group).
        await this.wait(this.unsynced ? Math.max(0, this.syncDueAt - Date.now()) : undefined);
        continue;
      }
      try {
        await this.ready();
        if (this.broken) {
          this.broken = undefined;
          this.options.log.info('wal_recovered', { message: 'the write-ahead log is written again: writes are taken' });
        }
        if (this.pending.bytes > 0) await this.writePending(syncIntervalMs);
      } catch (err) {
        await this.fail(err as Error);
      }
    }
  }

  /**
   * follow(): the log holds nothing from now on, continues `lineage` after `lsn`, and starts that segment.
   * Run by the writer with no group in flight or pending. A step that fails is a failure like a failed write:
   * `ready()` retries what is left (deleting the stale segments, starting the new one) until the log is writable.
   */
  private async switchLineage(request: FollowRequest): Promise<void> {
    this.followRequest = undefined;
    if (this.failure) {
      request.reject(this.failure);
      return;
    }
    this.lineage = request.lineage;
    this.lastLsn = request.lsn;
    this.durableLsn = request.lsn;
    this.unsynced = false; // what it did not sync is dropped with it
    await this.files.retire();
    try {
      await this.ready();
      request.resolve();
    } catch (err) {
      await this.fail(err as Error);
      request.reject(err as Error);
    }
  }

  /** Resolves on wake() or after `ms` (never, when undefined). */
  private wait(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => this.wake(), ms);
      timer?.unref();
      this.wakeUp = () => {
        clearTimeout(timer);
        this.wakeUp = undefined;
        resolve();
      };
    });
  }

  private wake(): void {
    this.wakeUp?.();
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    // setImmediate runs after every I/O callback of this turn: all their changes go in one write.
    setImmediate(() => {
      this.flushQueued = false;
      this.wake();
    });
  }

  /**
   * Makes the log writable, each step only when needed, so a failure leaves the rest to the next try: cuts
   * the segment back to its last durable frame, syncs what a failed sync left, rotates a full segment,
   * starts one if none is open, and after a failed write checks that the disk takes writes again.
   */
  private async ready(): Promise<void> {
    const files = this.files;
    if (files.tail) await files.cutTail();
    if (this.unsynced && this.broken) await this.sync();
    if (files.full) await files.rotate();
    if (files.hasStale) await files.dropStale();
    if (!files.isOpen) await this.startSegment(this.durableLsn + 1);
    if (files.nameDirty) await files.syncName();
    if (this.probeBytes > 0) {
      await files.probe(this.probeBytes);
      this.probeBytes = 0;
    }
  }

  /** Writes the pending group at the end of the segment and tells its waiters; throws, leaving the group in flight, if it cannot. */
  private async writePending(syncIntervalMs: number): Promise<void> {
    const group = this.pending;
    seal(group);
    this.pending = newGroup();
    this.inflight = group;
    try {
      await this.files.write(group.buffers, group.bytes, this.options.sync === 'strict');
    } catch (err) {
      this.probeBytes = Math.min(Math.max(group.bytes, 4096), PROBE_MAX_BYTES);
      throw err;
    }
    this.durableLsn = group.lastLsn;
    this.inflight = undefined;
    if (this.options.sync === 'strict') await this.files.mark();
    else if (!this.unsynced) {
      this.unsynced = true;
      this.syncDueAt = Date.now() + syncIntervalMs;
    }
    for (const done of group.waiters) done();
  }

  /**
   * The log cannot be written: refuses writes from now until a retry makes it writable, cuts off what the
   * failed write left (before anyone is told, so a crash now cannot replay it), and drops every change not
   * yet durable, telling their waiters, newest first (so undoing each in that order restores the durable state).
   */
  private async fail(err: Error): Promise<void> {
    if (!this.broken) this.options.log.error('wal_write_failed', { err, message: 'the write-ahead log cannot be written: writes are refused (503) until it can' });
    this.broken = err;
    if (this.files.tail) await this.files.cutTail().catch(() => undefined); // left for the retry, which comes before anything new
    this.drop(err);
  }

  /** Drops every change not yet durable and tells their waiters `err`, newest first. */
  private drop(err: Error): void {
    const dropped = [this.inflight, this.pending].filter((g): g is Group => g !== undefined);
    this.inflight = undefined;
    this.pending = newGroup();
    this.lastLsn = this.durableLsn;
    const waiters = dropped.flatMap((g) => g.waiters).reverse();
    for (const done of waiters) done(err);
  }

  private loseLock(err: Error): void {
    this.lockLost = err;
    this.options.log.error('wal_lock_lost', { err, message: err.message });
    this.wake(); // the writer drops what is pending once no write is in flight
  }

  /** fdatasyncs what `write` mode wrote; `unsynced` again if that fails, so a retry syncs it. */
  private async sync(): Promise<void> {
    if (!this.files.isOpen) return;
    this.unsynced = false;
    try {
      await this.files.sync();
    } catch (err) {
      this.unsynced = true;
      throw err;
    }
  }

  /** Starts the segment whose first frame is `firstLsn` in the log's lineage: nothing in it waits for a sync yet. */
  private async startSegment(firstLsn: number): Promise<void> {
    await this.files.start(this.lineage, firstLsn);
    this.unsynced = false;
  }
}
