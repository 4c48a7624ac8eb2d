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
 * been read, a write into it first records the old value of each cell it changes (copy-on-write by cell), so
 * the snapshot holds about 8 bytes per cell written ahead of the reader, and nothing for writes behind it. A
 * slice written more than its size is worth keeps a copy of itself instead. Call release() when done.
 */
export interface Snapshot {
  readonly version: number;
  readonly bytesWritten: number;
  readonly byteLength: number;
  /** Slices of SNAPSHOT_SLICE_BYTES (the last may be shorter), in order. */
  readonly slices: number;
  /**
   * The bytes of slice `i` as they were when the snapshot was taken, copied into `into` (at least a slice
   * long, 4-byte aligned; reused by the caller) or else into a new array; each slice is read once.
   */
  readSlice(i: number, into?: Uint8Array): Uint8Array;
  /** Bytes held beside the world for slices not read yet (old values and copies); 0 once all are read. */
  readonly heldBytes: number;
  /** The most heldBytes has been. */
  readonly peakHeldBytes: number;
  release(): void;
}

/** Old values of cells of one unread slice, in the order they were overwritten: (byte offset, old word) pairs. */
interface UndoLog { entries: Uint32Array; n: number }

/** The copy-on-write state of the snapshot being read. */
interface CopyOnWrite {
  read: Uint8Array;
  /** Whole copies of slices whose undo log would have outgrown them (or that were replaced whole). */
  saved: Map<number, Uint8Array>;
  undo: Map<number, UndoLog>;
  held: number;
  peak: number;
}

// An undo log grows to at most a quarter of its slice (8 bytes a cell) before the slice is copied whole instead.
const UNDO_MAX_ENTRIES = SNAPSHOT_SLICE_BYTES / 4 / 8;
const UNDO_FIRST_ENTRIES = 64;

/** A world of `cells` cells, all zero. Keeps its statistics up to date with every write. */
export class Cube {
  readonly cells: number;
  /** The cells' bytes: read freely; written through the methods below, or else followed by loaded() (snapshots skip slices the cube saw no write to). */
  readonly bytes: Uint8Array;
  /** The cells as 32-bit words (one a cell, native byte order): the unit of copy-on-write. */
  private readonly words: Uint32Array;
  /** Cells per category (index = category byte), kept up to date so /stats never scans the world. */
  readonly categories = new Float64Array(256);
  private changes = 0;
  private used = 0;
  private written = 0;
  private cow: CopyOnWrite | undefined;
  /**
   * Slices that may hold a non-zero byte (1), against slices never written since the world was allocated (0):
   * a snapshot fills those with zeros instead of reading them, because reading memory never written can make
   * it resident (it did on the bench machine: the first boot's snapshot of an empty world cost a whole world).
   */
  private readonly touched: Uint8Array;

  constructor(cells: number) {
    if (!Number.isSafeInteger(cells) || cells < 1) throw new RangeError(`cells must be a positive integer, got ${cells}`);
    this.cells = cells;
    this.bytes = new Uint8Array(cells * CELL_BYTES);
    this.words = new Uint32Array(this.bytes.buffer, 0, cells);
    this.categories[0] = cells;
    this.touched = new Uint8Array(this.sliceCount());
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
    if (this.cow) this.preserve(this.cow, at, at + CELL_BYTES);
    this.touched[at >>> SLICE_SHIFT] = 1;
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
    if (this.cow && to > from) this.preserve(this.cow, from, to);
    if (to > from) this.touched.fill(1, from >>> SLICE_SHIFT, ((to - 1) >>> SLICE_SHIFT) + 1);
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
    if (cow) for (let s = 0; s < this.sliceCount(); s++) this.saveWhole(cow, s);
    this.touched.fill(1);
    this.bytes.set(bytes);
    this.recount();
    this.changes++;
    this.written += bytes.byteLength;
  }

  /** After `bytes` were written directly (a boot restore streams into them): recounts the statistics, as one write. */
  loaded(): void {
    this.touched.fill(1);
    this.recount();
    this.changes++;
  }

  /** Takes a snapshot (see Snapshot); one at a time. Synchronous and cheap: no write can interleave. */
  snapshot(): Snapshot {
    if (this.cow) throw new Error('a snapshot is already being read');
    const cow: CopyOnWrite = { read: new Uint8Array(this.sliceCount()), saved: new Map(), undo: new Map(), held: 0, peak: 0 };
    this.cow = cow;
    const cube = this;
    const byteLength = this.bytes.byteLength;
    return {
      version: this.changes,
      bytesWritten: this.written,
      byteLength,
      slices: cow.read.length,
      get heldBytes() { return cow.held; },
      get peakHeldBytes() { return cow.peak; },
      readSlice(i: number, into?: Uint8Array): Uint8Array {
        if (cube.cow !== cow) throw new Error('snapshot released');
        if (cow.read[i]) throw new Error(`slice ${i} was read already`);
        const start = i << SLICE_SHIFT;
        const end = Math.min(byteLength, start + SNAPSHOT_SLICE_BYTES);
        cow.read[i] = 1;
        const saved = cow.saved.get(i);
        if (saved) {
          cow.saved.delete(i);
          cow.held -= saved.byteLength;
          if (!into) return saved;
          into.set(saved);
          return into.subarray(0, saved.byteLength);
        }
        const out = into ? into.subarray(0, end - start) : new Uint8Array(end - start);
        if (!cube.touched[i]) return out.fill(0); // never written, so no undo log either: zeros, read from nowhere
        out.set(cube.bytes.subarray(start, end));
        const log = cow.undo.get(i);
        if (log) {
          cube.undoInto(out, start, log);
          cow.undo.delete(i);
          cow.held -= log.entries.byteLength;
        }
        return out;
      },
      release(): void {
        if (cube.cow === cow) cube.cow = undefined;
      },
    };
  }

  private sliceCount(): number {
    return Math.ceil(this.bytes.byteLength / SNAPSHOT_SLICE_BYTES);
  }

  /**
   * Before bytes [from, to) change: records the old value of each of their cells in slices the snapshot has
   * not read (nothing for slices behind the reader, or copied whole already).
   */
  private preserve(cow: CopyOnWrite, from: number, to: number): void {
    for (let s = from >>> SLICE_SHIFT; s <= (to - 1) >>> SLICE_SHIFT; s++) {
      if (cow.read[s] || cow.saved.has(s)) continue;
      const sliceFrom = Math.max(from, s << SLICE_SHIFT);
      const sliceTo = Math.min(to, (s + 1) << SLICE_SHIFT);
      const cells = (sliceTo - sliceFrom) / CELL_BYTES;
      let log = cow.undo.get(s);
      if ((log?.n ?? 0) + cells > UNDO_MAX_ENTRIES) {
        this.saveWhole(cow, s);
        continue;
      }
      if (!log) {
        log = { entries: new Uint32Array(2 * Math.max(UNDO_FIRST_ENTRIES, cells)), n: 0 };
        cow.undo.set(s, log);
        this.hold(cow, log.entries.byteLength);
      } else if (2 * (log.n + cells) > log.entries.length) {
        const grown = new Uint32Array(2 * Math.max(2 * log.n, log.n + cells));
        grown.set(log.entries.subarray(0, 2 * log.n));
        this.hold(cow, grown.byteLength - log.entries.byteLength);
        log.entries = grown;
      }
      const entries = log.entries;
      let k = 2 * log.n;
      for (let at = sliceFrom; at < sliceTo; at += CELL_BYTES) {
        entries[k++] = at;
        entries[k++] = this.words[at >>> 2]!;
      }
      log.n += cells;
    }
  }

  /** Copies unread slice `s` whole as the snapshot's instant saw it (its current bytes, undone), dropping its undo log. */
  private saveWhole(cow: CopyOnWrite, s: number): void {
    if (cow.read[s] || cow.saved.has(s)) return;
    const start = s << SLICE_SHIFT;
    const end = Math.min(this.bytes.byteLength, start + SNAPSHOT_SLICE_BYTES);
    const copy = this.touched[s] ? this.bytes.slice(start, end) : new Uint8Array(end - start);
    const log = cow.undo.get(s);
    if (log) {
      this.undoInto(copy, start, log);
      cow.undo.delete(s);
      cow.held -= log.entries.byteLength;
    }
    cow.saved.set(s, copy);
    this.hold(cow, copy.byteLength);
  }

  /** Puts the old values of `log` back into `out` (the slice starting at byte `start`), newest first, so each cell ends at its oldest. */
  private undoInto(out: Uint8Array, start: number, log: UndoLog): void {
    if (out.byteOffset % CELL_BYTES !== 0) throw new RangeError('a slice is read into 4-byte aligned memory');
    const words = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2);
    const entries = log.entries;
    for (let k = 2 * (log.n - 1); k >= 0; k -= 2) words[(entries[k]! - start) >>> 2] = entries[k + 1]!;
  }

  private hold(cow: CopyOnWrite, bytes: number): void {
    cow.held += bytes;
    if (cow.held > cow.peak) cow.peak = cow.held;
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
