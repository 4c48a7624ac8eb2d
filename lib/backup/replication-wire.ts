/**
 * The bytes of the replication stream (a leader to its standby, over an upgraded HTTP connection). Leader to
 * standby: change frames exactly as the write-ahead log writes them (wal-frames.ts writeFrame: [payload length
 * u32 LE][CRC-32 of payload u32 LE][payload]), and HANDOVER, whose length field no frame can have. Standby to
 * leader: acks, ASCII lines `<lsn>\n` (its log holds every change up to lsn, and its world shows it).
 */
import { crc32 } from 'node:zlib';
import { CELL_BYTES } from '../cube.js';
import { ByteWriter, changeBytes, decodeFramePayload, FormatError, type Change } from './change.js';
import { HEADER_BYTES, writeFrame } from './wal-frames.js';

/** The length field of HANDOVER: above any frame's bound (maxFramePayload), so it cannot be misread as one. */
const HANDOVER_LENGTH = 0xffffffff;

/** "The lease is released to you: take it now": [u32 0xFFFFFFFF][u32 0]. */
export const HANDOVER: Buffer = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);

/** A message of the leader's stream. */
export type Message = { kind: 'change'; change: Change } | { kind: 'handover' };

/**
 * The longest payload a change to a world of `cells` cells can have: the whole world written with every cell
 * a run of its own (its start and count, varints of at most 5 bytes each, beside its 4 bytes), plus 1 MiB for
 * the header, the author and a batch's repeated cells (at most 4,096 runs). Below HANDOVER's length field.
 */
export function maxFramePayload(cells: number): number {
  return Math.min(1024 * 1024 + cells * (CELL_BYTES + 10), HANDOVER_LENGTH - 1);
}

/** One change as a frame of the stream: the same bytes the write-ahead log writes for it. */
export function encodeChangeFrame(change: Change): Buffer {
  const out = new ByteWriter(HEADER_BYTES + 64 + change.by.length + changeBytes(change) + change.runs.length * 10);
  writeFrame(out, change);
  return out.view();
}

/**
 * Reads the leader's stream as it arrives: push() each chunk and get the messages it completed (none, one or
 * several; a frame may be split at any byte). Throws FormatError on a checksum that does not match, a length
 * over maxFramePayload(cells), a HANDOVER with a nonzero second word, or a change that does not decode or
 * names cells beyond `cells`: the stream is then unusable (drop the connection).
 */
export class FrameReader {
  /** Bytes received and not yet read: chunks from `first` on (a frame of a whole world arrives in thousands). */
  private chunks: Buffer[] = [];
  private first = 0;
  private buffered = 0;
  private readonly maxPayload: number;

  constructor(private readonly cells: number) {
    this.maxPayload = maxFramePayload(cells);
  }

  push(chunk: Buffer): Message[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const messages: Message[] = [];
    while (this.buffered >= HEADER_BYTES) {
      const head = this.peekHeader();
      const length = head.readUInt32LE(0);
      const checksum = head.readUInt32LE(4);
      if (length === HANDOVER_LENGTH) {
        if (checksum !== 0) throw new FormatError(`a handover with ${checksum} where 0 is due`);
        this.take(HEADER_BYTES);
        messages.push({ kind: 'handover' });
        continue;
      }
      if (length > this.maxPayload) throw new FormatError(`a frame of ${length} bytes: a change to ${this.cells} cells has at most ${this.maxPayload}`);
      if (this.buffered < HEADER_BYTES + length) break; // the rest is on its way
      this.take(HEADER_BYTES);
      const payload = this.take(length);
      if (crc32(payload) !== checksum) throw new FormatError(`a frame whose checksum does not match (${length} bytes)`);
      messages.push({ kind: 'change', change: decodeFramePayload(payload, this.cells) });
    }
    return messages;
  }

  /** The next 8 bytes, whole (they may span chunks). */
  private peekHeader(): Buffer {
    const first = this.chunks[this.first]!;
    if (first.length >= HEADER_BYTES) return first;
    const head = Buffer.allocUnsafe(HEADER_BYTES);
    for (let i = this.first, at = 0; at < HEADER_BYTES; i++) at += this.chunks[i]!.copy(head, at, 0, Math.min(this.chunks[i]!.length, HEADER_BYTES - at));
    return head;
  }

  /**
   * The next `n` bytes, removed, in a buffer of their own: a change's runs are views of it, and a change kept
   * (a memory log holds changes until shipped) must not hold a whole socket chunk alive.
   */
  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const chunk = this.chunks[this.first]!;
      const used = chunk.copy(out, at, 0, Math.min(chunk.length, n - at));
      at += used;
      if (used === chunk.length) this.first++;
      else this.chunks[this.first] = chunk.subarray(used);
    }
    this.buffered -= n;
    if (this.first === this.chunks.length) {
      this.chunks = [];
      this.first = 0;
    } else if (this.first > 1024) {
      this.chunks = this.chunks.slice(this.first);
      this.first = 0;
    }
    return out;
  }
}

/** The longest ack line, its newline included: an lsn has at most 16 digits. */
const MAX_ACK_LINE = 32;

/** An ack: the standby's log holds every change up to `lsn` (a whole number >= 0), and its world shows it. */
export function encodeAck(lsn: number): Buffer {
  if (!Number.isSafeInteger(lsn) || lsn < 0) throw new RangeError(`an ack's lsn is a whole number >= 0, not ${lsn}`);
  return Buffer.from(`${lsn}\n`, 'latin1');
}

/**
 * Reads the standby's acks as they arrive: push() each chunk and get the lsns of the lines it completed. A line
 * that is not digits (at most a safe integer) and a newline, or is over 32 bytes (known before its newline
 * comes), throws FormatError.
 */
export class AckReader {
  private partial = '';

  push(chunk: Buffer): number[] {
    const lsns: number[] = [];
    let from = 0;
    for (let end = chunk.indexOf(0x0a); end >= 0; from = end + 1, end = chunk.indexOf(0x0a, from)) {
      const line = this.partial + chunk.toString('latin1', from, end);
      this.partial = '';
      lsns.push(parseAck(line));
    }
    if (this.partial.length + chunk.length - from >= MAX_ACK_LINE) throw new FormatError(`an ack line over ${MAX_ACK_LINE} bytes`);
    this.partial += chunk.toString('latin1', from);
    return lsns;
  }
}

function parseAck(line: string): number {
  if (line.length + 1 > MAX_ACK_LINE || !/^(0|[1-9][0-9]*)$/.test(line)) throw new FormatError(`an ack that is not an lsn: ${JSON.stringify(line.slice(0, MAX_ACK_LINE))}`);
  const lsn = Number(line);
  if (!Number.isSafeInteger(lsn)) throw new FormatError(`an ack past the largest lsn: ${line}`);
  return lsn;
}
