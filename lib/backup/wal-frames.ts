/**
 * The write-ahead log's frames: the one encoder (the log and the replication stream send the same bytes), read
 * back whole for shipping, and the checks recovery makes of a segment (see wal.ts).
 */
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { isCode } from '../fs-util.js';
import type { FrameBatch } from './change-batch.js';
import { ByteReader, decodeFramePayload, FormatError, writeFramePayload, type ByteWriter, type Change } from './change.js';

/** A frame's header: payload length, then the payload's CRC-32, both u32 LE. */
export const HEADER_BYTES = 8;
/** Appends `change` to `out` as one frame, encoded in place (no buffer of its own); returns the frame's bytes. */
export function writeFrame(out: ByteWriter, change: Change): number {
  const start = out.reserve(HEADER_BYTES); // filled in once the payload's length and checksum are known
  writeFramePayload(out, change);
  const length = out.length - start - HEADER_BYTES;
  out.u32At(start, length);
  out.u32At(start + 4, crc32(out.view(start + HEADER_BYTES)));
  return HEADER_BYTES + length;
}

/** Reads for shipping take at most this much of a segment at once. */
const READ_CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * Adds to `into` whole frames' payloads of the file at `path` from `offset` (up to `limit`, or its end), stopping before the
 * frame that would take the payloads past `budget` bytes (a first frame over budget is not read: `more`).
 * Frames of lsn `floor` or below (the store has them) are stepped over unread and count for nothing: a change
 * too big for the budget that a snapshot has since covered must not stop every later read.
 */
export async function readFrames(path: string, offset: number, limit: number | undefined, budget: number, floor: number, into: FrameBatch): Promise<{ bytes: number; end: number; more: boolean }> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (isCode(err, 'ENOENT')) return { bytes: 0, end: offset, more: false }; // released meanwhile
    throw err;
  }
  try {
    const size = Math.min(limit ?? Infinity, (await handle.stat()).size);
    let bytes = 0;
    while (offset + HEADER_BYTES <= size) {
      const head = Buffer.alloc(HEADER_BYTES + LSN_PEEK_BYTES);
      const { bytesRead } = await handle.read(head, 0, head.length, offset);
      const first = head.readUInt32LE(0);
      if (bytes + first > budget) {
        if (offset + HEADER_BYTES + first <= size && frameLsn(new ByteReader(head), HEADER_BYTES, bytesRead) <= floor) {
          offset += HEADER_BYTES + first;
          continue;
        }
        return { bytes, end: offset, more: true };
      }
      const chunk = Buffer.allocUnsafe(Math.min(size - offset, Math.max(HEADER_BYTES + first, READ_CHUNK_BYTES)));
      await handle.read(chunk, 0, chunk.length, offset);
      const reader = new ByteReader(chunk);
      let pos = 0;
      while (pos + HEADER_BYTES <= chunk.length) {
        const length = chunk.readUInt32LE(pos);
        if (pos + HEADER_BYTES + length > chunk.length) break;
        if (frameLsn(reader, pos + HEADER_BYTES, pos + HEADER_BYTES + length) > floor) {
          if (bytes + length > budget) return { bytes, end: offset + pos, more: true };
          into.add(chunk, pos + HEADER_BYTES, pos + HEADER_BYTES + length);
          bytes += length;
        }
        pos += HEADER_BYTES + length;
      }
      offset += pos;
    }
    return { bytes, end: offset, more: false };
  } finally {
    await handle.close();
  }
}

/** Enough of a payload's start for its version byte and lsn varint. */
const LSN_PEEK_BYTES = 9;

/**
 * The lsn of the frame payload at `[start, end)` of `input`'s bytes, from its first bytes (see
 * writeFramePayload); Infinity when they do not say, so the frame is read and judged whole. One reader serves
 * a whole chunk, placed at each payload in turn: nothing is made for each frame.
 */
function frameLsn(input: ByteReader, start: number, end: number): number {
  input.at = start;
  try {
    const lsn = input.u8() === 1 ? input.varint() : Infinity;
    return input.at <= end ? lsn : Infinity;
  } catch (err) {
    if (err instanceof FormatError) return Infinity;
    throw err;
  }
}

/** Why the frame at `pos` cannot be read, or undefined when it is whole and its checksum holds. */
export function frameProblem(data: Buffer, pos: number, cells: number): string | undefined {
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
export function goodFrameAfter(data: Buffer, pos: number): boolean {
  for (let at = pos + 1; at + HEADER_BYTES < data.length; at++) {
    const length = data.readUInt32LE(at);
    if (length === 0 || at + HEADER_BYTES + length > data.length) continue;
    if (crc32(data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length)) === data.readUInt32LE(at + 4)) return true;
  }
  return false;
}
