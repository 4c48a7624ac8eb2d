/**
 * The write-ahead log: every change is appended as a checksummed frame before its answer goes out. The
 * changes of one event-loop turn are one write (group commit); in `strict` mode that write is followed by
 * fdatasync before anyone is answered, in `write` mode fdatasync runs at least every second.
 *
 * Layout of the folder: `LOCK` (the pid of the one server using it) and segments named
 * `<lineage>-<first lsn>.wal`. A frame is [payload length u32 LE][CRC-32 of payload u32 LE][payload]
 * (change.ts). At start a torn last frame is cut off (the cut bytes kept in `<segment>.broken`); a bad frame
 * with good ones after it is corruption and start is refused.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { isCode, syncDir } from '../fs-util.js';
import type { Log } from '../log.js';
import { ByteReader, ByteWriter, CHANGES_A_TURN, decodeFramePayload, FormatError, writeFramePayload, type Change, type Run } from './change.js';
import type { ChangeLog, LogCursor, UnshippedChanges } from './change-log.js';

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
  /** After a failed write, the wait before writing it again. */
  retryMs?: number;
  /** Test seam for power-loss tests: after each fdatasync, `<segment>.synced` records the bytes it made durable. */
  syncMarks?: boolean;
  /** Test seam: while it returns an error, writes fail with it (disk full, EIO) before touching the file. */
  writeFault?: () => Error | undefined;
}

/** Another live process (or another app in this one) holds the log's lock. */
export class LogLockedError extends Error {
  override name = 'LogLockedError';
}

/** The log holds a bad frame with good ones after it: it cannot be replayed safely. */
export class LogCorruptError extends Error {
  override name = 'LogCorruptError';
}

/** What recovery found and did. */
export interface Recovery {
  /** Frames applied (those after the store's lsn). */
  replayed: number;
  /** The newest lsn the log held. */
  lastLsn: number;
  /** A torn tail was cut: where it was kept. */
  cut?: { segment: string; bytes: number; keptIn: string };
  /** The log belonged to another lineage and was moved aside here. */
  setAside?: string;
}

interface Segment { name: string; firstLsn: number; lineage: string }
/** Frames waiting for one write: `buffers`, then the frames appended into `out` since (sealed into `buffers` when written). */
interface Group { buffers: Buffer[]; out: ByteWriter | undefined; bytes: number; lastLsn: number; waiters: Array<(err?: Error) => void> }
interface Cursor { segment: string; offset: number }

const SEGMENT_NAME = /^([0-9a-f]{16})-(\d{16})\.wal$/;
const HEADER_BYTES = 8;
/** Reads for shipping take at most this much of a segment at once. */
const READ_CHUNK_BYTES = 16 * 1024 * 1024;

const newGroup = (): Group => ({ buffers: [], out: undefined, bytes: 0, lastLsn: 0, waiters: [] });
/** Bytes a group's writer starts with: a few dozen single-cell frames before it grows. */
const GROUP_START_BYTES = 4096;

/** Moves the frames in `group.out` to the end of `group.buffers`. */
function seal(group: Group): void {
  if (group.out === undefined) return;
  group.buffers.push(group.out.view());
  group.out = undefined;
}
const segmentName = (lineage: string, firstLsn: number) => `${lineage}-${String(firstLsn).padStart(16, '0')}.wal`;

/** A write-ahead log in one folder, owned by one server at a time. Open, then recover() once, then append. */
export class WriteAheadLog implements ChangeLog {
  failure: Error | undefined;
  lastLsn = 0;
  lineage = '';
  private segments: Segment[] = [];
  private file: FileHandle | undefined;
  private size = 0;
  private unsynced = false;
  private pending = newGroup();
  private inflight: Group | undefined;
  private flushQueued = false;
  private io: Promise<unknown> = Promise.resolve();
  private syncTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly lockPath: string;
  private readonly token = randomBytes(8).toString('hex');

  private constructor(private readonly options: WalOptions) {
    this.lockPath = join(options.dir, 'LOCK');
  }

  /** Creates the folder if needed and takes its lock; LogLockedError if a live server holds it, the file system's error if it cannot be written. */
  static async open(options: WalOptions): Promise<WriteAheadLog> {
    const wal = new WriteAheadLog(options);
    await mkdir(options.dir, { recursive: true });
    await wal.lock();
    try {
      wal.segments = await wal.listSegments();
    } catch (err) {
      await wal.unlock();
      throw err;
    }
    return wal;
  }

  /** The lineage of the segments already in the folder, if any. */
  get storedLineage(): string | undefined {
    return this.segments.at(-1)?.lineage;
  }

  /**
   * Replays into `apply` every frame after `storeLsn` when the folder's segments belong to `lineage` (the
   * store's newest commit continues them); otherwise moves them aside unread. Then opens a new segment for
   * appends, continuing the lineage (or starting a new one). LogCorruptError if a bad frame precedes good ones.
   */
  async recover(lineage: string | undefined, storeLsn: number, apply: (change: Change) => void): Promise<Recovery> {
    const recovery: Recovery = { replayed: 0, lastLsn: 0 };
    const ours = lineage !== undefined && this.segments.length > 0 && this.segments.every((s) => s.lineage === lineage);
    if (this.segments.length > 0 && !ours) {
      // A log of another lineage with frames is kept for an operator; one with none holds nothing to keep.
      const sizes = await Promise.all(this.segments.map(async (s) => (await stat(join(this.options.dir, s.name))).size));
      if (sizes.some((size) => size > 0)) recovery.setAside = await this.setAside();
      else await this.dropAll();
    }
    let last = storeLsn;
    if (ours && this.segments[0]!.firstLsn > storeLsn + 1) {
      throw new LogCorruptError(`the write-ahead log in ${this.options.dir} starts at change ${this.segments[0]!.firstLsn}, but the store holds changes only up to ${storeLsn}: the changes between are missing. Move the folder aside to start from the store alone`);
    }
    if (ours) {
      for (let i = 0; i < this.segments.length; i++) {
        const segment = this.segments[i]!;
        const scanned = await this.scan(segment, i === this.segments.length - 1, storeLsn, apply);
        recovery.replayed += scanned.replayed;
        if (scanned.cut) recovery.cut = scanned.cut;
        if (scanned.lastLsn > 0) recovery.lastLsn = scanned.lastLsn;
        last = Math.max(last, scanned.lastLsn);
      }
      this.lineage = lineage!;
      if (storeLsn >= recovery.lastLsn) await this.dropAll(); // the store holds everything: the old segments are history
    } else {
      this.lineage = randomBytes(8).toString('hex');
      last = 0;
    }
    this.lastLsn = last;
    await this.startSegment(last + 1);
    if (this.options.sync === 'write') {
      this.syncTimer = setInterval(() => { if (this.unsynced) void this.serial(() => this.sync()).catch(() => undefined); }, this.options.syncIntervalMs ?? 1000);
      this.syncTimer.unref();
    }
    return recovery;
  }

  append(at: number, by: string, runs: Run[]): Change {
    const change: Change = { lsn: this.lastLsn + 1, at, by, runs };
    // Encoded in place at the end of the group's buffer: no buffer of its own per frame.
    const group = this.pending;
    const out = (group.out ??= new ByteWriter(GROUP_START_BYTES));
    const start = out.reserve(HEADER_BYTES); // filled in once the payload's length and checksum are known
    writeFramePayload(out, change);
    const length = out.length - start - HEADER_BYTES;
    out.u32At(start, length);
    out.u32At(start + 4, crc32(out.view(start + HEADER_BYTES)));
    this.lastLsn = change.lsn;
    group.bytes += HEADER_BYTES + length;
    group.lastLsn = change.lsn;
    this.scheduleFlush();
    return change;
  }

  afterWrite(done: (err?: Error) => void): void {
    if (this.failure) done(this.failure);
    else if (this.pending.bytes > 0) this.pending.waiters.push(done);
    else if (this.inflight) this.inflight.waiters.push(done);
    else done();
  }

  async unshipped(cursor: LogCursor | undefined, floor: number, maxBytes: number): Promise<UnshippedChanges> {
    // The segments as they are now: while this reads (and yields), writes may fill the open one and rotate to a
    // new one, and release() may drop old ones. The read ends with the segment open now, at its size now; a
    // later read goes on from there (going on into a newer segment would skip the open one's rest).
    const segments = this.segments.slice();
    const openSegment = segments.at(-1)?.name;
    const openSize = this.size; // nothing past this is whole yet
    const from = cursor as Cursor | undefined;
    let index = from ? segments.findIndex((s) => s.name === from.segment) : 0;
    let offset = from && index >= 0 ? from.offset : 0;
    if (index < 0) index = 0; // the cursor's segment was released: everything in it is in the store
    const changes: Change[] = [];
    let budget = maxBytes;
    for (; index < segments.length; index++, offset = 0) {
      const segment = segments[index]!;
      const path = join(this.options.dir, segment.name);
      const read = await readFrames(path, offset, segment.name === openSegment ? openSize : undefined, budget, floor);
      for (let i = 0; i < read.payloads.length; i++) {
        if (i > 0 && i % CHANGES_A_TURN === 0) await yieldToEventLoop(); // a second of writes is thousands of frames
        changes.push(decodeFramePayload(read.payloads[i]!, this.options.cells)); // readFrames left out those at or below floor
      }
      budget -= read.bytes;
      const next: Cursor = { segment: segment.name, offset: read.end };
      if (read.more || segment.name === openSegment) return { changes, next, gap: false, more: read.more };
    }
    return { changes, next: cursor, gap: false, more: false };
  }

  release(lsn: number): Promise<void> {
    return this.serial(async () => {
      // A segment is covered when the next one starts at or before lsn + 1; the open one is never deleted.
      while (this.segments.length > 1 && this.segments[1]!.firstLsn <= lsn + 1) {
        const old = this.segments.shift()!;
        await unlink(join(this.options.dir, old.name)).catch(() => undefined);
        await unlink(join(this.options.dir, `${old.name}.synced`)).catch(() => undefined);
      }
    });
  }

  close(): Promise<void> {
    if (this.closed) return this.io.then(() => undefined);
    this.closed = true;
    clearInterval(this.syncTimer);
    clearTimeout(this.retryTimer);
    return this.serial(async () => {
      if (this.file) {
        if (!this.failure) await this.writePending().catch(() => undefined);
        await this.file.datasync().catch(() => undefined);
        await this.file.close().catch(() => undefined);
        this.file = undefined;
      }
      await this.unlock();
    });
  }

  /** Runs file work one task at a time, in order: writes, syncs, rotation, release and close never overlap. */
  private serial<T>(task: () => Promise<T>): Promise<T> {
    const result = this.io.then(task);
    this.io = result.catch(() => undefined);
    return result;
  }

  private scheduleFlush(): void {
    if (this.flushQueued || this.closed) return;
    this.flushQueued = true;
    // setImmediate runs after every I/O callback of this turn: all their changes go in one write.
    setImmediate(() => {
      this.flushQueued = false;
      void this.serial(() => this.writePending()).catch(() => undefined);
    });
  }

  /** Writes the pending group at the end of the segment; on failure keeps it to write again and fails its waiters. */
  private async writePending(): Promise<void> {
    if (this.pending.bytes === 0 || !this.file) return;
    const group = this.pending;
    seal(group);
    this.pending = newGroup();
    this.inflight = group;
    try {
      const fault = this.options.writeFault?.();
      if (fault) throw fault;
      let done = 0;
      while (done < group.bytes) {
        const rest = done === 0 ? group.buffers : [Buffer.concat(group.buffers).subarray(done)];
        const { bytesWritten } = await this.file.writev(rest, this.size + done);
        done += bytesWritten;
      }
      this.size += group.bytes;
      this.unsynced = true;
      if (this.options.sync === 'strict') await this.sync();
      if (this.failure) this.options.log.info('wal_recovered', { message: 'the write-ahead log is written again' });
      this.failure = undefined;
      this.inflight = undefined;
      for (const done of group.waiters) done();
    } catch (err) {
      this.inflight = undefined;
      if (!this.failure) this.options.log.error('wal_write_failed', { err, message: 'the write-ahead log cannot be written: writes are refused (503) until it can' });
      this.failure = err as Error;
      // Written again, at the same offset, before anything newer; those who waited are told it failed.
      const waiters = group.waiters;
      group.waiters = [];
      seal(this.pending);
      this.pending = { buffers: [...group.buffers, ...this.pending.buffers], out: undefined, bytes: group.bytes + this.pending.bytes, lastLsn: Math.max(group.lastLsn, this.pending.lastLsn), waiters: this.pending.waiters };
      for (const done of waiters) done(err as Error);
      if (!this.closed) {
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => void this.serial(() => this.writePending()).catch(() => undefined), this.options.retryMs ?? 1000);
      }
      return;
    }
    if (this.size >= (this.options.segmentBytes ?? 64 * 1024 * 1024)) await this.startSegment(group.lastLsn + 1);
    if (this.pending.bytes > 0) this.scheduleFlush();
  }

  private async sync(): Promise<void> {
    if (!this.file) return;
    this.unsynced = false;
    await this.file.datasync();
    if (this.options.syncMarks) await this.mark(this.segments.at(-1)!.name, this.size);
  }

  /** Test seam (see WalOptions.syncMarks): records atomically that `bytes` of `segment` are durable. */
  private async mark(segment: string, bytes: number): Promise<void> {
    const path = join(this.options.dir, `${segment}.synced`);
    await writeFile(`${path}.tmp`, String(bytes));
    await rename(`${path}.tmp`, path);
  }

  /** Closes the open segment (synced) and starts a new one whose first frame is `firstLsn`. */
  private async startSegment(firstLsn: number): Promise<void> {
    if (this.file) {
      await this.file.datasync();
      await this.file.close();
      this.file = undefined;
    }
    const name = segmentName(this.lineage, firstLsn);
    if (this.segments.at(-1)?.name === name) {
      // Left by a start that appended nothing (its first frame would have been firstLsn): begin it anew.
      await unlink(join(this.options.dir, name));
      this.segments.pop();
    }
    this.file = await open(join(this.options.dir, name), 'wx');
    this.size = 0;
    this.segments.push({ name, firstLsn, lineage: this.lineage });
    await syncDir(this.options.dir);
    if (this.options.syncMarks) await this.mark(name, 0);
  }

  /** Reads one segment's frames, applying those after `storeLsn`; cuts a torn tail of the last segment. */
  private async scan(segment: Segment, last: boolean, storeLsn: number, apply: (change: Change) => void): Promise<{ replayed: number; lastLsn: number; cut?: Recovery['cut'] }> {
    const path = join(this.options.dir, segment.name);
    const data = await readFile(path);
    let pos = 0;
    let expected = segment.firstLsn;
    let replayed = 0;
    let lastLsn = 0;
    const where = () => `segment ${segment.name} at byte ${pos}`;
    while (pos < data.length) {
      const bad = frameProblem(data, pos, this.options.cells);
      if (bad) {
        if (!last) throw new LogCorruptError(`the write-ahead log in ${this.options.dir} is corrupt: ${bad} in ${where()}, which is not its last segment`);
        if (goodFrameAfter(data, pos)) throw new LogCorruptError(`the write-ahead log in ${this.options.dir} is corrupt: ${bad} in ${where()}, with good frames after it`);
        const keptIn = `${path}.broken`;
        await writeFile(keptIn, data.subarray(pos));
        const handle = await open(path, 'r+');
        try {
          await handle.truncate(pos);
          await handle.datasync();
        } finally {
          await handle.close();
        }
        if (this.options.syncMarks) await this.mark(segment.name, pos);
        this.options.log.warn('wal_tail_cut', { segment: segment.name, offset: pos, bytes: data.length - pos, keptIn, reason: bad, message: 'a torn last frame (a crash mid-write) was cut off' });
        return { replayed, lastLsn, cut: { segment: segment.name, bytes: data.length - pos, keptIn } };
      }
      const length = data.readUInt32LE(pos);
      const change = decodeFramePayload(data.subarray(pos + HEADER_BYTES, pos + HEADER_BYTES + length), this.options.cells);
      if (change.lsn !== expected) throw new LogCorruptError(`the write-ahead log in ${this.options.dir} is corrupt: frame ${change.lsn} where ${expected} was due in ${where()}`);
      if (change.lsn > storeLsn) {
        apply(change);
        replayed++;
      }
      lastLsn = change.lsn;
      expected++;
      pos += HEADER_BYTES + length;
    }
    return { replayed, lastLsn };
  }

  private async dropAll(): Promise<void> {
    for (const segment of this.segments) {
      await unlink(join(this.options.dir, segment.name)).catch(() => undefined);
      await unlink(join(this.options.dir, `${segment.name}.synced`)).catch(() => undefined);
    }
    this.segments = [];
  }

  /** Moves the segments into `aside-<time>/` (never replayed, kept for an operator). */
  private async setAside(): Promise<string> {
    const aside = join(this.options.dir, `aside-${new Date().toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`);
    await mkdir(aside);
    for (const segment of this.segments) {
      await rename(join(this.options.dir, segment.name), join(aside, segment.name));
      await unlink(join(this.options.dir, `${segment.name}.synced`)).catch(() => undefined);
    }
    this.options.log.warn('wal_set_aside', { dir: aside, segments: this.segments.length, message: 'the write-ahead log belongs to another lineage (the store holds newer commits by another server): moved aside, not replayed' });
    this.segments = [];
    return aside;
  }

  private async listSegments(): Promise<Segment[]> {
    const segments: Segment[] = [];
    for (const name of await readdir(this.options.dir)) {
      const match = SEGMENT_NAME.exec(name);
      if (match) segments.push({ name, lineage: match[1]!, firstLsn: Number(match[2]) });
    }
    return segments.sort((a, b) => a.firstLsn - b.firstLsn);
  }

  private async lock(): Promise<void> {
    const body = `${process.pid} ${this.token}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await writeFile(this.lockPath, body, { flag: 'wx' });
        await syncDir(this.options.dir);
        return;
      } catch (err) {
        if (!isCode(err, 'EEXIST')) throw err;
      }
      const [pid] = (await readFile(this.lockPath, 'utf8').catch(() => '')).split(' ');
      if (pid && /^\d+$/.test(pid) && isAlive(Number(pid))) {
        throw new LogLockedError(`the write-ahead log ${this.options.dir} is in use by process ${pid} (its LOCK file): two servers must not share one WAL_DIR`);
      }
      await rm(this.lockPath, { force: true }); // left by a process that is gone (a crash)
    }
    throw new LogLockedError(`cannot take the lock of the write-ahead log ${this.options.dir}`);
  }

  private async unlock(): Promise<void> {
    const held = await readFile(this.lockPath, 'utf8').catch(() => '');
    if (held.includes(this.token)) await rm(this.lockPath, { force: true });
  }
}

/**
 * Whole frames' payloads of the file at `path` from `offset` (up to `limit`, or its end), stopping before the
 * frame that would take the payloads past `budget` bytes (a first frame over budget is not read: `more`).
 * Frames of lsn `floor` or below (the store has them) are stepped over unread and count for nothing: a change
 * too big for the budget that a snapshot has since covered must not stop every later read.
 */
async function readFrames(path: string, offset: number, limit: number | undefined, budget: number, floor: number): Promise<{ payloads: Buffer[]; bytes: number; end: number; more: boolean }> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (isCode(err, 'ENOENT')) return { payloads: [], bytes: 0, end: offset, more: false }; // released meanwhile
    throw err;
  }
  try {
    const size = Math.min(limit ?? Infinity, (await handle.stat()).size);
    const payloads: Buffer[] = [];
    let bytes = 0;
    while (offset + HEADER_BYTES <= size) {
      const head = Buffer.alloc(HEADER_BYTES + LSN_PEEK_BYTES);
      const { bytesRead } = await handle.read(head, 0, head.length, offset);
      const first = head.readUInt32LE(0);
      if (bytes + first > budget) {
        if (offset + HEADER_BYTES + first <= size && frameLsn(head.subarray(HEADER_BYTES, bytesRead)) <= floor) {
          offset += HEADER_BYTES + first;
          continue;
        }
        return { payloads, bytes, end: offset, more: true };
      }
      const chunk = Buffer.allocUnsafe(Math.min(size - offset, Math.max(HEADER_BYTES + first, READ_CHUNK_BYTES)));
      await handle.read(chunk, 0, chunk.length, offset);
      let pos = 0;
      while (pos + HEADER_BYTES <= chunk.length) {
        const length = chunk.readUInt32LE(pos);
        if (pos + HEADER_BYTES + length > chunk.length) break;
        const payload = chunk.subarray(pos + HEADER_BYTES, pos + HEADER_BYTES + length);
        if (frameLsn(payload) > floor) {
          if (bytes + length > budget) return { payloads, bytes, end: offset + pos, more: true };
          payloads.push(payload);
          bytes += length;
        }
        pos += HEADER_BYTES + length;
      }
      offset += pos;
    }
    return { payloads, bytes, end: offset, more: false };
  } finally {
    await handle.close();
  }
}

/** Enough of a payload's start for its version byte and lsn varint. */
const LSN_PEEK_BYTES = 9;

/** The lsn of a frame payload from its first bytes (see writeFramePayload); Infinity when they do not say, so the frame is read and judged whole. */
function frameLsn(start: Uint8Array): number {
  const input = new ByteReader(start);
  try {
    return input.u8() === 1 ? input.varint() : Infinity;
  } catch (err) {
    if (err instanceof FormatError) return Infinity;
    throw err;
  }
}

/** Why the frame at `pos` cannot be read, or undefined when it is whole and its checksum holds. */
function frameProblem(data: Buffer, pos: number, cells: number): string | undefined {
  if (data.length - pos < HEADER_BYTES) return 'a partial frame header';
  const length = data.readUInt32LE(pos);
  if (length === 0) return 'a zero-filled tail';
  if (pos + HEADER_BYTES + length > data.length) return 'a frame longer than the rest of the file';
  const payload = data.subarray(pos + HEADER_BYTES, pos + HEADER_BYTES + length);
  if (crc32(payload) !== data.readUInt32LE(pos + 4)) return 'a checksum mismatch';
  try {
    decodeFramePayload(payload, cells);
  } catch (err) {
    if (err instanceof FormatError) return `an undecodable frame (${err.message})`;
    throw err;
  }
  return undefined;
}

/** True when any whole frame with a good checksum starts after `pos`: then the bad frame at `pos` is not a torn tail. */
function goodFrameAfter(data: Buffer, pos: number): boolean {
  for (let at = pos + 1; at + HEADER_BYTES < data.length; at++) {
    const length = data.readUInt32LE(at);
    if (length === 0 || at + HEADER_BYTES + length > data.length) continue;
    if (crc32(data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length)) === data.readUInt32LE(at + 4)) return true;
  }
  return false;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isCode(err, 'EPERM');
  }
}
