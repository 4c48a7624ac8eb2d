/** The world: a fixed array of 4-byte cells (category, rotation, sideA, sideB). No I/O. */

export const CELL_BYTES = 4;

export interface Cell { category: number; rotation: number; sideA: number; sideB: number }

/** A world of `cells` cells, all zero, or holding `bytes` (exactly cells*4 of them). */
export class Cube {
  readonly cells: number;
  readonly bytes: Uint8Array;
  /** Counts writes; a backup remembers the version it copied, so "changed since" is a comparison. */
  private changes = 0;

  constructor(cells: number, bytes?: Uint8Array) {
    if (!Number.isSafeInteger(cells) || cells < 1) throw new RangeError(`cells must be a positive integer, got ${cells}`);
    if (bytes && bytes.byteLength !== cells * CELL_BYTES) {
      throw new RangeError(`a world of ${cells} cells holds ${cells * CELL_BYTES} bytes, got ${bytes.byteLength}`);
    }
    this.cells = cells;
    this.bytes = bytes ?? new Uint8Array(cells * CELL_BYTES);
  }

  /** Writes so far; strictly increases with every write. */
  get version(): number { return this.changes; }

  /** The cell at `index` (0 <= index < cells, checked by the caller). */
  read(index: number): Cell {
    const at = index * CELL_BYTES;
    const b = this.bytes;
    return { category: b[at]!, rotation: b[at + 1]!, sideA: b[at + 2]!, sideB: b[at + 3]! };
  }

  /** Writes one cell (bytes 0..255, index in range, checked by the caller). */
  write(index: number, cell: Cell): void {
    const at = index * CELL_BYTES;
    const b = this.bytes;
    b[at] = cell.category;
    b[at + 1] = cell.rotation;
    b[at + 2] = cell.sideA;
    b[at + 3] = cell.sideB;
    this.changes++;
  }

  /** Replaces the whole world with `bytes` (exactly the world's size), as one write. */
  replace(bytes: Uint8Array): void {
    if (bytes.byteLength !== this.bytes.byteLength) throw new RangeError(`expected ${this.bytes.byteLength} bytes, got ${bytes.byteLength}`);
    this.bytes.set(bytes);
    this.changes++;
  }

  /** A point-in-time copy of every byte and the version it holds; synchronous, so no write can interleave. */
  snapshot(): { bytes: Uint8Array; version: number } {
    return { bytes: this.bytes.slice(), version: this.changes };
  }
}
