/**
 * The change format: one change to the world (a cell write, a batch, a range, a restore) as cells written
 * from a start, with its instant and author. The same record travels through the write-ahead log, the
 * shipped change sets and their compaction, so time travel and attribution need no other source.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { CELL_BYTES, type Cube } from '../cube.js';

/** Consecutive cells written from `start`: `bytes` holds whole cells (4 bytes each). */
export interface Run { start: number; bytes: Uint8Array }

/** One change: applied in one step, numbered `lsn` in its log's lineage, made at `at` (ms since the epoch) by `by` ('' when unknown). */
export interface Change { lsn: number; at: number; by: string; runs: Run[] }

/** Applies `change` to `cube`, run by run, in order (a later run over the same cell wins, as in a batch). */
export function applyChange(cube: Cube, change: Change): void {
  for (const run of change.runs) cube.writeRange(run.start, run.bytes);
}

/** Bytes of cells a change carries. */
export function changeBytes(change: Change): number {
  let n = 0;
  for (const run of change.runs) n += run.bytes.byteLength;
  return n;
}

/** A growable byte buffer with LEB128 varints (numbers up to 2^53). */
export class ByteWriter {
  private buffer: Buffer;
  length = 0;

  constructor(initial = 256) {
    this.buffer = Buffer.allocUnsafe(initial);
  }

  private room(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + n));
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  u8(value: number): void {
    this.room(1);
    this.buffer[this.length++] = value;
  }

  varint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`varint out of range: ${value}`);
    this.room(8);
    while (value >= 0x80) {
      this.buffer[this.length++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[this.length++] = value;
  }

  /** A signed number (zigzag), for deltas that may go backwards (a clock step). */
  svarint(value: number): void {
    this.varint(value < 0 ? -value * 2 - 1 : value * 2);
  }

  bytes(data: Uint8Array): void {
    this.room(data.byteLength);
    this.buffer.set(data, this.length);
    this.length += data.byteLength;
  }

  /** Bytes `start` to `end` of `source`, copied (no view of them made). */
  copy(source: Buffer, start: number, end: number): void {
    this.room(end - start);
    this.length += source.copy(this.buffer, this.length, start, end);
  }

  /** `text` as latin1 bytes (one a character), preceded by their count as a varint; no buffer of its own. */
  latin1(text: string): void {
    this.varint(text.length);
    if (text.length === 0) return;
    this.room(text.length);
    this.length += this.buffer.write(text, this.length, text.length, 'latin1');
  }

  /** Overwrites 4 bytes at `at` (already written) with `value`, little-endian. */
  u32At(at: number, value: number): void {
    this.buffer.writeUInt32LE(value, at);
  }

  /** Leaves `n` bytes to be filled in later (u32At); returns where they start. */
  reserve(n: number): number {
    this.room(n);
    const at = this.length;
    this.length += n;
    return at;
  }

  /** The bytes written so far, from `start` (a view: copy it before writing more if it must outlive the writer). */
  view(start = 0): Buffer {
    return this.buffer.subarray(start, this.length);
  }
}

/** Reads what ByteWriter wrote; a read past the end throws FormatError. */
export class ByteReader {
  at = 0;
  constructor(readonly data: Uint8Array) {}

  get done(): boolean {
    return this.at >= this.data.byteLength;
  }

  u8(): number {
    if (this.at >= this.data.byteLength) throw new FormatError('truncated');
    return this.data[this.at++]!;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      const byte = this.u8();
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    throw new FormatError('varint too long');
  }

  svarint(): number {
    const z = this.varint();
    return z % 2 === 1 ? -(z + 1) / 2 : z / 2;
  }

  bytes(n: number): Uint8Array {
    if (this.at + n > this.data.byteLength) throw new FormatError('truncated');
    const out = this.data.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

/** Bytes that do not decode as the format says. */
export class FormatError extends Error {
  override name = 'FormatError';
}

/** Appends `change`'s runs to `out`. */
export function writeRuns(out: ByteWriter, runs: Run[]): void {
  out.varint(runs.length);
  for (const run of runs) {
    out.varint(run.start);
    out.varint(run.bytes.byteLength / CELL_BYTES);
    out.bytes(run.bytes);
  }
}

/** Reads runs written by writeRuns; each run must fit a world of `cells` cells. */
export function readRuns(input: ByteReader, cells: number): Run[] {
  const count = input.varint();
  const runs = new Array<Run>(count);
  for (let i = 0; i < count; i++) {
    const start = input.varint();
    const n = input.varint();
    if (start + n > cells) throw new FormatError(`a run of ${n} cells from ${start} does not fit ${cells} cells`);
    runs[i] = { start, bytes: input.bytes(n * CELL_BYTES) };
  }
  return runs;
}

/** Appends a write-ahead log frame's payload to `out`: one change with its author spelled out (a frame stands alone). */
export function writeFramePayload(out: ByteWriter, change: Change): void {
  out.u8(1); // payload version
  out.varint(change.lsn);
  out.varint(change.at);
  out.latin1(change.by);
  writeRuns(out, change.runs);
}

/** The change a frame payload holds (its runs are views of `payload`). */
export function decodeFramePayload(payload: Uint8Array, cells: number): Change {
  const input = new ByteReader(payload);
  const version = input.u8();
  if (version !== 1) throw new FormatError(`unknown frame version ${version}`);
  const lsn = input.varint();
  const at = input.varint();
  const byBytes = input.bytes(input.varint());
  const by = byBytes.byteLength === 0 ? '' : Buffer.from(byBytes).toString('latin1');
  const runs = readRuns(input, cells);
  if (!input.done) throw new FormatError('trailing bytes in a frame');
  return { lsn, at, by, runs };
}

const SET_MAGIC = Buffer.from('CUBECHG1', 'latin1');

/** Changes encoded (or decoded) between two yields to the event loop: a few milliseconds of work. */
export const CHANGES_A_TURN = 1024;

/**
 * A change set, as shipped to the store: the changes in lsn order, authors in one table (an index per change,
 * not the string), lsns and instants as deltas. Uncompressed (change-set.ts gzips it). Encoded CHANGES_A_TURN
 * changes a turn, yielding to the event loop in between: a second of writes under load is 30,000 changes,
 * tens of milliseconds in one go, and requests must not wait behind it.
 */
export async function encodeChangeSet(changes: Change[]): Promise<Buffer> {
  const authors = new Map<string, number>();
  for (const change of changes) if (!authors.has(change.by)) authors.set(change.by, authors.size);
  let size = 64;
  for (const change of changes) size += 16 + changeBytes(change) + change.runs.length * 8;
  const out = new ByteWriter(size);
  writeChangeSetHead(out, [...authors.keys()].map((author) => Buffer.from(author, 'latin1')), changes.length);
  let lsn = 0;
  let at = 0;
  for (let i = 0; i < changes.length; i++) {
    if (i > 0 && i % CHANGES_A_TURN === 0) await yieldToEventLoop();
    const change = changes[i]!;
    out.varint(change.lsn - lsn);
    out.svarint(change.at - at);
    out.varint(authors.get(change.by)!);
    writeRuns(out, change.runs);
    lsn = change.lsn;
    at = change.at;
  }
  return out.view();
}

/**
 * A change set's head: its magic, the author table (`authors` as latin1 bytes; a change names one by its
 * index), and the count of changes that follow. Each change then is: lsn delta, instant delta (signed),
 * author index, and its runs as writeRuns writes them.
 */
export function writeChangeSetHead(out: ByteWriter, authors: Uint8Array[], count: number): void {
  out.bytes(SET_MAGIC);
  out.varint(authors.length);
  for (const author of authors) {
    out.varint(author.byteLength);
    out.bytes(author);
  }
  out.varint(count);
}

/** The changes of an encoded change set (runs are views of `data`). */
export function decodeChangeSet(data: Uint8Array, cells: number): Change[] {
  const input = new ByteReader(data);
  if (Buffer.compare(Buffer.from(input.bytes(SET_MAGIC.length)), SET_MAGIC) !== 0) throw new FormatError('not a cubecache change set');
  const authors: string[] = [];
  for (let n = input.varint(); n > 0; n--) authors.push(Buffer.from(input.bytes(input.varint())).toString('latin1'));
  const count = input.varint();
  const changes = new Array<Change>(count);
  let lsn = 0;
  let at = 0;
  for (let i = 0; i < count; i++) {
    lsn += input.varint();
    at += input.svarint();
    const author = authors[input.varint()];
    if (author === undefined) throw new FormatError('unknown author index');
    changes[i] = { lsn, at, by: author, runs: readRuns(input, cells) };
  }
  if (!input.done) throw new FormatError('trailing bytes in a change set');
  return changes;
}
