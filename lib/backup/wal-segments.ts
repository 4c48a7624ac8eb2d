/**
 * The segment files of a write-ahead log's folder (see wal.ts): which segments there are, the open one and how
 * much of it holds whole durable frames, and every operation on their files. It decides nothing: the log's
 * writer says when to start, write, sync, cut back, rotate or delete, one step at a time, so that a step that
 * fails leaves the rest for its retry.
 *
 * Files: segments `<lineage>-<first lsn>.wal` (named and listed by wal-recovery.ts); with syncMarks, beside
 * each, `<segment>.synced`; for a moment after a failed write, `probe.tmp` (does the disk take writes again?).
 */
import { open, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { isCode, syncDir } from '../fs-util.js';
import { FrameBatch } from './change-batch.js';
import type { LogCursor, UnshippedChanges } from './change-log.js';
import { readFrames } from './wal-frames.js';
import { segmentName, type Segment } from './wal-recovery.js';

/** The folder and how its segments are kept (from WalOptions). */
export interface SegmentFolder {
  dir: string;
  /** Cells in the world: frames naming cells beyond it are corrupt. */
  cells: number;
  /** A segment is full once it holds this many bytes. */
  segmentBytes: number;
  /** Test-only (WalOptions.syncMarks): `<segment>.synced` records the bytes each sync made durable. */
  syncMarks: boolean;
}

interface Cursor { segment: string; offset: number }

/**
 * The segments of one folder and the open one's file. The calls that change files run one at a time (the
 * log's writer); read() and release() may run beside them.
 */
export class SegmentFiles {
  /** Oldest first; the last is the open one once start() has run. start() adds only at the end and retire() swaps it whole, so release() may take from the front meanwhile. */
  private list: Segment[] = [];
  /** Segments retire() dropped that are not deleted yet (dropStale() deletes them before a segment is started). */
  private stale: Segment[] = [];
  /** The deletions of release(), one after another: dropStale() waits for them before it deletes, and a segment is named anew. */
  private releasing: Promise<void> = Promise.resolve();
  private file: FileHandle | undefined;
  /** Bytes of the open segment that hold whole durable frames: what cutTail() cuts the file back to. */
  private size = 0;
  /** True while bytes past `size` may be in the file (a write, or its sync, has not finished well). */
  private torn = false;
  /** The newest segment's name is not yet durable in the folder. */
  private nameUnsynced = false;

  constructor(private readonly folder: SegmentFolder) {}

  /** The folder's segments, oldest first (the last is the open one once start() has run). */
  get segments(): readonly Segment[] {
    return this.list;
  }

  /** True while a segment is open for writes. */
  get isOpen(): boolean {
    return this.file !== undefined;
  }

  /** True while the open segment may hold bytes past its last durable frame: cutTail() must run before the next write. */
  get tail(): boolean {
    return this.torn;
  }

  /** True when the open segment holds `segmentBytes` or more: rotate() it. */
  get full(): boolean {
    return this.file !== undefined && this.size >= this.folder.segmentBytes;
  }

  /** True while segments that retire() dropped are still on disk: dropStale() must run before start(). */
  get hasStale(): boolean {
    return this.stale.length > 0;
  }

  /** True after start() until syncName() has made the new segment's name durable. */
  get nameDirty(): boolean {
    return this.nameUnsynced;
  }

  /** Takes `segments` (listed or kept by recovery, none open) as the folder's segments. */
  adopt(segments: Segment[]): void {
    this.list = segments;
  }

  /** Opens a new empty segment of `lineage` whose first frame is `firstLsn`; the file system's error if it cannot. Call syncName() next. */
  async start(lineage: string, firstLsn: number): Promise<void> {
    const name = segmentName(lineage, firstLsn);
    if (this.list.at(-1)?.name === name) {
      // Left by a start that appended nothing (its first frame would have been firstLsn): begin it anew.
      await unlink(join(this.folder.dir, name)).catch((err: unknown) => { if (!isCode(err, 'ENOENT')) throw err; });
      this.list.pop();
    }
    this.file = await open(join(this.folder.dir, name), 'wx');
    this.size = 0;
    this.torn = false;
    this.list.push({ name, firstLsn, lineage });
    this.nameUnsynced = true;
  }

  /** Makes the newest segment's name durable in the folder (a crash then keeps the file), then marks it. */
  async syncName(): Promise<void> {
    await syncDir(this.folder.dir);
    this.nameUnsynced = false;
    await this.mark();
  }

  /**
   * Writes `buffers` (`bytes` in all) at the open segment's durable size, fdatasyncs them when `datasync`, and
   * counts them durable. Throws the file system's error, leaving a tail (cutTail() removes it).
   */
  async write(buffers: Buffer[], bytes: number, datasync: boolean): Promise<void> {
    const file = this.file!;
    this.torn = true; // until the write (and its sync, if asked) is whole
    let done = 0;
    while (done < bytes) {
      // One write() may take less than asked and say so without an error: the rest goes again.
      const rest = done === 0 ? buffers : [Buffer.concat(buffers).subarray(done)];
      const { bytesWritten } = await file.writev(rest, this.size + done);
      done += bytesWritten;
    }
    if (datasync) await file.datasync();
    this.size += bytes;
    this.torn = false;
  }

  /** fdatasyncs the open segment, then marks it; throws the file system's error. */
  async sync(): Promise<void> {
    await this.file!.datasync();
    await this.mark();
  }

  /** Cuts the open segment back to its last durable frame, durably, then marks it. */
  async cutTail(): Promise<void> {
    await this.file!.truncate(this.size);
    await this.file!.datasync();
    this.torn = false;
    await this.mark();
  }

  /** Syncs and closes the open segment (it is full); the next start() begins its successor. Throws, leaving it open, if the sync fails. */
  async rotate(): Promise<void> {
    await this.file!.datasync();
    const file = this.file!;
    this.file = undefined;
    await file.close().catch(() => undefined);
  }

  /** Drops every segment from the list (read() and release() see none from now on) and closes the open one: dropStale() deletes them. */
  async retire(): Promise<void> {
    this.stale.push(...this.list);
    this.list = []; // release() has nothing left to delete
    const file = this.file;
    this.file = undefined;
    this.size = 0;
    await file?.close().catch(() => undefined);
  }

  /** Deletes the segments retire() dropped, durably, before a segment of the new lineage is named (it may reuse a name). */
  async dropStale(): Promise<void> {
    await this.releasing; // a release() mid-way may still delete a name of the old ones
    for (const old of this.stale) {
      for (const name of [old.name, `${old.name}.synced`]) {
        await unlink(join(this.folder.dir, name)).catch((err: unknown) => { if (!isCode(err, 'ENOENT')) throw err; });
      }
    }
    // Durable before the new segment exists: a crash must not bring old frames back beside it (a retry redoes it all).
    await syncDir(this.folder.dir);
    this.stale = [];
  }

  /** Deletes every segment whose frames are all at or below `lsn` (the next one starts at or before lsn + 1), never the newest. */
  release(lsn: number): Promise<void> {
    const run = this.releasing.then(async () => {
      while (this.list.length > 1 && this.list[1]!.firstLsn <= lsn + 1) {
        const old = this.list.shift()!;
        await unlink(join(this.folder.dir, old.name)).catch(() => undefined);
        await unlink(join(this.folder.dir, `${old.name}.synced`)).catch(() => undefined);
      }
    });
    this.releasing = run.catch(() => undefined);
    return run;
  }

  /** The changes after `floor` from `cursor` on (undefined: the oldest segment), about `maxBytes` at most, never past the open segment's durable size (ChangeLog.unshipped). */
  async read(cursor: LogCursor | undefined, floor: number, maxBytes: number): Promise<UnshippedChanges> {
    // The segments as they are now: while this reads (and yields), writes may fill the open one and rotate to a
    // new one, and release() may drop old ones. The read ends with the segment open now, at its durable size
    // now; a later read goes on from there (going on into a newer segment would skip the open one's rest).
    const segments = this.list.slice();
    const openSegment = segments.at(-1)?.name;
    const openSize = this.size; // nothing past this is whole and durable yet
    const from = cursor as Cursor | undefined;
    let index = from ? segments.findIndex((s) => s.name === from.segment) : 0;
    let offset = from && index >= 0 ? from.offset : 0;
    if (index < 0) index = 0; // the cursor's segment was released: everything in it is in the store
    const changes = new FrameBatch(this.folder.cells);
    let budget = maxBytes;
    for (; index < segments.length; index++, offset = 0) {
      const segment = segments[index]!;
      const path = join(this.folder.dir, segment.name);
      // readFrames leaves out those at or below floor; the changes stay frames until the shipper transcodes them.
      const read = await readFrames(path, offset, segment.name === openSegment ? openSize : undefined, budget, floor, changes);
      budget -= read.bytes;
      const next: Cursor = { segment: segment.name, offset: read.end };
      if (read.more || segment.name === openSegment) return { changes, next, gap: false, more: read.more };
    }
    return { changes, next: cursor, gap: false, more: false };
  }

  /** Checks that the folder's disk takes `bytes` again: writes them to a file of their own, syncs and removes it. */
  async probe(bytes: number): Promise<void> {
    const path = join(this.folder.dir, 'probe.tmp');
    const file = await open(path, 'w');
    try {
      await file.writeFile(Buffer.alloc(bytes)); // all of it: one write() may take less and say so without an error
      await file.datasync();
    } finally {
      await file.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
    }
  }

  /** Test-only (syncMarks): records atomically that the first `bytes` of `segment` (the open one's durable size) are durable. Never throws. */
  async mark(segment = this.list.at(-1)?.name, bytes = this.size): Promise<void> {
    if (!this.folder.syncMarks || segment === undefined) return;
    const path = join(this.folder.dir, `${segment}.synced`);
    // A mark that cannot be written lags behind: a power-loss test then drops more, never less, than a power loss would.
    await writeFile(`${path}.tmp`, String(bytes)).then(() => rename(`${path}.tmp`, path)).catch(() => undefined);
  }

  /** Syncs and closes the open segment, if any; never throws. */
  async close(): Promise<void> {
    if (!this.file) return;
    await this.file.datasync().catch(() => undefined);
    await this.file.close().catch(() => undefined);
    this.file = undefined;
  }
}
