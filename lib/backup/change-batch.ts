/**
 * Changes read back from a log as one batch, for shipping (and a standby's catch-up, and history's view of
 * the log): in the log's frame encoding, back to back, with no object per change until one is asked for.
 * Shipping turns a batch into a change set byte to byte. Why: a second of writes under load is 30,000
 * changes; decoded, they were 30,000 objects (and 90,000 more for their runs) held across the ship's awaits,
 * so every scavenge promoted them, and they filled the old space with garbage that a backup then sat on.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { ByteReader, ByteWriter, CHANGES_A_TURN, decodeFramePayload, encodeChangeSet, FormatError, writeChangeSetHead, type Change } from './change.js';

/** A batch of changes in lsn order. */
export interface ChangeBatch {
  readonly count: number;
  /** The first change (decoded), or undefined when the batch is empty. */
  first(): Change | undefined;
  /** The last change (decoded), or undefined when the batch is empty. */
  last(): Change | undefined;
  /** Every change, decoded: for readers that apply them one by one. */
  list(): Change[];
  /** The first `n` changes as a batch of their own. */
  head(n: number): ChangeBatch;
  /** The change-set encoding of the batch (what encodeChangeSet makes of list(), byte for byte). */
  encodeChangeSet(): Promise<Buffer>;
}

/** A batch of changes held as objects (a memory log's). */
export function batchOf(changes: Change[]): ChangeBatch {
  return {
    count: changes.length,
    first: () => changes[0],
    last: () => changes.at(-1),
    list: () => changes,
    head: (n) => batchOf(changes.slice(0, n)),
    encodeChangeSet: () => encodeChangeSet(changes),
  };
}

/** The empty batch. */
export const NO_CHANGES: ChangeBatch = batchOf([]);

/** A growable list of frame payloads (where each lies in which buffer), in lsn order: three numbers a frame, in typed arrays. */
export class FrameBatch implements ChangeBatch {
  private readonly buffers: Buffer[] = [];
  private bufferOf = new Uint32Array(256);
  private starts = new Uint32Array(256);
  private ends = new Uint32Array(256);
  count = 0;

  /** `cells`: the world's size, for decoding the runs of a change asked for. */
  constructor(private readonly cells: number) {}

  /** Adds the payload at `data[start, end)` (a whole frame payload). */
  add(data: Buffer, start: number, end: number): void {
    if (this.buffers.at(-1) !== data) this.buffers.push(data);
    if (this.count === this.starts.length) this.grow();
    this.bufferOf[this.count] = this.buffers.length - 1;
    this.starts[this.count] = start;
    this.ends[this.count] = end;
    this.count++;
  }

  first(): Change | undefined {
    return this.count === 0 ? undefined : this.decode(0);
  }

  last(): Change | undefined {
    return this.count === 0 ? undefined : this.decode(this.count - 1);
  }

  list(): Change[] {
    const out = new Array<Change>(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.decode(i);
    return out;
  }

  head(n: number): ChangeBatch {
    const out = new FrameBatch(this.cells);
    for (let i = 0; i < Math.min(n, this.count); i++) out.add(this.buffers[this.bufferOf[i]!]!, this.starts[i]!, this.ends[i]!);
    return out;
  }

  /**
   * The change set, transcoded from the frames: each frame's runs are already in the set's encoding and are
   * copied as they are; only the lsn, the instant and the author are rewritten (as deltas and an index).
   * CHANGES_A_TURN frames a turn, as encodeChangeSet.
   */
  async encodeChangeSet(): Promise<Buffer> {
    const n = this.count;
    const lsns = new Float64Array(n);
    const instants = new Float64Array(n);
    const authorOf = new Uint32Array(n);
    const runsAt = new Uint32Array(n);
    const authors = new Map<string, number>();
    const names: Buffer[] = [];
    let size = 64;
    let reader: ByteReader | undefined;
    // The author of the frame before, as where its bytes lie: consecutive frames by one author (the common
    // case) are matched byte for byte, with no string made.
    let lastName: { data: Buffer; start: number; length: number; index: number } | undefined;
    for (let i = 0; i < n; i++) {
      if (i > 0 && i % CHANGES_A_TURN === 0) await yieldToEventLoop();
      const data = this.buffers[this.bufferOf[i]!]!;
      if (reader?.data !== data) reader = new ByteReader(data);
      reader.at = this.starts[i]!;
      const version = reader.u8();
      if (version !== 1) throw new FormatError(`unknown frame version ${version}`);
      lsns[i] = reader.varint();
      instants[i] = reader.varint();
      const length = reader.varint();
      const start = reader.at;
      reader.at += length;
      if (reader.at > this.ends[i]!) throw new FormatError('truncated');
      if (lastName && lastName.length === length && data.compare(lastName.data, lastName.start, lastName.start + length, start, start + length) === 0) {
        authorOf[i] = lastName.index;
      } else {
        const name = data.toString('latin1', start, start + length);
        let index = authors.get(name);
        if (index === undefined) {
          index = authors.size;
          authors.set(name, index);
          names.push(Buffer.from(name, 'latin1'));
        }
        authorOf[i] = index;
        lastName = { data, start, length, index };
      }
      runsAt[i] = reader.at;
      size += 24 + this.ends[i]! - reader.at;
    }
    for (const name of names) size += 8 + name.byteLength;
    const out = new ByteWriter(size);
    writeChangeSetHead(out, names, n);
    let lsn = 0;
    let at = 0;
    for (let i = 0; i < n; i++) {
      if (i > 0 && i % CHANGES_A_TURN === 0) await yieldToEventLoop();
      out.varint(lsns[i]! - lsn);
      out.svarint(instants[i]! - at);
      out.varint(authorOf[i]!);
      out.copy(this.buffers[this.bufferOf[i]!]!, runsAt[i]!, this.ends[i]!);
      lsn = lsns[i]!;
      at = instants[i]!;
    }
    return out.view();
  }

  private decode(i: number): Change {
    return decodeFramePayload(this.buffers[this.bufferOf[i]!]!.subarray(this.starts[i]!, this.ends[i]!), this.cells);
  }

  private grow(): void {
    const size = this.starts.length * 2;
    const bufferOf = new Uint32Array(size);
    bufferOf.set(this.bufferOf);
    const starts = new Uint32Array(size);
    starts.set(this.starts);
    const ends = new Uint32Array(size);
    ends.set(this.ends);
    this.bufferOf = bufferOf;
    this.starts = starts;
    this.ends = ends;
  }
}
