/**
 * A set of a world's cells as one bit a cell (2 MiB for 16,777,216 cells), whatever their number or pattern,
 * and, once sealed, each member's place among the members (its slot), so that values of the members can live
 * in dense buffers of `size` entries. A rollback tracks an author's cells with it instead of one object a cell.
 */

/** Bits below `n` (0 to 32) of a 32-bit word. */
function low(n: number): number {
  return n >= 32 ? -1 : (1 << n) - 1;
}

/** The number of set bits of a 32-bit word. */
function popcount(word: number): number {
  let v = word - ((word >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}

/** The index of the lowest set bit of a non-zero 32-bit word. */
function lowestBit(word: number): number {
  return 31 - Math.clz32(word & -word);
}

/** Cells of a world of `cells`: add ranges, then seal() to count them and give each its slot. */
export class CellSet {
  private readonly words: Uint32Array;
  /** After seal(): ranks[w] is the number of members in the words before w. */
  private ranks: Uint32Array | undefined;

  constructor(readonly cells: number) {
    this.words = new Uint32Array(Math.ceil(cells / 32));
  }

  /** Adds the cells [start, end). Not after seal(). */
  add(start: number, end: number): void {
    if (end <= start) return;
    const first = start >>> 5;
    const last = (end - 1) >>> 5;
    const from = start & 31;
    const to = ((end - 1) & 31) + 1;
    if (first === last) {
      this.words[first]! |= low(to) & ~low(from);
      return;
    }
    this.words[first]! |= ~low(from);
    this.words.fill(0xffffffff, first + 1, last);
    this.words[last]! |= low(to);
  }

  /** True when `cell` is a member. */
  has(cell: number): boolean {
    return ((this.words[cell >>> 5]! >>> (cell & 31)) & 1) === 1;
  }

  /** Counts the members and gives each its slot; the set is read-only from here on. */
  seal(): void {
    const ranks = new Uint32Array(this.words.length + 1);
    for (let w = 0; w < this.words.length; w++) ranks[w + 1] = ranks[w]! + popcount(this.words[w]!);
    this.ranks = ranks;
  }

  /** The number of members (after seal()). */
  get size(): number {
    return this.ranks![this.words.length]!;
  }

  /** The place of member `cell` among the members, from 0, in cell order (after seal()); members in a row have slots in a row. */
  slot(cell: number): number {
    const w = cell >>> 5;
    return this.ranks![w]! + popcount(this.words[w]! & low(cell & 31));
  }

  /** The first member at or after `from` and before `to`, else `to`. */
  nextMember(from: number, to: number): number {
    if (from >= to) return to;
    let w = from >>> 5;
    let bits = this.words[w]! & ~low(from & 31);
    while (bits === 0) {
      w++;
      if (w * 32 >= to) return to;
      bits = this.words[w]!;
    }
    return Math.min(to, w * 32 + lowestBit(bits));
  }

  /** The first cell at or after `from` and before `to` that is not a member, else `to`. */
  nextGap(from: number, to: number): number {
    if (from >= to) return to;
    let w = from >>> 5;
    let bits = ~this.words[w]! & ~low(from & 31);
    while (bits === 0) {
      w++;
      if (w * 32 >= to) return to;
      bits = ~this.words[w]!;
    }
    return Math.min(to, w * 32 + lowestBit(bits));
  }

  /** Calls `visit(start, end)` for each stretch of members in a row within [from, to), in order. */
  eachRun(from: number, to: number, visit: (start: number, end: number) => void): void {
    for (let start = this.nextMember(from, to); start < to; start = this.nextMember(start, to)) {
      const end = this.nextGap(start, to);
      visit(start, end);
      start = end;
    }
  }
}
