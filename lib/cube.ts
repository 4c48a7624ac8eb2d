/** The world: a fixed array of 4-byte cells (category, rotation, sideA, sideB). No I/O. */

export const CELL_BYTES = 4;

export interface Cell { category: number; rotation: number; sideA: number; sideB: number }

/** A world of `cells` cells, all zero. Keeps its statistics up to date with every write. */
export class Cube {
  readonly cells: number;
  readonly bytes: Uint8Array;
  /** Cells per category (index = category byte), kept up to date so /stats never scans the world. */
  readonly categories = new Float64Array(256);
  private changes = 0;
  private used = 0;
  private written = 0;

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
    for (let at = from; at < to; at += CELL_BYTES) this.forget(at);
    this.bytes.set(bytes, from);
    for (let at = from; at < to; at += CELL_BYTES) this.count(at);
    this.changes++;
    this.written += bytes.byteLength;
  }

  /** Replaces the whole world with `bytes` (exactly the world's size), as one write. */
  replace(bytes: Uint8Array): void {
    if (bytes.byteLength !== this.bytes.byteLength) throw new RangeError(`expected ${this.bytes.byteLength} bytes, got ${bytes.byteLength}`);
    this.bytes.set(bytes);
    // One counting pass over the new world instead of forgetting the old one cell by cell.
    this.categories.fill(0);
    this.used = 0;
    const b = this.bytes;
    for (let at = 0; at < b.length; at += CELL_BYTES) {
      this.categories[b[at]!]++;
      if (b[at] || b[at + 1] || b[at + 2] || b[at + 3]) this.used++;
    }
    this.changes++;
    this.written += bytes.byteLength;
  }

  /** A point-in-time copy of every byte, the version and the bytes written it holds; synchronous, so no write can interleave. */
  snapshot(): { bytes: Uint8Array; version: number; bytesWritten: number } {
    return { bytes: this.bytes.slice(), version: this.changes, bytesWritten: this.written };
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
