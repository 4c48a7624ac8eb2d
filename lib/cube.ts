/** The world: a fixed array of 4-byte cells (category, rotation, sideA, sideB). No I/O. */

export const CELL_BYTES = 4;

// The category is a cell's first byte: the low byte of its 32-bit word on little-endian machines.
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

export interface Cell { category: number; rotation: number; sideA: number; sideB: number }

/** Snapshots are read, and preserved before a write, a slice of this many bytes at a time. */
export const SNAPSHOT_SLICE_BYTES = 1024 * 1024;
const SLICE_SHIFT = 20;

/**
 * The world as it was at one instant, read a slice at a time. Taking it copies nothing: until a slice has
 * been read, the first write into it saves the slice's old bytes first (copy-on-write), so no event-loop
 * turn ever copies more than one slice. Call release() when done, read or not.
 */
export interface Snapshot {
  readonly version: number;
  readonly bytesWritten: number;
  readonly byteLength: number;
  /** Slices of SNAPSHOT_SLICE_BYTES (the last may be shorter), in order. */
  readonly slices: number;
  /** The bytes of slice `i` as they were when the snapshot was taken; each slice is read once. */
  readSlice(i: number): Uint8Array;
  release(): void;
}

/** The copy-on-write state of the snapshot being read. */
interface CopyOnWrite { saved: Map<number, Uint8Array>; read: Uint8Array }

/** A world of `cells` cells, all zero. Keeps its statistics up to date with every write. */
export class Cube {
  readonly cells: number;
  readonly bytes: Uint8Array;
  /** Cells per category (index = category byte), kept up to date so /stats never scans the world. */
  readonly categories = new Float64Array(256);
  private changes = 0;
  private used = 0;
  private written = 0;
  private cow: CopyOnWrite | undefined;

  constructor(cells: number) {
    if (!Number.isSafeInteger(cells) || cells < 1) throw new RangeError(`cells must be a positive integer, got ${cells}`);
    this.cells = cells;
    this.bytes = new Uint8Array(cells * CELL_BYTES);
    this.categories[0] = cells;
  }

  /** Counts writes; strictly increases with every write, so "changed since a snapshot" is a comparison. */
  get version(): number { return this.changes; }

  /** Cells with any non-zero byte. */
  get cellsInUse(): number { return this.used; }

  /** Bytes written so far (rewrites included). */
  get bytesWritten(): number { return this.written; }

  /** The cell at `index` (0 <= index < cells, checked by the caller). */
  read(index: number): Cell {
    const at = index * CELL_BYTES;
    const b = this.bytes;
    return { category: b[at]!, rotation: b[at + 1]!, sideA: b[at + 2]!, sideB: b[at + 3]! };
  }

  /** True when the cell at `index` holds exactly `cell`. */
  holds(index: number, cell: Cell): boolean {
    const at = index * CELL_BYTES;
    const b = this.bytes;
    return b[at] === cell.category && b[at + 1] === cell.rotation && b[at + 2] === cell.sideA && b[at + 3] === cell.sideB;
  }

  /** Writes one cell (bytes 0..255, index in range, checked by the caller). */
  write(index: number, cell: Cell): void {
    const at = index * CELL_BYTES;
    const b = this.bytes;
    if (this.cow) this.preserve(at >>> SLICE_SHIFT, this.cow);
    this.forget(at);
    b[at] = cell.category;
    b[at + 1] = cell.rotation;
    b[at + 2] = cell.sideA;
    b[at + 3] = cell.sideB;
    this.count(at);
    this.changes++;
    this.written += CELL_BYTES;
  }

  /** Writes whole cells from `start` (`bytes` a multiple of 4 that fits, checked by the caller), as one write. */
  writeRange(start: number, bytes: Uint8Array): void {
    const from = start * CELL_BYTES;
    const to = from + bytes.byteLength;
    if (this.cow && to > from) for (let s = from >>> SLICE_SHIFT; s <= (to - 1) >>> SLICE_SHIFT; s++) this.preserve(s, this.cow);
    for (let at = from; at < to; at += CELL_BYTES) this.forget(at);
    this.bytes.set(bytes, from);
    for (let at = from; at < to; at += CELL_BYTES) this.count(at);
    this.changes++;
    this.written += bytes.byteLength;
  }

  /** Replaces the whole world with `bytes` (exactly the world's size), as one write. */
  replace(bytes: Uint8Array): void {
    if (bytes.byteLength !== this.bytes.byteLength) throw new RangeError(`expected ${this.bytes.byteLength} bytes, got ${bytes.byteLength}`);
    const cow = this.cow;
    if (cow) for (let s = 0; s < this.sliceCount(); s++) this.preserve(s, cow);
    this.bytes.set(bytes);
    this.recount();
    this.changes++;
    this.written += bytes.byteLength;
  }

  /** After `bytes` were written directly (a boot restore streams into them): recounts the statistics, as one write. */
  loaded(): void {
    this.recount();
    this.changes++;
  }

  /** Takes a snapshot (see Snapshot); one at a time. Synchronous and cheap: no write can interleave. */
  snapshot(): Snapshot {
    if (this.cow) throw new Error('a snapshot is already being read');
    const cow: CopyOnWrite = { saved: new Map(), read: new Uint8Array(this.sliceCount()) };
    this.cow = cow;
    const cube = this;
    const byteLength = this.bytes.byteLength;
    return {
      version: this.changes,
      bytesWritten: this.written,
      byteLength,
      slices: cow.read.length,
      readSlice(i: number): Uint8Array {
        if (cube.cow !== cow) throw new Error('snapshot released');
        const saved = cow.saved.get(i);
        cow.read[i] = 1;
        if (saved) {
          cow.saved.delete(i);
          return saved;
        }
        return cube.bytes.slice(i << SLICE_SHIFT, Math.min(byteLength, (i + 1) << SLICE_SHIFT));
      },
      release(): void {
        if (cube.cow === cow) cube.cow = undefined;
      },
    };
  }

  private sliceCount(): number {
    return Math.ceil(this.bytes.byteLength / SNAPSHOT_SLICE_BYTES);
  }

  /** Saves slice `s` as it is, if the snapshot has not read it and no earlier write saved it. */
  private preserve(s: number, cow: CopyOnWrite): void {
    if (cow.read[s] || cow.saved.has(s)) return;
    cow.saved.set(s, this.bytes.slice(s << SLICE_SHIFT, Math.min(this.bytes.byteLength, (s + 1) << SLICE_SHIFT)));
  }

  /** Recounts cells in use and categories in one pass over 32-bit words (a cell is one word). */
  private recount(): void {
    const words = new Uint32Array(this.bytes.buffer, this.bytes.byteOffset, this.cells);
    const categories = this.categories;
    const categoryOf = LITTLE_ENDIAN ? (word: number) => word & 0xff : (word: number) => word >>> 24;
    categories.fill(0);
    let used = 0;
    for (let i = 0; i < words.length; i++) {
      const word = words[i]!;
      if (word !== 0) {
        used++;
        categories[categoryOf(word)]++;
      }
    }
    categories[0] += this.cells - used;
    this.used = used;
  }

  private forget(at: number): void {
    const b = this.bytes;
    this.categories[b[at]!]--;
    if (b[at] || b[at + 1] || b[at + 2] || b[at + 3]) this.used--;
  }

  private count(at: number): void {
    const b = this.bytes;
    this.categories[b[at]!]++;
    if (b[at] || b[at + 1] || b[at + 2] || b[at + 3]) this.used++;
  }
}
