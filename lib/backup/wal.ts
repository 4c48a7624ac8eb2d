/**
 * The write-ahead log: every change is appended as a checksummed frame before its answer goes out. The
 * changes of one event-loop turn are one write (group commit); in `strict` mode that write is followed by
 * fdatasync before anyone is answered, in `write` mode fdatasync runs at least every second. One writer loop
 * does all file work in order: writes, syncs, rotation, the repair after a failure, and follow() (a standby
 * mirroring its leader, a takeover): the switch to another lineage, which deletes every segment.
 *
 * A write that fails (disk full, EIO), or a segment that cannot be started, is a failure: the group and every
 * change after it are dropped (their waiters told), the segment is cut back to its last durable frame, and
 * writes are refused until a retry finds the log writable again.
 *
 * Layout of the folder: `LOCK` (its owner: wal-lock.ts), `ID` (the server's id: wal-id.ts), segments named
 * `<lineage>-<first lsn>.wal`, and for a moment after a failed write `probe.tmp` (does the disk take writes
 * again?). A frame is [payload length u32 LE][CRC-32 of payload u32 LE][payload] (change.ts); wal-frames.ts
 * reads them back, wal-recovery.ts replays them at start.
 */
import { mkdir, open, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { isCode, syncDir } from '../fs-util.js';
import type { Log } from '../log.js';
import { FrameBatch } from './change-batch.js';
import { ByteWriter, type Change, type Run } from './change.js';
import { checkPosition, type ChangeLog, type LogCursor, type UnshippedChanges } from './change-log.js';
import { readFrames, writeFrame } from './wal-frames.js';
import { folderId } from './wal-id.js';
import { FolderLock, type LockTiming } from './wal-lock.js';
import { listSegments, recoverSegments, segmentName, type Recovery, type Segment } from './wal-recovery.js';

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
interface Cursor { segment: string; offset: number }
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
  private segments: Segment[] = [];
  /** Segments a follow() dropped that are not deleted yet (the writer deletes them before it starts a segment). */
  private stale: Segment[] = [];
  private followRequest: FollowRequest | undefined;
  /** The deletions of release(), one after another: follow() waits for them before it deletes and names a segment anew. */
  private releasing: Promise<void> = Promise.resolve();
  private file: FileHandle | undefined;
  /** Bytes of the open segment that hold whole durable frames: what a failure cuts the file back to. */
  private size = 0;
  /** True while bytes past `size` may be in the file (a write, or its sync, has not finished well). */
  private tail = false;
  /** `write` mode: frames written since the last fdatasync, which is due at `syncDueAt`. */
  private unsynced = false;
  private syncDueAt = 0;
  /** The new segment's name is not yet durable in the folder. */
  private dirUnsynced = false;
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

  private constructor(private readonly options: WalOptions) {}

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
      wal.segments = await listSegments(options.dir);
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
    const found = await recoverSegments(this.options, this.segments, lineage, storeLsn, apply, (segment, bytes) => this.mark(segment, bytes));
    this.segments = found.segments;
    this.lineage = found.lineage;
    this.lastLsn = found.lastLsn;
    this.durableLsn = found.lastLsn;
    await this.startSegment(found.lastLsn + 1);
    await this.syncNewSegment();
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

  async unshipped(cursor: LogCursor | undefined, floor: number, maxBytes: number): Promise<UnshippedChanges> {
    // The segments as they are now: while this reads (and yields), writes may fill the open one and rotate to a
    // new one, and release() may drop old ones. The read ends with the segment open now, at its durable size
    // now; a later read goes on from there (going on into a newer segment would skip the open one's rest).
    const segments = this.segments.slice();
    const openSegment = segments.at(-1)?.name;
    const openSize = this.size; // nothing past this is whole and durable yet
    const from = cursor as Cursor | undefined;
    let index = from ? segments.findIndex((s) => s.name === from.segment) : 0;
    let offset = from && index >= 0 ? from.offset : 0;
    if (index < 0) index = 0; // the cursor's segment was released: everything in it is in the store
    const changes = new FrameBatch(this.options.cells);
    let budget = maxBytes;
    for (; index < segments.length; index++, offset = 0) {
      const segment = segments[index]!;
      const path = join(this.options.dir, segment.name);
      // readFrames leaves out those at or below floor; the changes stay frames until the shipper transcodes them.
      const read = await readFrames(path, offset, segment.name === openSegment ? openSize : undefined, budget, floor, changes);
      budget -= read.bytes;
      const next: Cursor = { segment: segment.name, offset: read.end };
      if (read.more || segment.name === openSegment) return { changes, next, gap: false, more: read.more };
    }
    return { changes, next: cursor, gap: false, more: false };
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
    const run = this.releasing.then(async () => {
      // A segment is covered when the next one starts at or before lsn + 1; the newest one is never deleted. The
      // writer only adds at the end, or (follow) swaps the list whole and waits for this, so it may run beside it.
      while (this.segments.length > 1 && this.segments[1]!.firstLsn <= lsn + 1) {
        const old = this.segments.shift()!;
        await unlink(join(this.options.dir, old.name)).catch(() => undefined);
        await unlink(join(this.options.dir, `${old.name}.synced`)).catch(() => undefined);
      }
    });
    this.releasing = run.catch(() => undefined);
    return run;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      this.wake();
      await this.writer; // writes what is pending (unless the log has failed), then ends
      this.stopped = true;
      if (this.file) {
        await this.file.datasync().catch(() => undefined);
        await this.file.close().catch(() => undefined);
        this.file = undefined;
      }
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
    this.stale.push(...this.segments);
    this.segments = []; // release() has nothing left to delete
    const file = this.file;
    this.file = undefined;
    this.size = 0;
    this.unsynced = false; // what it did not sync is dropped with it
    await file?.close().catch(() => undefined);
    try {
      await this.ready();
      request.resolve();
    } catch (err) {
      await this.fail(err as Error);
      request.reject(err as Error);
    }
  }

  /** Deletes the segments follow() dropped, durably, before a segment of the new lineage is named (it may reuse a name). */
  private async dropStale(): Promise<void> {
    await this.releasing; // a release() mid-way may still delete a name of the old ones
    for (const old of this.stale) {
      for (const name of [old.name, `${old.name}.synced`]) {
        await unlink(join(this.options.dir, name)).catch((err: unknown) => { if (!isCode(err, 'ENOENT')) throw err; });
      }
    }
    // Durable before the new segment exists: a crash must not bring old frames back beside it (a retry redoes it all).
    await syncDir(this.options.dir);
    this.stale = [];
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
    if (this.tail) await this.cutTail();
    if (this.unsynced && this.broken) await this.sync();
    if (this.file && this.size >= (this.options.segmentBytes ?? 64 * 1024 * 1024)) {
      await this.file.datasync();
      const file = this.file;
      this.file = undefined;
      await file.close().catch(() => undefined);
    }
    if (this.stale.length > 0) await this.dropStale();
    if (!this.file) await this.startSegment(this.durableLsn + 1);
    if (this.dirUnsynced) await this.syncNewSegment();
    if (this.probeBytes > 0) {
      await this.probe(this.probeBytes);
      this.probeBytes = 0;
    }
  }

  /** Writes the pending group at the end of the segment and tells its waiters; throws, leaving the group in flight, if it cannot. */
  private async writePending(syncIntervalMs: number): Promise<void> {
    const group = this.pending;
    seal(group);
    this.pending = newGroup();
    this.inflight = group;
    const file = this.file!;
    this.tail = true; // until the write (and in strict mode its sync) is whole
    try {
      let done = 0;
      while (done < group.bytes) {
        const rest = done === 0 ? group.buffers : [Buffer.concat(group.buffers).subarray(done)];
        const { bytesWritten } = await file.writev(rest, this.size + done);
        done += bytesWritten;
      }
      if (this.options.sync === 'strict') await file.datasync();
    } catch (err) {
      this.probeBytes = Math.min(Math.max(group.bytes, 4096), PROBE_MAX_BYTES);
      throw err;
    }
    this.size += group.bytes;
    this.tail = false;
    this.durableLsn = group.lastLsn;
    this.inflight = undefined;
    if (this.options.sync === 'strict') await this.mark();
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
    if (this.tail) await this.cutTail().catch(() => undefined); // left for the retry, which comes before anything new
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

  /** Cuts the open segment back to its last durable frame, durably. */
  private async cutTail(): Promise<void> {
    await this.file!.truncate(this.size);
    await this.file!.datasync();
    this.tail = false;
    await this.mark();
  }

  private async sync(): Promise<void> {
    if (!this.file) return;
    this.unsynced = false;
    try {
      await this.file.datasync();
    } catch (err) {
      this.unsynced = true;
      throw err;
    }
    await this.mark();
  }

  /** Checks that the folder's disk takes `bytes` again: writes them to a file of their own, syncs and removes it. */
  private async probe(bytes: number): Promise<void> {
    const path = join(this.options.dir, 'probe.tmp');
    const file = await open(path, 'w');
    try {
      await file.writeFile(Buffer.alloc(bytes)); // all of it: one write() may take less and say so without an error
      await file.datasync();
    } finally {
      await file.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
    }
  }

  /** Test-only (WalOptions.syncMarks): records atomically that the first `bytes` of `segment` (the open one's durable size) are durable. */
  private async mark(segment = this.segments.at(-1)?.name, bytes = this.size): Promise<void> {
    if (!this.options.syncMarks || segment === undefined) return;
    const path = join(this.options.dir, `${segment}.synced`);
    // A mark that cannot be written lags behind: a power-loss test then drops more, never less, than a power loss would.
    await writeFile(`${path}.tmp`, String(bytes)).then(() => rename(`${path}.tmp`, path)).catch(() => undefined);
  }

  /** Opens a new segment whose first frame is `firstLsn` (the open one, if any, is closed first). */
  private async startSegment(firstLsn: number): Promise<void> {
    const name = segmentName(this.lineage, firstLsn);
    if (this.segments.at(-1)?.name === name) {
      // Left by a start that appended nothing (its first frame would have been firstLsn): begin it anew.
      await unlink(join(this.options.dir, name)).catch((err: unknown) => { if (!isCode(err, 'ENOENT')) throw err; });
      this.segments.pop();
    }
    this.file = await open(join(this.options.dir, name), 'wx');
    this.size = 0;
    this.tail = false;
    this.unsynced = false;
    this.segments.push({ name, firstLsn, lineage: this.lineage });
    this.dirUnsynced = true;
  }

  /** Makes the new segment's name durable in the folder. */
  private async syncNewSegment(): Promise<void> {
    await syncDir(this.options.dir);
    this.dirUnsynced = false;
    await this.mark();
  }
}
