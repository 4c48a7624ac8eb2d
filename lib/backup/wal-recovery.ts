/**
 * Recovery of the write-ahead log at start (see wal.ts): the folder's segments are replayed when they continue
 * the store's lineage, or moved aside when they do not; a torn last frame is cut off and kept, and a bad frame
 * with good ones after it is corruption.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Log } from '../log.js';
import { decodeFramePayload, type Change } from './change.js';
import { frameProblem, goodFrameAfter, HEADER_BYTES } from './wal-frames.js';

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

/** A segment file: `<lineage>-<first lsn>.wal`. */
export interface Segment { name: string; firstLsn: number; lineage: string }

const SEGMENT_NAME = /^([0-9a-f]{16})-(\d{16})\.wal$/;

/** The file name of the segment of `lineage` whose first frame is `firstLsn`. */
export const segmentName = (lineage: string, firstLsn: number) => `${lineage}-${String(firstLsn).padStart(16, '0')}.wal`;

/** The segments in `dir`, oldest first. */
export async function listSegments(dir: string): Promise<Segment[]> {
  const segments: Segment[] = [];
  for (const name of await readdir(dir)) {
    const match = SEGMENT_NAME.exec(name);
    if (match) segments.push({ name, lineage: match[1]!, firstLsn: Number(match[2]) });
  }
  return segments.sort((a, b) => a.firstLsn - b.firstLsn);
}

interface Folder { dir: string; cells: number; log: Log }

/**
 * Replays into `apply` every frame after `storeLsn` when `segments` belong to `lineage` (the store's newest
 * commit continues them); otherwise moves them aside unread. Returns the segments kept, the lineage to go on
 * with (a new one when the log was not the store's) and the last lsn. `cutAt` hears of a torn tail cut off.
 * LogCorruptError if a bad frame precedes good ones, or the log starts after the store's end.
 */
export async function recoverSegments(folder: Folder, segments: Segment[], lineage: string | undefined, storeLsn: number, apply: (change: Change) => void, cutAt: (segment: string, bytes: number) => Promise<void>): Promise<{ recovery: Recovery; segments: Segment[]; lineage: string; lastLsn: number }> {
  const recovery: Recovery = { replayed: 0, lastLsn: 0 };
  const ours = lineage !== undefined && segments.length > 0 && segments.every((s) => s.lineage === lineage);
  if (segments.length > 0 && !ours) {
    // A log of another lineage with frames is kept for an operator; one with none holds nothing to keep.
    const sizes = await Promise.all(segments.map(async (s) => (await stat(join(folder.dir, s.name))).size));
    if (sizes.some((size) => size > 0)) recovery.setAside = await setAside(folder, segments);
    else await dropAll(folder.dir, segments);
    return { recovery, segments: [], lineage: randomBytes(8).toString('hex'), lastLsn: 0 };
  }
  if (!ours) return { recovery, segments: [], lineage: randomBytes(8).toString('hex'), lastLsn: 0 };
  if (segments[0]!.firstLsn > storeLsn + 1) {
    throw new LogCorruptError(`the write-ahead log in ${folder.dir} starts at change ${segments[0]!.firstLsn}, but the store holds changes only up to ${storeLsn}: the changes between are missing. Move the folder aside to start from the store alone`);
  }
  let last = storeLsn;
  for (let i = 0; i < segments.length; i++) {
    const scanned = await scan(folder, segments[i]!, i === segments.length - 1, storeLsn, apply, cutAt);
    recovery.replayed += scanned.replayed;
    if (scanned.cut) recovery.cut = scanned.cut;
    if (scanned.lastLsn > 0) recovery.lastLsn = scanned.lastLsn;
    last = Math.max(last, scanned.lastLsn);
  }
  if (storeLsn >= recovery.lastLsn) {
    await dropAll(folder.dir, segments); // the store holds everything: the old segments are history
    return { recovery, segments: [], lineage: lineage!, lastLsn: last };
  }
  return { recovery, segments, lineage: lineage!, lastLsn: last };
}

/** Reads one segment's frames, applying those after `storeLsn`; cuts a torn tail of the last segment. */
async function scan(folder: Folder, segment: Segment, last: boolean, storeLsn: number, apply: (change: Change) => void, cutAt: (segment: string, bytes: number) => Promise<void>): Promise<{ replayed: number; lastLsn: number; cut?: Recovery['cut'] }> {
  const path = join(folder.dir, segment.name);
  const data = await readFile(path);
  let pos = 0;
  let expected = segment.firstLsn;
  let replayed = 0;
  let lastLsn = 0;
  const where = () => `segment ${segment.name} at byte ${pos}`;
  while (pos < data.length) {
    const bad = frameProblem(data, pos, folder.cells);
    if (bad) {
      if (!last) throw new LogCorruptError(`the write-ahead log in ${folder.dir} is corrupt: ${bad} in ${where()}, which is not its last segment`);
      if (goodFrameAfter(data, pos)) throw new LogCorruptError(`the write-ahead log in ${folder.dir} is corrupt: ${bad} in ${where()}, with good frames after it`);
      const keptIn = `${path}.broken`;
      await writeFile(keptIn, data.subarray(pos));
      const handle = await open(path, 'r+');
      try {
        await handle.truncate(pos);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await cutAt(segment.name, pos);
      folder.log.warn('wal_tail_cut', { segment: segment.name, offset: pos, bytes: data.length - pos, keptIn, reason: bad, message: 'a torn last frame (a crash mid-write) was cut off' });
      return { replayed, lastLsn, cut: { segment: segment.name, bytes: data.length - pos, keptIn } };
    }
    const length = data.readUInt32LE(pos);
    const change = decodeFramePayload(data.subarray(pos + HEADER_BYTES, pos + HEADER_BYTES + length), folder.cells);
    if (change.lsn !== expected) throw new LogCorruptError(`the write-ahead log in ${folder.dir} is corrupt: frame ${change.lsn} where ${expected} was due in ${where()}`);
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

async function dropAll(dir: string, segments: Segment[]): Promise<void> {
  for (const segment of segments) {
    await unlink(join(dir, segment.name)).catch(() => undefined);
    await unlink(join(dir, `${segment.name}.synced`)).catch(() => undefined);
  }
}

/** Moves the segments into `aside-<time>/` (never replayed, kept for an operator). */
async function setAside(folder: Folder, segments: Segment[]): Promise<string> {
  const aside = join(folder.dir, `aside-${new Date().toISOString().replace(/[-:.]/g, '')}-${randomBytes(3).toString('hex')}`);
  await mkdir(aside);
  for (const segment of segments) {
    await rename(join(folder.dir, segment.name), join(aside, segment.name));
    await unlink(join(folder.dir, `${segment.name}.synced`)).catch(() => undefined);
  }
  folder.log.warn('wal_set_aside', { dir: aside, segments: segments.length, message: 'the write-ahead log belongs to another lineage (the store holds newer commits by another server): moved aside, not replayed' });
  return aside;
}
